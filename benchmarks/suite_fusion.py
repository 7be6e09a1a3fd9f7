"""The GPU suite's `fusion` stage: do fused packs (`layerlth.training.packs.fusion`) beat separate members?

1. Convolutions: k separate convolutions against one grouped convolution (groups = k) at every
   shape of the CIFAR ResNets: the 3x3 convolutions (16 channels at 32 px, 32 at 16, 64 at 8), the
   stem (3 input channels per group, the shape most likely to be slow grouped) and the 1x1
   stride-2 projection shortcuts (16 -> 32, 32 -> 64); batch 128, forward and both backward
   gradients, TFLOP/s, k = 1, 2, 4, 8, 16 (bf16 and channels_last on CUDA, as trials run), each
   with cuDNN's autotuner off and on (trials run with it on: `fastpath`).
2. Packs: resnet32 members on 50,000 synthetic images held on the device (CIFAR-10's size: the
   per-epoch work, evaluation on 10,000 included, weighs as much as in a real sweep), each step a
   graph replay: 8 separate members (today's pack) against fused groups of k = 1, 4, 8, 16.
   Aggregate images/s over the epochs after the first (the warm-up and captures), each member's
   epoch timed without its evaluation, fused or not; each pack's row says how its members really
   trained (`paths`: graphed, or fallen back to eager).

`faster` is whether the fused pack of 8 beat the separate one, both on the paths they were meant
to run (a fused pack that fell back to eager beside graphed separate members says nothing); the record stage writes it, with the
fused packs' trials/hour, into measured_throughput.json, where `fuse: auto` and `--trials-per-gpu
auto` read it. Targets on one H100/H200: a fused pack of 8 resnet32 >= 120k img/s (8 separate
members in one graph measured 75.8k on the H200). --dry: resnet20, 256 images, k = 1, 2, on the CPU.
"""

import time

from suite_stages import device, scaled

# (name, input channels per member, output channels per member, px, kernel, stride): every
# convolution shape of the CIFAR ResNets
SHAPES = (("3x3 16@32", 16, 16, 32, 3, 1), ("3x3 32@16", 32, 32, 16, 3, 1), ("3x3 64@8", 64, 64, 8, 3, 1),
          ("stem 3->16@32", 3, 16, 32, 3, 1), ("1x1 16->32 /2", 16, 32, 32, 1, 2), ("1x1 32->64 /2", 32, 64, 16, 1, 2))
CONV_KS, FUSED_KS, SEPARATE_K = (1, 2, 4, 8, 16), (1, 4, 8, 16), 8
TARGET_IMAGES_PER_SECOND = 120_000


def conv_rates(dev, ks, shapes, batch, steps):
    """[{shape, k, autotuned, separate_tflops, grouped_tflops}] for forward + both gradients, with
    cuDNN's autotuner off and on (on a CPU: off only)."""
    import torch

    rows = []
    for autotuned in (False, True) if dev.type == "cuda" else (False,):
        with torch.backends.cudnn.flags(enabled=True, benchmark=autotuned):
            for shape in shapes:
                for k in ks:
                    rows.append(conv_rate(dev, shape, k, batch, steps) | {"autotuned": autotuned})
    return rows


def conv_rate(dev, shape, k, batch, steps):
    import torch
    import torch.nn.functional as F

    name, cin, cout, px, kernel, stride = shape
    amp, pad = dev.type == "cuda", kernel // 2
    x = torch.randn(batch, k * cin, px, px, device=dev).contiguous(memory_format=torch.channels_last)
    w = torch.randn(k * cout, cin, kernel, kernel, device=dev).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(), w.requires_grad_()
    xs = [t.detach().requires_grad_() for t in x.split(cin, 1)]
    ws = [t.detach().requires_grad_() for t in w.split(cout, 0)]
    out_px = (px + 2 * pad - kernel) // stride + 1
    flops = 3 * 2 * batch * cin * cout * kernel * kernel * out_px * out_px * k

    def grouped():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            F.conv2d(x, w, stride=stride, padding=pad, groups=k).sum().backward()

    def separate():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            sum(F.conv2d(a, b, stride=stride, padding=pad).sum() for a, b in zip(xs, ws)).backward()

    return {"shape": name, "channels": cin, "out_channels": cout, "px": px, "kernel": kernel, "stride": stride,
            "k": k, "separate_tflops": flops / timed(separate, steps, dev) / 1e12,
            "grouped_tflops": flops / timed(grouped, steps, dev) / 1e12}


