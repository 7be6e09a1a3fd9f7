"""ImageNet-sized images on a CPU: layerlth's streamed pipeline against a plain torchvision
`ImageFolder` + `DataLoader` loop with the same number of workers, alone and feeding ResNet-50.

The benchmark writes its own synthetic JPEGs (random smooth images of ImageNet's typical sizes,
nothing downloaded) in train/<class>/ and val/<class>/, then measures side by side, in rotating
repetitions:
  pipeline       images/s delivered: decode + RandomResizedCrop(224) + flip, uint8 batches
  shards 256     layerlth's pipeline reading shards `layerlth shard --max-side 256` made of the same
                 files (FFCV's preparation), against the plain loop reading the original files
  training       ResNet-50 training images/s at 224 px fed by each loader (a few steps, fp32 or the
                 CPU's fast path), the loader's time included
and prints the ratios (layerlth / plain). Targets: the pipeline >= 1.3x the plain loop on the same
files, >= 2x from the shards, and training fed by it no slower than fed by the plain loop.

  python benchmarks/imagenet_pipeline.py --quick     # 512 JPEGs, 2 repetitions, 3 training steps
  python benchmarks/imagenet_pipeline.py             # 2048 JPEGs, 3 repetitions, 6 training steps
"""

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

from layerlth.data.stream_data import StreamData
from layerlth.foundations._torchvision import torchvision
from layerlth.models import build_model

SIZES = ((500, 375), (500, 333), (375, 500), (500, 500), (640, 480))  # common ImageNet shapes


def write_jpegs(root, count, classes=10, seed=0):
    """`count` synthetic JPEGs (smooth noise, ~110 KB like ImageNet's) in train/, and a tenth in val/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("val", max(classes, count // 10))):
        for i in range(n):
            width, height = SIZES[i % len(SIZES)]
            small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
            folder = Path(root) / split / f"class{i % classes:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:06d}.jpg", quality=90)


def plain_loader(root, batch, workers):
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
                            v2.PILToTensor()])
    folder = torchvision.datasets.ImageFolder(str(Path(root) / "train"), transform=transform)
    return torch.utils.data.DataLoader(folder, batch_size=batch, shuffle=True, num_workers=workers,
                                       drop_last=False, persistent_workers=False)


def ours_loader(data, batch, epoch):
    """An epoch of layerlth's loader: normalised float batches (the plain loop's stay uint8)."""
    return data.stream_batches(batch, True, torch.Generator().manual_seed(epoch))


def pipeline_variant(make):
    """Images/s of one epoch of a loader (workers started inside the timing, as each epoch does)."""
    def run():
        started, images = time.perf_counter(), 0
        for x, _ in make():
            images += len(x)
        return images, time.perf_counter() - started
    return run


def training_variant(make, steps, model):
    """ResNet-50 training images/s over `steps` batches of a loader, its waiting included."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def run():
        model.train()
        started, images = time.perf_counter(), 0
        for x, y in itertools.islice(make(), steps):
            x = x.float() if x.dtype == torch.uint8 else x
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(y)
        return images, time.perf_counter() - started
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="512 JPEGs, 2 repetitions, 3 training steps")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="DataLoader workers of both loaders (default: cores - 1)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    count, repeats, steps = (512, 2, 3) if args.quick else (2048, 3, 6)
    with tempfile.TemporaryDirectory() as root:
        print(f"writing {count} synthetic JPEGs ...", file=sys.stderr)
        write_jpegs(root, count)
        from layerlth.cli import main as cli

        shards = Path(root) / "shards-256"
        cli(["shard", str(root), str(shards), "--max-side", "256"])
        epochs, data = itertools.count(), StreamData(root, 224, args.workers)
        small = StreamData(shards, 224, args.workers)
        data.channel_stats, small.channel_stats  # noqa: B018 - computed once per dataset, before the timing
        ours = lambda: ours_loader(data, args.batch, next(epochs))  # noqa: E731
        ours_small = lambda: ours_loader(small, args.batch, next(epochs))  # noqa: E731
        plain = lambda: plain_loader(root, args.batch, args.workers)  # noqa: E731
        rates = common.alternate({"layerlth": pipeline_variant(ours), "shards 256": pipeline_variant(ours_small),
                                  "plain": pipeline_variant(plain)}, repeats)
        model = build_model("resnet50", 10, image_size=224).to(memory_format=torch.channels_last)
        train_rates = common.alternate({"layerlth": training_variant(ours, steps, model),
                                        "plain": training_variant(plain, steps, model)}, repeats)
    print(f"## ImageNet-sized JPEGs on {common.machine()}\n")
    print(f"{count} synthetic JPEGs ({', '.join(f'{w}x{h}' for w, h in SIZES)}), batch {args.batch}, "
          f"{args.workers} DataLoader workers each, {repeats} rotating repetitions; images/s median (min-max)\n")
    rows = [["pipeline alone", common.summary(rates["layerlth"], 1), common.summary(rates["plain"], 1),
             common.summary(common.ratios(rates, "layerlth", "plain"))],
            ["pipeline from --max-side 256 shards (plain: the original files)", common.summary(rates["shards 256"], 1),
             common.summary(rates["plain"], 1), common.summary(common.ratios(rates, "shards 256", "plain"))],
            [f"ResNet-50 training, 224 px, {steps} steps", common.summary(train_rates["layerlth"], 1),
             common.summary(train_rates["plain"], 1), common.summary(common.ratios(train_rates, "layerlth", "plain"))]]
    print(common.table(["measured", "layerlth img/s", "plain ImageFolder img/s", "layerlth / plain"], rows))


if __name__ == "__main__":
    main()
