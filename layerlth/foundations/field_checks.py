"""Type and range of each config value, read from the dataclass: a grid or a JSON dict gets the same
strictness as the command line, with an error naming the field, the value and what is allowed.

The type comes from the field's annotation (`int`, `float`, `bool`, `str`, `int | None`, `tuple` or
`tuple[str, ...]`; a bare `tuple` takes its items' type from the metadata's `type`, default str; a
union such as `bool | str` takes a value of any of its types, e.g. compile: "auto", true or false).
Ranges come from the metadata (`min`, `max`, `choices`, or `check`: a function that raises
ValueError) or, for the fields below, from RANGES; a field with neither is type-checked only.
Every bad value of a config is named at once (`BadValues`), a misspelt name with the nearest allowed
one (`did_you_mean`).
"""

import difflib
import os
import re
import types
import typing
from dataclasses import fields
from functools import lru_cache

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@lru_cache(maxsize=1)
def countries():
    """ISO 3166 alpha-3 codes codecarbon can price (its own energy-mix table)."""
    from codecarbon.input import DataSource

    return frozenset(DataSource().get_global_energy_mix_data())


def check_country(code):
    if code not in countries():
        raise ValueError(f"codecarbon has no energy mix for it; allowed: an ISO 3166 alpha-3 code such as "
                         f"USA, FRA, DEU (one of the {len(countries())} in codecarbon's table)")


def check_device(name):
    if not _DEVICE.fullmatch(name):
        raise ValueError("unknown device; allowed: auto, cpu, cuda, cuda:N, mps")


def check_rung(fraction):
    if not 0 < fraction < 1:
        raise ValueError("a rung is a fraction of training strictly between 0 and 1")


# ranges of the TrialConfig fields whose metadata does not carry them
RANGES = {
    "p": {"min": 0}, "rounds": {"min": 1}, "rewind": {"min": 0}, "seed": {"min": 0}, "score_batches": {"min": 1},
    "score_batch_size": {"min": 1}, "min_per_stage": {"min": 1}, "epochs": {"min": 1},
    "batch_size": {"min": 1}, "lr": {"min": 0, "exclusive": True}, "train_subset": {"min": 1},
    "image_size": {"min": 16}, "data_workers": {"min": 0}, "workers": {"min": 1},
    "gpu_share": {"min": 0, "max": 1, "exclusive": True}, "rewind_epochs": {"min": 0},
    "checkpoint_epochs": {"min": 0}, "aggregate": {"choices": ("sum", "mean")},
    "shortcut": {"choices": ("A", "B")}, "country": {"check": check_country}, "device": {"check": check_device},
    "stop_rungs": {"check": check_rung}, "stop_margin": {"min": 0},
}


class BadValues(ValueError):
    """Several bad values of one config, all named: `problems` is [(field or None, exception)]."""

    def __init__(self, problems):
        self.problems = list(problems)
        lines = "\n".join(f"  {error}" for _, error in self.problems)
        super().__init__(f"{len(self.problems)} bad values:\n{lines}")


def raise_all(problems):
    """Nothing for no problem, one problem's own exception (its type kept), or all of them as one."""
    if len(problems) == 1:
        raise problems[0][1]
    if problems:
        raise BadValues(problems)


def nearest(word, names):
    """The name most like `word` (difflib's ratio >= 0.6, as `get_close_matches`), or None; case is
    ignored, and a tie goes to the longer common start (resnet21: resnet20, not resnet32)."""
    word = str(word).lower()
    names = [n for n in names if isinstance(n, str)]
    near = difflib.get_close_matches(word, [n.lower() for n in names], n=len(names) or 1)
    if not near:
        return None
    best = difflib.SequenceMatcher(None, word, near[0]).ratio()
    tied = [n for n in near if difflib.SequenceMatcher(None, word, n).ratio() == best]
    pick = max(tied, key=lambda n: len(os.path.commonprefix([word, n])))
    return next(n for n in names if n.lower() == pick)


def did_you_mean(words, names):
    """"did you mean 'x'?" naming the allowed names nearest to misspelt ones, or "" when none is near."""
    words = [words] if isinstance(words, str) else list(words)
    pairs = [(w, near) for w in words if (near := nearest(w, names)) is not None]
    if not pairs:
        return ""
    if len(words) == 1:
        return f"did you mean {pairs[0][1]!r}?"
    return "did you mean " + ", ".join(f"{near!r} for {word!r}" for word, near in pairs) + "?"