def timed(step, steps, dev):
    """Seconds per call of `step`, after one untimed call."""
    import torch

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - started) / steps


def synthetic_cifar(train, test, dev):
    import torch

    from layerlth.data.images import ImageData

    generator = torch.Generator().manual_seed(0)
    def images(n):
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = [torch.randint(0, 10, (n,), generator=generator) for n in (train, test)]
    return ImageData("synthetic-cifar", images(train), labels[0], images(test), labels[1], 10, 4, True).to(dev)


def stage_fusion(suite, found):
    import packs
    import torch

    from layerlth import build_for_images
    from layerlth.training import fastpath

    dry, dev = suite.args.dry, device(suite)
    ks, conv_ks, arch = ((1, 2), (1, 2), "resnet20") if dry else (FUSED_KS, CONV_KS, "resnet32")
    separate_k = 2 if dry else SEPARATE_K
    found["convs"] = conv_rates(dev, conv_ks, SHAPES[::3] if dry else SHAPES, 16 if dry else 128,
                                1 if dry else scaled(suite, 2, 5, 50))
    found["headers"] = ["members", "fused", "trained as", "aggregate img/s", "trials/hour", "peak memory MiB"]
    found["rows"], found["packs"] = [], []
    suite.write()
    data = synthetic_cifar(256, 64, dev) if dry else synthetic_cifar(50_000, 10_000, dev)
    torch.manual_seed(0)
    model = build_for_images(arch, 10, (3, 32, 32)).to(dev)
    fast = fastpath.choose(dev)
    images_per_trial = 50_000 * 200  # a paper-recipe trial on CIFAR-10
    epochs = 2 if dry else 3
    for k, fuse in [(separate_k, False), *((k, True) for k in ks)]:
        aggregate, peak, paths = packs.pack_rate(model, data, k, epochs, fast, fuse=fuse, batch=32 if dry else None)
        found["packs"].append({"k": k, "fused": fuse, "aggregate_images_per_second": aggregate,
                               "trials_per_hour": aggregate * 3600 / images_per_trial, "peak_memory_bytes": peak,
                               "arch": arch, "paths": paths})
        found["rows"].append([k, "yes" if fuse else "no", "+".join(paths), round(aggregate),
                              round(aggregate * 3600 / images_per_trial, 2), round(peak / 2**20) if peak else ""])
        suite.write()
    by = {(p["k"], p["fused"]): p for p in found["packs"]}
    fused_pack, separate_pack = by.get((separate_k, True)), by[(separate_k, False)]
    fused = fused_pack and fused_pack["aggregate_images_per_second"]
    separate = separate_pack["aggregate_images_per_second"]
    meant = "fused_cuda_graph" if fast.graphed else "fused_eager"
    found["fair"] = bool(fused_pack) and fused_pack["paths"] == [meant] and separate_pack["paths"] == [fast.path]
    found["faster"] = bool(fused and found["fair"] and fused > separate)
    found["fused_over_separate"] = fused / separate if fused else None
    found["targets"] = {f"fused pack of 8 >= {TARGET_IMAGES_PER_SECOND} img/s":
                        bool(fused and fused >= TARGET_IMAGES_PER_SECOND) if not dry else None}
    return "ok"


def best_fused_packing(result):
    """{arch: {"trials_per_device", "speedup", ...}} from the fused packs, as `best_packing` gives
    for separate ones: the k with the most trials/hour, against one trial alone (fused k = 1)."""
    packs = [p for p in (result or {}).get("packs", []) if p["fused"]]
    one = next((p["aggregate_images_per_second"] for p in packs if p["k"] == 1), None)
    if not packs or not one:
        return {}
    top = max(packs, key=lambda p: p["aggregate_images_per_second"])
    return {top["arch"]: {"trials_per_device": top["k"], "speedup": round(max(top["aggregate_images_per_second"] / one, 1.0), 3),
                          "peak_memory_bytes": top["peak_memory_bytes"], "fused": True,
                          "measured": {str(p["k"]): round(p["aggregate_images_per_second"] / one, 3) for p in packs}}}
