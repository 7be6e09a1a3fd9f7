"""Streamed datasets on real images: the committed CIFAR-10 images as an ImageFolder of 64 px JPEGs
and as WebDataset shards of the same files give the same images, labels and order for a seed."""

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from layerlth.cli import main
from layerlth.data import streams
from layerlth.data.stream_loader import StreamBatches, StreamImages, epoch_groups

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_folder(npz, root, train=300, val=100, size=64):
    """The first images of each split as JPEGs upscaled to `size` px, in train/<class>/ and val/<class>/."""
    with np.load(npz) as arrays:
        for split, key, count in (("train", "train", train), ("val", "test", val)):
            for n, (x, y) in enumerate(zip(arrays[f"{key}_x"][:count], arrays[f"{key}_y"][:count])):
                folder = root / split / CLASSES[int(y)]
                folder.mkdir(parents=True, exist_ok=True)
                image = Image.fromarray(x.transpose(1, 2, 0)).resize((size, size), Image.BICUBIC)
                image.save(folder / f"{split}{n:05d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(cifar_fixture, tmp_path_factory):
    return write_folder(cifar_fixture, tmp_path_factory.mktemp("imagenet-like"))


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    target = tmp_path_factory.mktemp("shards")
    main(["shard", str(folder), str(target)])
    return target


def epoch(source, seed, epoch_, split="train", workers=0, rank=0, world=1):
    images = StreamImages(source, split, 56, seed=seed, epoch=epoch_, rank=rank, world=world)
    batches = StreamBatches(images, 32, workers)
    return [b for b in batches], batches


def test_a_folder_and_its_shards_give_the_same_images_labels_and_order(folder, shards, monkeypatch):
    a, b = streams.open_source(folder), streams.open_source(shards)
    assert (a.kind, b.kind) == ("folder", "shards") and a.classes == b.classes == sorted(CLASSES)
    assert streams.fingerprint(a) == streams.fingerprint(b)
    for split in ("train", "val"):
        x, _ = epoch(a, 3, 1, split)
        y, _ = epoch(b, 3, 1, split)
        assert len(x) == len(y) > 1
        for (xa, ya), (xb, yb) in zip(x, y):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sum(len(batch[1]) for batch in x) == 100 and x[0][0].shape[1:] == (3, 56, 56)


def test_the_order_is_seeded_by_seed_and_epoch_and_split_by_rank(folder, monkeypatch):
    source = streams.open_source(folder)
    first, _ = epoch(source, 0, 0)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, epoch(source, 0, 0)[0]))
    other, _ = epoch(source, 0, 1)
    assert not torch.equal(torch.cat([b[1] for b in first]), torch.cat([b[1] for b in other]))
    groups = len(source.groups("train"))
    ranks = [epoch_groups(groups, 0, 1, r, 2) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(groups)) and not set(ranks[0]) & set(ranks[1])
    # two DataLoader worker processes give the batches of two, the same on every run
    two, _ = epoch(source, 0, 0, workers=2)
    again, _ = epoch(source, 0, 0, workers=2)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(two, again))
    assert sorted(torch.cat([b[1] for b in two]).tolist()) == sorted(torch.cat([b[1] for b in first]).tolist())


