"""`layerlth` command line: inspect an architecture, run one ticket trial, judge and report results, run the demo."""

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from layerlth.analysis.report import DESCRIPTION as REPORT_HELP
from layerlth.analysis.report import add_arguments as add_report_arguments
from layerlth.analysis.report import run as run_report
from layerlth.criteria import check_criterion
from layerlth.data import image_shape, load_dataset
from layerlth.foundations.config import TrialConfig, add_arguments, from_arguments
from layerlth.measure.costs import count_macs, count_params
from layerlth.models import ARCH_HELP, build_for_images, describe_blocks, max_removable, remove_blocks
from layerlth.tickets.procedures import removal_rule, score_and_remove
from layerlth.tickets.trial import run_trial
from layerlth.tickets.validate import validate


def inspect(args):
    config = validate(TrialConfig(
        arch=args.arch, criterion=args.criterion, p=args.remove, dataset=args.dataset,
        shortcut=args.shortcut, keep_first=args.keep_first, min_per_stage=args.min_per_stage,
        score_batches=args.score_batches, rounds=args.rounds,
    ))
    needs_data = config.p and check_criterion(config.criterion).needs_data
    data = load_dataset(config.dataset, image_size=config.image_size) if needs_data else None
    size = data.image_size if data else image_shape(config.dataset, config.image_size)
    model = build_for_images(config.arch, data.num_classes if data else 10, size, config.shortcut)
    blocks = describe_blocks(model, removal_rule(config))
    info = {
        "arch": config.arch, "input_size": size, "params": count_params(model), "macs": count_macs(model, size),
        "blocks": [vars(b) | {"macs": block_macs(model, b.name, size)} for b in blocks],
        "max_removable": max_removable(model, removal_rule(config)), "rule": str(removal_rule(config)),
    }
    if config.p:
        if check_criterion(config.criterion).for_trained:
            info["note"] = (f"{config.criterion} is meant for trained nets (Algorithm 1); here it scores a freshly "
                            f"initialised {config.arch}, so the ranking says little about a trained one")
            print(f"note: {info['note']}", file=sys.stderr)
        ticket, facts = score_and_remove(model, replace(config, rounds=1), data)
        info |= {"criterion": config.criterion, "scores": facts["scores"], "removed": facts["removed"],
                 "ticket_params": count_params(ticket), "ticket_macs": count_macs(ticket, size)}
        if config.rounds > 1:
            info["iterative"] = iterative_choice(model, config, data, size)
    print(json.dumps(info, indent=2) if args.json else inspect_table(info))


def iterative_choice(model, config, data, size):
    """The same p blocks removed in `config.rounds` rounds, each re-scoring the shallower net."""
    ticket, facts = score_and_remove(model, config, data)
    return {"rounds": config.rounds, "removed": facts["removed"], "removal_rounds": facts["removal_rounds"],
            "ticket_params": count_params(ticket), "ticket_macs": count_macs(ticket, size)}


def block_macs(model, name, size):
    """MACs the block costs (what removing it saves); None where it cannot be removed."""
    try:
        return count_macs(model, size) - count_macs(remove_blocks(model, [name]), size)
    except ValueError:
        return None


def inspect_table(info):
    shape = "x".join(map(str, info["input_size"]))
    lines = [f"{info['arch']}: {info['params']:,} params, {info['macs'] / 1e6:.2f}M MACs per {shape} image"]
    width = max(16, *(len(block["name"]) for block in info["blocks"]))
    for block in info["blocks"]:
        macs = f"{block['macs'] / 1e6:6.2f}M MACs" if block["macs"] is not None else " " * 12
        status = "removable" if block["removable"] else f"kept: {block['reason']}"
        lines.append(f"  {block['name']:<{width}} stage {block['stage']}  {macs}  {status}")
    lines.append(f"{len(info['blocks'])} residual blocks; at most {info['max_removable']} removable under {info['rule']}")
    if "removed" in info:
        lines.append(f"removed by {info['criterion']} (lowest scores): {', '.join(info['removed'])}")
        lines.append(_ticket_line(info, info))
    if "iterative" in info:
        it = info["iterative"]
        rounds = "; ".join(", ".join(step["removed"]) for step in it["removal_rounds"])
        differ = len(set(it["removed"]) - set(info["removed"]))
        lines.append(f"removed by {info['criterion']} in {it['rounds']} rounds (re-scored each round): {rounds}")
        lines.append(f"  {differ} of {len(it['removed'])} blocks differ from the one-shot choice")
        lines.append(_ticket_line(it, info))
    return "\n".join(lines)


def _ticket_line(ticket, info):
    return (f"ticket: {ticket['ticket_params']:,} params (-{1 - ticket['ticket_params'] / info['params']:.2%}), "
            f"{ticket['ticket_macs'] / 1e6:.2f}M MACs (-{1 - ticket['ticket_macs'] / info['macs']:.2%})")


def ticket(args):
    """Run the trial, keep its record (--out-dir, else results/trials/<hash>/), print a summary or --json."""
    from layerlth.analysis.summary import trial_lines

    config = from_arguments(args)
    if config.out_dir is None:  # nothing a user ran is lost: the record is written where it can be found
        config = replace(config, out_dir=str(Path("results/trials") / config.hash()))
    result = run_trial(config)  # run_trial validates before any work
    if args.json:
        if not args.history:
            result.pop("history")
        print(json.dumps(result, indent=2, default=str))
    else:
        print(trial_lines(result, Path(config.out_dir) / "result.json"))


