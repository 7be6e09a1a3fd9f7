"""One trial trained data-parallel by two processes (gloo on the CPU, as Ray Train sets it up on a
cluster): the same ticket and weights on every rank, disjoint shares of each epoch, the same
metrics everywhere."""

import hashlib
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_streams import write_folder
from torch.optim.optimizer import register_optimizer_step_post_hook

from layerlth.data import stream_data, streams
from layerlth.data.stream_loader import StreamImages


@pytest.fixture(scope="module")
def folder(cifar_fixture, tmp_path_factory):
    return write_folder(cifar_fixture, tmp_path_factory.mktemp("parallel"), train=512, val=128)


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    from layerlth.cli import main

    target = tmp_path_factory.mktemp("parallel-shards")
    main(["shard", str(folder), str(target)])
    return target


def config(folder, **changes):
    return dict(kind="at_init", criterion="grasp", p=1, arch="resnet20", dataset=str(folder), image_size=32,
                recipe="he2016", epochs=2, batch_size=64, score_batches=1, emissions=False, device="cpu",
                data_workers=0, seed=3) | changes


def rank_main(rank, world, folder, out, data_workers=0):
    """One rank: its row, its weights after each epoch and a digest of them after every optimizer
    step, written for the test to compare."""
    from layerlth import run_trial
    from layerlth.training.parallel import Parallel, training_in_parallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    weights, steps = [], []

    def keep(state):
        weights.append({k: v.clone() for k, v in state.model.state_dict().items()})

    def digest(optimizer, args, kwargs):  # every parameter's bytes after each step
        data = b"".join(p.detach().numpy().tobytes() for g in optimizer.param_groups for p in g["params"])
        steps.append(hashlib.sha256(data).hexdigest())

    hook = register_optimizer_step_post_hook(digest)
    with training_in_parallel(Parallel(rank, world)):
        row = run_trial(config(folder, workers=world, data_workers=data_workers), callbacks=[keep])
    hook.remove()
    with training_in_parallel(Parallel(rank, world)):
        # a dense run: rank 0 alone locks and writes the shared store, both train (no rank waits on a lock)
        dense = run_trial(config(folder, kind="dense", p=0, epochs=1, workers=world, dense_dir=str(out / "dense")))
    torch.save(weights, out / f"weights-{rank}.pt")
    (out / f"steps-{rank}.json").write_text(json.dumps(steps))
    (out / f"row-{rank}.json").write_text(json.dumps(row | {"dense": dense}, default=str))
    dist.destroy_process_group()


@pytest.mark.parametrize("layout", ["folder", "shards"])
def test_two_ranks_train_the_same_ticket_on_disjoint_shares_and_agree_after_every_step(layout, request, tmp_path):
    """A folder, and its shards read by two DataLoader workers per rank (webdataset must split
    neither by node nor by worker: layerlth splits the groups itself)."""
    folder = request.getfixturevalue(layout)
    mp.spawn(rank_main, args=(2, folder, tmp_path, 0 if layout == "folder" else 2), nprocs=2, join=True)
    rows = [json.loads((tmp_path / f"row-{r}.json").read_text()) for r in range(2)]
    weights = [torch.load(tmp_path / f"weights-{r}.pt") for r in range(2)]
    assert rows[0]["removed"] == rows[1]["removed"] and rows[0]["scores"] == rows[1]["scores"]
    dense = [r["dense"] for r in rows]
    assert dense[0]["final_test_acc"] == dense[1]["final_test_acc"] and not dense[0]["dense_reused"]
    assert len(list((tmp_path / "dense").rglob("result.json"))) == 1  # stored once, by rank 0
    steps = [json.loads((tmp_path / f"steps-{r}.json").read_text()) for r in range(2)]
    assert len(steps[0]) == 2 * 512 // 64 and steps[0] == steps[1]  # every global batch: bitwise the same weights
    assert len(set(steps[0])) == len(steps[0])  # every step moved them
    assert len(weights[0]) == 3  # before the first epoch, and after each of two
    for before, after in zip(*weights):  # the same weights on both ranks, at the start and after each epoch
        assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
    assert [h["test_acc"] for h in rows[0]["history"]] == [h["test_acc"] for h in rows[1]["history"]]
    assert rows[0]["history"][0]["train_loss"] == rows[1]["history"][0]["train_loss"]  # sums over both ranks
    # each epoch, each rank reads its own groups: the two shares are disjoint and cover the epoch
    source = streams.open_source(folder)
    shares = [StreamImages(source, "train", 32, seed=7, rank=r, world=2).groups() for r in range(2)]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == list(range(16))
    alone = stream_data.StreamData(folder, 32, 0)
    assert len(alone.shard(0, 2).stream_batches(32, True)) == len(alone.shard(1, 2).stream_batches(32, True))


def test_workers_need_a_dataset_that_streams_and_a_batch_they_split():
    from layerlth import run_trial

    with pytest.raises(ValueError, match="workers=2 trains one trial on several processes, for a dataset that streams"):
        run_trial(dict(dataset="digits", workers=2))
    with pytest.raises(ValueError, match="batch_size 128 does not split over workers=3"):
        run_trial(dict(dataset="digits", workers=3, recipe="he2016"))
