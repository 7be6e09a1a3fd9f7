"""Reading a streamed dataset from an object store against its local copy, on the local S3 test
server (moto on 127.0.0.1, as the cluster tests use): every group of the training split, read the
way a DataLoader worker reads it (`source.read_group`), for a folder (one request per image, 16 at
once) and for its shards (each streamed through webdataset's tar reader). Prints images/s and the
S3 / local ratio for each layout. A local server has no network latency: the ratio measures
layerlth's and the client's overhead per request, not a real bucket's round trips.

  python benchmarks/s3_reads.py --quick     # 256 JPEGs of ImageNet's sizes, 2 repetitions
  python benchmarks/s3_reads.py             # 1024 JPEGs, 3 repetitions
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - layerlth and the tests' helpers on the path
from imagenet_pipeline import write_jpegs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3_server import s3_server  # noqa: E402


def read_all(location):
    """(images, seconds) of reading every training group of the dataset at `location`."""
    from layerlth.data import streams

    streams.open_source.cache_clear()
    source = streams.open_source(location)
    started, images = time.perf_counter(), 0
    for group in range(len(source.groups("train"))):
        images += len(source.read_group("train", group))
    return images, time.perf_counter() - started


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 JPEGs, 2 repetitions")
    args = p.parse_args(argv)
    count, repeats = (256, 2) if args.quick else (1024, 3)
    from layerlth.cli import main as cli
    from layerlth.foundations.storage import Storage

    with tempfile.TemporaryDirectory() as tmp, s3_server() as env:
        os.environ.update(env)
        folder, shards = Path(tmp) / "folder", Path(tmp) / "shards"
        write_jpegs(folder, count)
        cli(["shard", str(folder), str(shards)])
        for local, prefix in ((folder, "s3://layerlth/folder"), (shards, "s3://layerlth/shards")):
            for path in (q for q in local.rglob("*") if q.is_file()):
                Storage(prefix).write_bytes(path.relative_to(local).as_posix(), path.read_bytes())
        print(f"{count} JPEGs of ImageNet's sizes, {repeats} repetitions, local S3 server (moto)")
        print(f"{'layout':8} {'local img/s':>12} {'S3 img/s':>10} {'S3 / local':>11}")
        medians = {}
        for name, local, prefix in (("folder", folder, "s3://layerlth/folder"), ("shards", shards, "s3://layerlth/shards")):
            rates = {}
            for where in [str(local), prefix] * repeats:  # side by side, alternating
                images, seconds = read_all(where)
                rates.setdefault(where, []).append(images / seconds)
            here, there = medians[name] = statistics.median(rates[str(local)]), statistics.median(rates[prefix])
            print(f"{name:8} {here:12.0f} {there:10.0f} {there / here:11.2f}")
        from layerlth.data import streams

        concurrent, streams.READERS = streams.READERS, 1  # a folder's group one request at a time, for scale
        one = statistics.median(images / seconds for images, seconds in
                                (read_all("s3://layerlth/folder") for _ in range(repeats)))
        streams.READERS = concurrent
        print(f"a folder from S3 one request at a time: {one:.0f} img/s; {concurrent} at once: "
              f"{medians['folder'][1]:.0f} ({medians['folder'][1] / one:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