def hinted(message, words, names):
    """`message` with the did-you-mean of `words` appended, when one is near."""
    hint = did_you_mean(words, names)
    return f"{message}; {hint}" if hint else message


def field_type(f):
    """(scalar type, optional, is a tuple) of a dataclass field; the scalar type of a union of several
    (`bool | str`) is the tuple of them."""
    kind = f.type
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        inner = tuple(a for a in args if a is not type(None))
        return (inner[0] if len(inner) == 1 else inner), type(None) in args, False
    if kind is tuple or typing.get_origin(kind) is tuple:
        return (args[0] if args else f.metadata.get("type", str)), False, True
    return kind, False, False


def is_tuple(f):
    return field_type(f)[2]


def _typed(value, kind):
    """`value` as `kind` (or as the first of a tuple of kinds it is), or None when it is not one (no
    coercion of strings, floats or bools)."""
    if isinstance(kind, tuple):
        return next((typed for typed in (_typed(value, k) for k in kind) if typed is not None), None)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    return None


def _allowed(kind, rules):
    if "choices" in rules:
        choices = rules["choices"]
        if any(isinstance(c, bool) for c in choices):  # as a grid or JSON writes them: 'auto', true, false
            return "one of " + ", ".join(str(c).lower() if isinstance(c, bool) else repr(c) for c in choices)
        return f"one of {list(choices)}"
    text = " or ".join(_NAMES.get(k, k.__name__) for k in kind) if isinstance(kind, tuple) else \
        _NAMES.get(kind, kind.__name__)
    if "min" in rules and "max" in rules:
        return f"{text} in ({rules['min']}, {rules['max']}]" if rules.get("exclusive") else \
            f"{text} in [{rules['min']}, {rules['max']}]"
    if "min" in rules:
        return f"{text} {'>' if rules.get('exclusive') else '>='} {rules['min']}"
    return text


def _in_range(value, rules):
    low, high, open_low = rules.get("min"), rules.get("max"), rules.get("exclusive", False)
    if low is not None and (value < low or (open_low and value == low)):
        return False
    if high is not None and value > high:
        return False
    return "choices" not in rules or value in rules["choices"]


def check_value(f, value):
    """`value` converted to the field's type (a list becomes a tuple); ValueError if it is not one."""
    kind, optional, is_tuple_field = field_type(f)
    rules = {**RANGES.get(f.name, {}), **{k: v for k, v in f.metadata.items() if k in ("min", "max", "choices", "check")}}
    if value is None and (optional or f.default is None):
        return None
    if is_tuple_field:
        items = [_typed(v, kind) for v in value] if isinstance(value, (list, tuple)) else None
        if items is None or None in items or not all(_in_range(v, rules) for v in items):
            raise ValueError(f"{f.name}={value!r}: expected a list (possibly empty), each item {_allowed(kind, rules)}")
        for item in items:
            _check(f, item, rules)
        return tuple(items)
    typed = _typed(value, kind)
    if typed is None or not _in_range(typed, rules):
        none = " or null" if optional else ""
        message = f"{f.name}={value!r}: expected {_allowed(kind, rules)}{none}"
        named = isinstance(value, str) and "choices" in rules  # a misspelt choice: the nearest one
        raise ValueError(hinted(message, value, rules["choices"]) if named else message)
    _check(f, typed, rules)
    return typed


def _check(f, value, rules):
    try:
        rules.get("check", lambda v: None)(value)
    except ValueError as error:
        raise ValueError(f"{f.name}={value!r}: {error}") from error


def checked_values(cls, values):
    """(a copy of `values` with each known field checked and converted, [(field, ValueError)] for each
    bad one); unknown keys are left as they are."""
    known = {f.name: f for f in fields(cls)}
    converted, problems = {}, []
    for key, value in values.items():
        try:
            converted[key] = check_value(known[key], value) if key in known else value
        except ValueError as error:
            problems.append((key, error))
    return converted, problems


def check_values(cls, values):
    """`checked_values` that raises naming every bad value."""
    converted, problems = checked_values(cls, values)
    raise_all(problems)
    return converted