def verdict(args):
    from layerlth.analysis.results import load_rows
    from layerlth.tickets.verdict import format_verdicts, verdicts

    rows = load_rows(args.results)
    if not rows:
        raise ValueError(f"no trial records in {' '.join(args.results)}")
    table = verdicts(rows)
    if not table:
        raise ValueError(f"{len(rows)} trial records in {' '.join(args.results)}, but no finished ticket with "
                         f"finished dense runs of its setting (arch, dataset, recipe, epochs, train_subset)")
    print(json.dumps(table, indent=2) if args.json else format_verdicts(table))


def report(args):
    run_report(args)


def search(args):
    """A grid's depth searches in this process, one trial after the other (no Ray)."""
    from pathlib import Path

    from layerlth.foundations.storage import Storage
    from layerlth.search.specs import searches
    from layerlth.sweep.grid import load_grid
    from layerlth.sweep.lease.local import DriverLock
    from layerlth.sweep.local_search import run_searches

    grid = load_grid(args.grid)
    found = searches(grid)
    if not found:
        raise ValueError(f"grid {args.grid} has no 'searches' entry; `sweeps/run.py` runs its studies")
    root = Storage(Path(args.storage) / (args.name or grid["name"]))
    with DriverLock(root.location):
        run_searches(found, root)


def shard(args):
    """A folder dataset as WebDataset shards, with the index that lists them without reading them."""
    from layerlth.data.streams import open_source, write_shards

    if args.per_shard is not None and args.per_shard < 1:
        raise ValueError(f"--per-shard {args.per_shard}: give a number of images >= 1 (default: a folder's groups)")
    if args.max_side is not None and args.max_side < 32:
        raise ValueError(f"--max-side {args.max_side}: give a longer side of at least 32 pixels (default: keep sizes)")
    source = open_source(args.source)
    written = write_shards(source, args.target, args.per_shard, args.max_side)
    counts = {split: len(items) for split, items in source.items.items()}
    print(f"{args.target}: {len(written)} shards, {counts['train']} train and {counts['val']} val images, "
          f"{len(source.classes)} classes")


def demo(args):
    from layerlth.tickets.demo import main

    main(epochs=args.epochs)


def parser():
    top = argparse.ArgumentParser(prog="layerlth", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("inspect", help="an architecture's blocks, which are removable, and costs")
    p.add_argument("arch", help=ARCH_HELP)
    p.add_argument("--remove", type=int, default=0, metavar="P", help="score blocks and remove the P lowest")
    p.add_argument("--criterion", default="grasp", help="criterion for --remove (default: grasp)")
    p.add_argument("--rounds", type=int, default=1, metavar="K",
                   help="also remove the P blocks in K rounds (1..P), each re-scoring the shallower net, and "
                        "print that choice beside the one-shot one (default: 1, one shot only)")
    p.add_argument("--dataset", default="cifar10", help="images the net is built for (their size) and data-driven criteria score on (default: cifar10)")
    p.add_argument("--score-batches", type=int, default=4, help="batches of 128 the criterion sees")
    p.add_argument("--shortcut", default="B", choices=["A", "B"], help="CIFAR ResNet shortcut type")
    p.add_argument("--keep-first", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--min-per-stage", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=inspect)

    p = commands.add_parser("ticket", help="run one trial (dense if -p 0), keep its record, print a summary")
    add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the whole record as JSON instead of a summary")
    p.add_argument("--history", action="store_true", help="with --json: include the per-epoch metrics")
    p.set_defaults(run=ticket)

    p = commands.add_parser("verdict", help="which tickets win: mean/std over seeds vs their dense runs")
    p.add_argument("results", nargs="+", help="sweep directories, folders of sweeps, trials/, result.json files, "
                                              "or a sweep's results.csv/.parquet")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=verdict)

    p = commands.add_parser("report", help="the paper's Tables 1-5 beside ours, figures, report.html, W&B report",
                            description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_arguments(p)
    p.set_defaults(run=report)

    p = commands.add_parser("search", help="a grid's depth searches (the largest p that still wins), without Ray")
    p.add_argument("--grid", required=True, help="built-in grid name or path to a YAML grid with 'searches'")
    p.add_argument("--storage", default="results/sweeps", help="where sweeps live (default: results/sweeps)")
    p.add_argument("--name", help="the search's folder under --storage (default: the grid's name)")
    p.set_defaults(run=search)

    p = commands.add_parser("shard", help="write a folder dataset (train/<class>/*, val/<class>/*) as WebDataset "
                                          "shards train-*.tar and val-*.tar")
    p.add_argument("source", help="the folder: train/<class>/* and val/<class>/* (JPEG or PNG)")
    p.add_argument("target", help="where the shards go")
    p.add_argument("--per-shard", type=int, default=None,
                   help="images per shard (default: the groups a folder is read in, 1,000 for a large split, so "
                        "that both give one order)")
    p.add_argument("--max-side", type=int, default=None,
                   help="re-encode every image whose longer side is above this many pixels to that side (JPEG "
                        "quality 90, PNGs stay PNG): each later decode is cheaper; a new dataset identity, "
                        "since the files differ (default: the images as they are)")
    p.set_defaults(run=shard)

    p = commands.add_parser("demo", help="dense vs GraSP and SNIP tickets on the digits, as a table")
    p.add_argument("--epochs", type=int, default=15)
    p.set_defaults(run=demo)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        args.run(args)
    except (ValueError, RuntimeError) as error:  # bad input or unavailable data: one line, exit 2
        print(f"layerlth: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