def test_a_copy_keeps_the_fingerprint_and_a_changed_copy_does_not(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert streams.fingerprint(streams.open_source(copy)) == streams.fingerprint(streams.open_source(folder))
    victim = next((copy / "val" / "cat").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    streams.open_source.cache_clear()  # a process lists a dataset once; this one changed since
    assert streams.fingerprint(streams.open_source(copy)) != streams.fingerprint(streams.open_source(folder))


def test_a_corrupt_image_is_skipped_and_counted(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / "val" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    batches, reader = epoch(streams.open_source(copy), 0, 0, "val")
    assert reader.skipped == 1 and sum(len(b[1]) for b in batches) == 100


@pytest.mark.parametrize("change,message", [
    (lambda root: shutil.rmtree(root / "val"), "has no val/ folder"),
    (lambda root: [f.unlink() for f in (root / "train" / "dog").iterdir()], "class folder .*dog holds no image"),
    (lambda root: (root / "val" / "zebra").mkdir(), r"classes that train/ lacks: \['zebra'\]"),
])
def test_bad_folders_are_named_in_one_line(folder, tmp_path, change, message):
    copy = shutil.copytree(folder, tmp_path / "copy")
    change(copy)
    with pytest.raises(streams.StreamError, match=message):
        streams.open_source(copy)
    with pytest.raises(streams.StreamError, match="does not exist"):
        streams.open_source(tmp_path / "nowhere")


def test_shards_without_an_index_are_listed_by_reading_them(shards, tmp_path):
    copy = shutil.copytree(shards, tmp_path / "copy")
    (copy / streams.INDEX).unlink()
    listed, indexed = streams.open_source(copy), streams.open_source(shards)
    assert listed.items == indexed.items and len(listed.classes) == 10


def test_the_eval_transform_is_resize_then_centre_crop():
    from layerlth.data.stream_loader import transform

    image = Image.new("RGB", (80, 64), (10, 20, 30))
    out = transform(image, 56, train=False)
    assert out.shape == (3, 56, 56) and out.dtype == torch.uint8 and int(out[0, 0, 0]) == 10
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert streams.decode(buffer.getvalue()).size == (80, 64) and streams.decode(b"junk") is None


def test_a_folder_named_like_a_built_in_dataset_changes_nothing(tmp_path, monkeypatch):
    from layerlth.foundations.config import TrialConfig

    before = TrialConfig(kind="at_init", p=1, dataset="digits").hash()
    (tmp_path / "digits" / "train").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert TrialConfig(kind="at_init", p=1, dataset="digits").hash() == before
    from layerlth.data import load_dataset

    assert len(load_dataset("digits").train_x) == 1437


def test_a_trial_hash_names_the_images_not_where_they_lie(folder, shards, tmp_path):
    from layerlth.foundations.config import TrialConfig

    def config(dataset):
        return TrialConfig(kind="at_init", p=1, dataset=str(dataset), image_size=56)

    copy = shutil.copytree(folder, tmp_path / "copy")
    here = config(folder)
    assert config(copy).hash() == here.hash() and config(copy).dense_key() == here.dense_key()
    assert config(shards).hash() == here.hash()  # shards with `layerlth shard`'s index: the same images
    victim = next((copy / "train" / "dog").iterdir())
    victim.write_bytes(victim.read_bytes()[:-10])
    from layerlth.foundations import dataset_identity

    dataset_identity.stream_identity.cache_clear()  # a process sees a dataset once; this one changed since
    assert config(copy).hash() != here.hash() and config(copy).dense_key() != here.dense_key()
    assert TrialConfig(kind="at_init", p=1, dataset=str(folder)).hash() != here.hash()  # another crop size


def test_a_trial_trains_on_a_folder_that_streams_and_says_so(folder, tmp_path):
    from layerlth import run_trial

    row = run_trial(dict(kind="at_init", criterion="grasp", p=1, arch="resnet20", dataset=str(folder), image_size=32,
                         recipe="he2016", epochs=2, batch_size=64, score_batches=1, emissions=False, device="cpu",
                         data_workers=1, out_dir=str(tmp_path / "out")))
    assert row["status"] == "finished" and row["data_source"] == "folder" and row["stream_image_size"] == 32
    assert row["images_skipped"] == 0 and len(row["removed"]) == 1 and len(row["history"]) == 2
    assert row["history"][-1]["train_loss"] < row["history"][0]["train_loss"] + 0.5  # trained, finite


@pytest.mark.parametrize("values,message", [
    (dict(dataset="digits", image_size=32), "image_size=32 applies to a dataset that streams"),
    (dict(robustness=("fgsm",)), "robustness .* is not measured on a dataset that streams"),
])
def test_options_that_do_not_fit_the_dataset_are_refused(folder, values, message):
    from layerlth import run_trial

    with pytest.raises(ValueError, match=message):
        run_trial(dict(dict(dataset=str(folder), kind="dense"), **values))


def test_an_s3_prefix_streams_the_same_images_and_keeps_the_hash(folder, shards, monkeypatch):
    from s3_server import s3_server

    from layerlth.foundations import dataset_identity
    from layerlth.foundations.config import TrialConfig
    from layerlth.foundations.storage import Storage

    with s3_server() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for local, prefix in ((folder, "s3://layerlth/folder"), (shards, "s3://layerlth/shards")):
            bucket = Storage(prefix)
            for path in (p for p in local.rglob("*") if p.is_file()):
                bucket.write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
            here, there = streams.open_source(local), streams.open_source(prefix)
            assert there.kind == here.kind and there.items == here.items and there.classes == here.classes
            x, _ = epoch(here, 1, 2, "val")
            y, _ = epoch(there, 1, 2, "val")
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(x, y))
            dataset_identity.stream_identity.cache_clear()
            assert (TrialConfig(kind="at_init", p=1, dataset=prefix).hash()
                    == TrialConfig(kind="at_init", p=1, dataset=str(folder)).hash())  # by content, not place
        with pytest.raises(streams.StreamError, match="cannot list the dataset at 's3://no-such-bucket/x'"):
            streams.open_source("s3://no-such-bucket/x")
        with pytest.raises(streams.StreamError, match="cannot list the dataset at 's3://layerlth/empty'"):
            streams.open_source("s3://layerlth/empty")  # a prefix holding nothing does not exist on S3


def test_shards_read_in_two_worker_processes_and_under_torch_distributed_give_the_folders_batches(
        folder, shards, tmp_path):
    """layerlth splits a split's groups among ranks and DataLoader workers itself: webdataset must
    not split a shard again (by worker it would hand a second worker nothing, by node it refuses to
    run once torch.distributed is initialised, as in a trial across Ray Train workers)."""
    import torch.distributed as dist

    a, b = streams.open_source(folder), streams.open_source(shards)
    alone, _ = epoch(a, 2, 0, workers=0)
    two, _ = epoch(b, 2, 0, workers=2)
    assert len(two) == len(alone) > 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(alone, two))
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.FileStore(str(tmp_path / "store"), 1))
    try:
        ranked, _ = epoch(b, 2, 0, workers=2, rank=0, world=1)
    finally:
        dist.destroy_process_group()
    assert all(torch.equal(p[0], q[0]) for p, q in zip(alone, ranked))


