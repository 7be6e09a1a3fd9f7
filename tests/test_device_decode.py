"""Decoding on the GPU (`data_decode: cuda`): the workers hand over each JPEG's bytes with the crop and
flip the CPU path draws, the device decodes and transforms. Here a Pillow decoder stands in for
nvJPEG (torchvision's decoder needs its compiled extension and a GPU): the same images, labels and
order as the CPU path, pixels within the two resizers' rounding."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_streams import write_folder

from layerlth import TrialConfig
from layerlth.data import device_decode
from layerlth.data.stream_data import StreamData
from layerlth.tickets.validate import validate


def pillow_decoder(blobs, device):
    """nvJPEG's contract on the CPU: RGB uint8 (3, H, W) images, RuntimeError for one that fails."""
    images = []
    for blob in blobs:
        try:
            with Image.open(io.BytesIO(blob.numpy().tobytes())) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except OSError as error:
            raise RuntimeError(f"cannot decode: {error}") from error
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1).to(device))
    return images


@pytest.fixture
def on_the_device(monkeypatch):
    monkeypatch.setattr(device_decode, "nvjpeg", pillow_decoder)


@pytest.fixture(scope="module")
def folder(cifar_fixture, tmp_path_factory):
    root = write_folder(cifar_fixture, tmp_path_factory.mktemp("decode"), train=96, val=32, size=64)
    # a PNG among the JPEGs: it travels as pixels, transformed by its worker
    first = sorted((root / "train").rglob("*.jpg"))[0]
    Image.open(first).save(first.with_suffix(".png"))
    first.unlink()
    return root


def batches(folder, decode_on, train, seed=5):
    data = StreamData(folder, image_size=48, workers=0, decode_on=decode_on)
    generator = torch.Generator().manual_seed(seed)
    return [(x, y) for x, y in data.stream_batches(32, train, generator)], data


@pytest.mark.parametrize("train", [True, False])
def test_the_device_path_gives_the_cpu_paths_crops(folder, on_the_device, train):
    cpu, _ = batches(folder, "cpu", train)
    device, data = batches(folder, "cuda", train)
    assert [len(y) for _, y in device] == [len(y) for _, y in cpu] == ([32] * 3 if train else [32])
    assert data.skipped == 0
    for (a, ya), (b, yb) in zip(cpu, device):
        assert torch.equal(ya, yb)
        # Pillow's and torch's bilinear resizers round apart: 0.2 of 255 levels on average here
        levels = (a - b).abs() * data.channel_stats[1][:, None, None]  # back to 0-255 units
        assert levels.mean() < 0.5 and levels.flatten().quantile(0.999) < 8  # a few edge pixels differ more


def test_a_png_travels_as_its_workers_pixels(folder, on_the_device):
    from layerlth.data.stream_loader import StreamImages
    from layerlth.data.streams import open_source

    source = open_source(folder)
    group = next(g for g, items in enumerate(source.groups("train")) if any(i.suffix == ".png" for i in items))
    cpu = StreamImages(source, "train", 48, seed=5).read(group)
    planned, labels, decoded = StreamImages(source, "train", 48, seed=5, decode_on="cuda").read(group)
    assert int((planned.kinds == device_decode.PIXELS).sum()) == 1 and torch.equal(labels, cpu[1]) and decoded.all()
    position = int((planned.kinds == device_decode.PIXELS).nonzero())
    assert torch.equal(planned.item(position).view(3, 48, 48), cpu[0][position])  # bitwise the CPU path's


def test_a_jpeg_that_does_not_decode_is_skipped_and_counted(folder, on_the_device, tmp_path):
    import shutil

    broken = shutil.copytree(folder, tmp_path / "broken")
    victims = sorted((broken / "train").rglob("*.jpg"))[:2]
    victims[0].write_bytes(victims[0].read_bytes()[:200])  # a header, then nothing: the decoder fails
    victims[1].write_bytes(b"\xff\xd8 not a jpeg at all")  # no header to read: the worker skips it
    device, data = batches(broken, "cuda", True)
    assert sum(len(y) for _, y in device) == 94 and data.skipped == 2


def test_decoding_on_the_gpu_needs_a_gpu_and_a_dataset_that_streams(folder):
    with pytest.raises(ValueError, match="data_decode='cuda' decodes JPEGs with nvJPEG on a GPU"):
        validate(TrialConfig(kind="dense", arch="resnet18", dataset=str(folder), device="cpu", data_decode="cuda"))
    with pytest.raises(ValueError, match="data_decode='cuda' applies to a dataset that streams"):
        validate(TrialConfig(kind="dense", arch="resnet20", dataset="cifar10", device="cuda", data_decode="cuda"))
    with pytest.raises(ValueError, match="data_decode"):
        TrialConfig.from_dict({"data_decode": "gpu"})


