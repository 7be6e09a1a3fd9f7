"""A grid's `searches`: depth searches (`layerlth.search.core`) written as YAML, checked before Ray starts.

    searches:
      - {arch: [resnet32, resnet56], criterion: [grasp, snip], seed: [0, 1, 2], xi: 0}
      - {arch: resnet32, kind: after_training, criterion: kl, seed: [0, 1], range: [1, 5], xi: std, width: 2}

Every key of `defaults` and of an entry is a trial option, as in `studies`, except:
- `seed`: the seeds of the search (its verdicts are means over them), not an axis;
- `range`: [low, high], the p values searched (default 1 to what the removal rule allows);
- `xi`: the win rule, points (a number >= 0; 0, the paper's, by default) or `std` (one standard
  deviation of the dense accuracies: needs >= 2 seeds);
- `width`: p values evaluated per round (default 1, a binary search; N slots and S seeds: N // S);
- `p` is not allowed (the search chooses it). Other list values expand into one search each.
"""

import itertools

from layerlth.data import DatasetUnavailable, image_shape
from layerlth.foundations.config import TrialConfig
from layerlth.models import checked_network, max_removable
from layerlth.search.core import Search
from layerlth.sweep.grid import GridError, _axes
from layerlth.tickets.procedures import removal_rule
from layerlth.tickets.validate import validate

SEARCH_KEYS = ("range", "xi", "width")
KINDS = ("at_init", "after_training", "filter")


def searches(grid):
    """[Search] of the grid, every entry checked (raises GridError naming the entry)."""
    defaults = grid.get("defaults") or {}
    found = []
    for index, entry in enumerate(grid.get("searches") or []):
        where = f"searches[{index}]"
        if isinstance(entry, dict) and "p" in entry:
            raise GridError(f"{where}: p={entry['p']!r}: a search chooses p itself; give its range: [low, high]")
        options = {k: entry[k] for k in SEARCH_KEYS if isinstance(entry, dict) and k in entry}
        axes = {k: v for k, v in (_axes(defaults, "defaults") | _axes(entry, where, SEARCH_KEYS)).items() if k != "p"}
        seeds = axes.pop("seed", [0])
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            label = f"{where} ({', '.join(f'{k}={v}' for k, v in point.items() if k in entry)})"
            found.append(_search(label, point, seeds, options))
    return found


def _search(label, point, seeds, options):
    try:
        base = validate(TrialConfig.from_dict(point | {"seed": seeds[0]}))
    except (ValueError, TypeError, DatasetUnavailable) as error:
        raise GridError(f"{label}: {error}") from error
    if base.kind not in KINDS:
        raise GridError(f"{label}: kind={base.kind!r} cannot remove blocks; a search's kind is one of {list(KINDS)}")
    if len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise GridError(f"{label}: seed={seeds!r}: expected distinct integers >= 0")
    limit = max_removable(checked_network(base.arch, image_shape(base.dataset, base.image_size), base.shortcut), removal_rule(base))
    low, high = _range(label, options.get("range", [1, limit]), limit, base)
    xi = _xi(label, options.get("xi", 0), seeds)
    width = options.get("width", 1)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise GridError(f"{label}: width={width!r}: expected an integer >= 1 (p values per round)")
    search = Search(label, base, tuple(seeds), low, high, xi, width)
    for p in (low, high):  # every other check of a ticket (rewind point, filter criterion, ...)
        for seed in seeds:
            try:
                validate(search.ticket(p, seed))
            except ValueError as error:
                raise GridError(f"{label}: {error}") from error
    return search


def _range(label, value, limit, base):
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in value)):
        raise GridError(f"{label}: range={value!r}: expected [low, high], two integers")
    low, high = value
    if not 1 <= low <= high <= limit:
        raise GridError(f"{label}: range={value!r} is outside what {base.arch} allows: 1 <= low <= high <= {limit} "
                        f"(blocks removable under keep_first={base.keep_first}, min_per_stage={base.min_per_stage})")
    return low, high


def _xi(label, value, seeds):
    if value == "std":
        if len(seeds) < 2:
            raise GridError(f"{label}: xi='std' needs at least 2 seeds (a dense standard deviation), got seed={seeds}")
        return "std"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise GridError(f"{label}: xi={value!r}: expected a number of points >= 0 or 'std'")
    return float(value)