def test_every_entry_point_names_a_bucket_it_cannot_list_in_one_line(monkeypatch, capsys, tmp_path):
    from s3_server import s3_server

    from layerlth.foundations import dataset_identity

    with s3_server() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        dataset_identity.stream_identity.cache_clear()
        with pytest.raises(SystemExit) as exit_:
            main(["ticket", "--dataset", "s3://no-such-bucket/x", "--out-dir", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert "cannot list the dataset at 's3://no-such-bucket/x'" in err[0] and "Traceback" not in err[0]


def test_a_shard_that_cannot_be_read_is_tried_again_then_named_in_one_line(shards, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(streams, "PAUSE_S", 0.0)
    copy = shutil.copytree(shards, tmp_path / "shards")
    source = streams.open_source(copy)
    first = source.shards["train"][0]
    data = (copy / first).read_bytes()
    (copy / first).write_bytes(data[:len(data) // 2])  # truncated inside a member
    with pytest.raises(streams.StreamError, match=rf"cannot read .*{first} after 3 tries: ReadError"):
        source.read_group("train", 0)
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:  # cut where a member begins: a shorter archive
        boundary = archive.getmembers()[4].offset
    (copy / first).write_bytes(data[:boundary])
    with pytest.raises(streams.StreamError, match=r"ReadError: it holds 2 of its \d+ listed images"):
        source.read_group("train", 0)
    (copy / first).unlink()  # deleted mid-epoch
    with pytest.raises(streams.StreamError, match=rf"cannot read .*{first} after 3 tries: FileNotFoundError"):
        source.read_group("train", 0)
    (copy / first).write_bytes(data)
    opened, real = [], source.storage.open_stream

    def flaky(name):  # a request that fails once, then reads
        opened.append(name)
        if len(opened) == 1:
            raise OSError("connection reset by peer")
        return real(name)

    monkeypatch.setattr(source.storage, "open_stream", flaky)
    assert len(source.read_group("train", 0)) == len(source.groups("train")[0]) and len(opened) == 2


def test_shards_stream_from_s3_without_a_copy_and_a_folders_group_reads_concurrently(folder, shards, monkeypatch):
    import threading

    from s3_server import s3_server

    from layerlth.foundations.storage import Storage

    with s3_server() as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for local, prefix in ((folder, "s3://layerlth/f"), (shards, "s3://layerlth/s")):
            for path in (p for p in local.rglob("*") if p.is_file()):
                Storage(prefix).write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
        streams.open_source.cache_clear()
        there = streams.open_source("s3://layerlth/s")
        whole = Storage.read_bytes
        monkeypatch.setattr(Storage, "read_bytes", lambda self, name: (
            pytest.fail(f"{name} read whole") if name.endswith(".tar") else whole(self, name)))
        assert [i for i, _ in there.read_group("val", 1)] == streams.open_source(shards).groups("val")[1]
        threads = set()
        monkeypatch.setattr(Storage, "read_bytes", lambda self, name: (threads.add(threading.get_ident()),
                                                                       whole(self, name))[1])
        group = streams.open_source("s3://layerlth/f").read_group("train", 0)
        here = streams.open_source(folder).read_group("train", 0)
        assert [(i, d) for i, d in group] == here and len(threads) > 1


def test_shards_with_a_longest_side_hold_the_same_images_smaller_under_a_new_identity(folder, tmp_path):
    from layerlth.data.stream_data import StreamData

    small = tmp_path / "small"
    main(["shard", str(folder), str(small), "--max-side", "40"])
    a, b = streams.open_source(folder), streams.open_source(small)
    assert [i.key for i in a.items["train"]] == [i.key for i in b.items["train"]] and a.classes == b.classes
    assert sum(i.size for i in b.items["train"]) < 0.8 * sum(i.size for i in a.items["train"])  # headers stay
    assert streams.fingerprint(a) != streams.fingerprint(b)  # other files, another dataset
    image = Image.open(io.BytesIO(b.read_group("train", 0)[0][1]))
    assert max(image.size) == 40
    x, _ = epoch(b, 0, 0)
    assert sum(len(y) for _, y in x) == 300 and x[0][0].shape[1:] == (3, 56, 56)
    assert StreamData(small, 56, 0).transform_name.startswith("torch-bilinear-antialias")
    with pytest.raises(SystemExit):
        main(["shard", str(folder), str(tmp_path / "bad"), "--max-side", "8"])


def test_draft_decoding_draws_the_crops_of_full_decoding_and_stays_close(tmp_path):
    """A crop that shrinks by 2x or more decodes the JPEG at a smaller scale: the same crop of the
    picture (drawn from the header's size), its pixels within a few levels of a full decode's."""
    from layerlth.data.stream_loader import _generator, prepare

    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC)
    buffer = io.BytesIO()
    smooth.save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    for n in range(8):
        full = prepare(data, 64, True, _generator(0, 0, 0, n), draft=False).int()
        drafted = prepare(data, 64, True, _generator(0, 0, 0, n), draft=True).int()
        assert full.shape == drafted.shape == (3, 64, 64)
        # the same region, decoded at another scale (its edges placed to half a decoded pixel; libjpeg's
        # scaled IDCT smooths unlike the antialiased resize): a few levels apart, closely correlated
        assert (full - drafted).abs().float().mean() < 8
        assert torch.corrcoef(torch.stack([full.flatten(), drafted.flatten()]).float())[0, 1] > 0.97
    assert torch.equal(prepare(data, 64, False), prepare(data, 64, False))
