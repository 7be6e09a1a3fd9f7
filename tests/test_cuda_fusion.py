"""Fused packs, GPU decoding and progressive resizing on a CUDA GPU (marker `cuda`, skipped without
one; run by benchmarks/gpu_suite.py). None of this has run on a GPU yet: these are the checks for the
first session that has one."""

import pytest
import torch
from test_fusion import differences, trained

from layerlth import build_for_images
from layerlth.data import load_dataset
from layerlth.foundations.recipes import get_recipe
from layerlth.models.surgery import remove_blocks
from layerlth.training.boundary import RunTerms
from layerlth.training.loop import Run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def cifar(cifar_subset):
    return load_dataset(cifar_subset).subset(train=512 + 40, test=256).to(CUDA)  # 40: a partial last batch


def run(data, seed, removed=(), graph=True, fuse=True, dtype=torch.float32):
    torch.manual_seed(seed)
    model = build_for_images("resnet20", 10, (3, 32, 32))
    model = (remove_blocks(model, list(removed)) if removed else model).to(CUDA, dtype)
    recipe = get_recipe("paper").scaled(epochs=2, batch_size=64)
    return Run(model, data, recipe, seed=seed, graph=graph, amp=False, channels_last=True,
               terms=RunTerms(label=f"seed{seed}", fuse=fuse, fuse_tag="resnet20"))


def test_a_graphed_fused_pack_computes_what_its_members_compute_alone_in_float64(cifar):
    """Against the members alone with the same lr arithmetic: eager, float64 lrs (a graphed member's
    fused SGD would read an fp32 lr tensor, and the bound would measure that instead)."""
    data = cifar.subset()
    data.__dict__["channel_stats"] = tuple(t.double() for t in cifar.channel_stats)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        members = [(0, ()), (1, ("stage1.block2",)), (2, ("stage2.block2", "stage3.block3"))]
        alone = [run(data, s, r, graph=False, fuse=False, dtype=torch.float64) for s, r in members]
        fused = [run(data, s, r, dtype=torch.float64) for s, r in members]
        trained(alone, 3)
        trained(fused, 3)
    for a, f in zip(alone, fused):
        assert f.report.fused_group_size == 3 and f.report.fused_graphed
        assert max(differences(a, f)) <= 1e-9  # cuDNN's double kernels; the captured SGD multiplies by the lr
        assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in f.history]


def test_nvjpeg_decoding_gives_the_cpu_paths_crops(cifar_fixture, tmp_path):
    from test_streams import write_folder

    from layerlth.data.stream_data import StreamData

    folder = write_folder(cifar_fixture, tmp_path, train=96, val=32, size=64)
    batches = {}
    for decode_on in ("cpu", "cuda"):
        data = StreamData(folder, image_size=48, workers=0, device=CUDA, decode_on=decode_on)
        batches[decode_on] = list(data.stream_batches(32, True, torch.Generator().manual_seed(5)))
    for (a, ya), (b, yb) in zip(batches["cpu"], batches["cuda"]):
        assert torch.equal(ya, yb)
        levels = (a - b).abs() * data.channel_stats[1].to(CUDA)[:, None, None]
        assert levels.mean() < 1.0  # nvJPEG's IDCT and torch's resize round apart from Pillow's


def test_a_graphed_run_recaptures_when_progressive_resizing_grows_its_crops(cifar_fixture, tmp_path):
    from dataclasses import replace

    from test_streams import write_folder

    from layerlth.data.stream_data import StreamData

    folder = write_folder(cifar_fixture, tmp_path, train=256, val=64, size=64)
    data = StreamData(folder, image_size=48, workers=0, device=CUDA)
    recipe = replace(get_recipe("imagenet_fast").scaled(epochs=2, batch_size=32), peak_epochs=1,
                     train_sizes=(32, 64), resize_ramp=(0.25, 0.5))
    histories = []
    for graph in (False, True):
        torch.manual_seed(0)
        model = build_for_images("resnet20", 10, (3, 48, 48)).to(CUDA)
        r = Run(model, data, recipe, seed=1, graph=graph, amp=False)
        r.begin()
        while r.step():
            pass
        histories.append(r.history)
        assert r.graphed == graph and r.stepper.fallback is None
    for eager, graphed in zip(*histories):
        assert graphed["train_loss"] == pytest.approx(eager["train_loss"], rel=2e-2)
