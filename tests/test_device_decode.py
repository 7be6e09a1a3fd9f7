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