def odd_folder(folder, root, kinds):
    """A copy of `folder` whose first train JPEGs are re-saved as `kinds` say: cmyk, gray,
    progressive, 444 (no chroma subsampling), truncated (its last third cut off)."""
    import shutil

    copy = shutil.copytree(folder, root)
    victims = sorted((copy / "train").rglob("*.jpg"))
    for kind, path in zip(kinds, victims):
        with Image.open(path) as image:
            image.load()
        if kind == "cmyk":
            image.convert("CMYK").save(path, "JPEG", quality=90)
        elif kind == "gray":
            image.convert("L").save(path, "JPEG", quality=90)
        elif kind == "progressive":
            image.save(path, "JPEG", quality=90, progressive=True)
        elif kind == "444":
            image.save(path, "JPEG", quality=90, subsampling=0)
        elif kind == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[:2 * len(data) // 3])
    return copy


def test_odd_jpegs_train_on_the_images_the_cpu_path_trains_on(folder, on_the_device, tmp_path):
    """CMYK goes to its worker (nvJPEG cannot); a truncated JPEG too, where Pillow refuses it as the
    CPU path does; grayscale, progressive and 4:4:4 JPEGs go to the device."""
    from layerlth.data.stream_loader import StreamImages
    from layerlth.data.streams import open_source

    odd = odd_folder(folder, tmp_path / "odd", ["cmyk", "gray", "progressive", "444", "truncated"])
    cpu, cpu_data = batches(odd, "cpu", True)
    device, data = batches(odd, "cuda", True)
    assert data.skipped == cpu_data.skipped == 1  # the truncated one, both ways
    assert [len(y) for _, y in device] == [len(y) for _, y in cpu]
    for (a, ya), (b, yb) in zip(cpu, device):
        assert torch.equal(ya, yb)
        levels = (a - b).abs() * data.channel_stats[1][:, None, None]
        assert levels.mean() < 0.5
    source, images = open_source(odd), None
    images = StreamImages(source, "train", 48, seed=5, decode_on="cuda")
    kinds = torch.cat([images.read(group)[0].kinds for group in range(len(source.groups("train")))])
    assert int((kinds == device_decode.PIXELS).sum()) == 3  # the PNG, the CMYK and the truncated one


def refusing(kind):
    """A stand-in nvJPEG that fails as `kind` says, else decodes with Pillow."""
    def decoder(blobs, device):
        if kind == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if kind == "not compiled":
            raise RuntimeError("decode_jpegs_cuda: torchvision not compiled with nvJPEG support")
        if kind == "allocator":
            raise RuntimeError("nvjpegDecodeBatchedInitialize failed: NVJPEG_STATUS_ALLOCATOR_FAILURE")
        if kind == "everything":
            raise RuntimeError("nvjpegDecode failed: 8")
        progressive = [b for b in blobs if b"\xff\xc2" in b.numpy().tobytes()]  # an SOF2 marker
        if kind == "progressive" and progressive:
            raise RuntimeError("nvjpegDecode failed: JPEG not supported")
        return pillow_decoder(blobs, device)
    return decoder


def test_a_jpeg_nvjpeg_refuses_is_decoded_by_pillow_not_skipped(folder, monkeypatch, tmp_path):
    odd = odd_folder(folder, tmp_path / "progressive", ["progressive", "progressive"])
    monkeypatch.setattr(device_decode, "nvjpeg", refusing("progressive"))
    cpu, _ = batches(odd, "cpu", True)
    device, data = batches(odd, "cuda", True)
    assert data.skipped == 0 and [len(y) for _, y in device] == [len(y) for _, y in cpu]
    for (a, _), (b, _) in zip(cpu, device):
        assert ((a - b).abs() * data.channel_stats[1][:, None, None]).mean() < 0.5


@pytest.mark.parametrize("kind, error, says", [("oom", torch.cuda.OutOfMemoryError, "out of memory"),
                                               ("not compiled", device_decode.DecodeFailure, "not compiled"),
                                               ("allocator", device_decode.DecodeFailure, "allocator_failure"),
                                               ("everything", device_decode.DecodeFailure, "decoded none of")])
def test_a_failure_that_is_not_an_images_stops_with_its_own_message(folder, monkeypatch, kind, error, says):
    monkeypatch.setattr(device_decode, "nvjpeg", refusing(kind))
    with pytest.raises(error) as raised:
        batches(folder, "cuda", True)
    assert says in str(raised.value).lower()


def test_a_batch_whose_every_image_is_skipped_is_not_trained_on(folder, monkeypatch):
    """Its loss would be NaN and the trial would end as diverged: the wrong diagnosis."""
    monkeypatch.setattr(device_decode, "decode_all", lambda blobs, device: [None] * len(blobs))  # none decodes
    made, data = batches(folder, "cuda", True)
    assert made == [] and data.skipped == 95  # its 95 JPEGs; the PNG, decoded by its worker, is one image alone


def test_planned_images_slice_as_views_and_join_without_python_per_image():
    items = [(device_decode.JPEG, bytes([n]) * (n + 1), [n, 0, 1, 1, 0]) for n in range(6)]
    planned = device_decode.Planned.of(items)
    head, tail = planned[:2], planned[2:]
    assert head.data.data_ptr() == planned.data.data_ptr() and len(head) == 2 and len(tail) == 4
    assert tail.item(0).tolist() == [2, 2, 2] and tail.plans[0].tolist() == [2, 0, 1, 1, 0]
    joined = device_decode.Planned.cat([tail, head])
    again = device_decode.Planned.of(items[2:] + items[:2])
    assert torch.equal(joined.data, again.data) and torch.equal(joined.offsets, again.offsets)
    assert torch.equal(joined.kinds, again.kinds) and torch.equal(joined.plans, again.plans)
    assert len(planned[6:]) == 0 and len(device_decode.Planned.cat([planned[6:], head])) == 2
