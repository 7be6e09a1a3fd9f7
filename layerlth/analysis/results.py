"""Reading result rows back from what a sweep or a trial leaves: a sweep directory, a folder of
sweeps (or any tree holding them), `trials/`, result.json files, or a sweep's results.csv/.parquet.

Inside a sweep only its records are read (`trials/*/result.json`): Ray's own JSON under `tune/` is
not a record. A file that is not a trial record is skipped and named, never a bare JSON error.
Table cells that were empty (NaN) become None, integer columns with gaps ints again, and nested JSON
text lists, so rows read from a table compare equal to the records they were made from."""

import json
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("layerlth")
RECORD_KEYS = ("trial_id", "kind", "arch")  # what every trial record holds
# values a results table stores as JSON text, and integers a column with gaps turns into floats
_NESTED = ("removed", "history", "scores", "attempt_start_epochs", "removal_rounds")
_INTEGERS = ("p", "rounds", "rewind", "seed", "epochs", "batch_size", "train_subset", "epochs_trained")


def load_rows(paths):
    """The trial rows found in `paths`, each trial once (a dense run stored twice counts once)."""
    rows, skipped = {}, []
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"no such results file or directory: {path}")
        for row in _rows_of(path, skipped):
            rows[row.get("trial_id", id(row))] = row
    if skipped:
        shown = "; ".join(f"{f} ({why})" for f, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        log.warning("skipped %d files that are not trial records: %s%s", len(skipped), shown, more)
    return list(rows.values())


def _rows_of(path, skipped):
    if path.is_dir():
        rows = [row for f in record_files(path) if (row := _record(f, skipped)) is not None]
        return rows + unreported_dense_runs(path, rows, skipped)
    if path.suffix in (".csv", ".parquet"):
        return [clean(row) for row in _read_table(path)]
    row = _record(path, [])
    if row is None:
        raise ValueError(f"{path} is not a trial record: give a sweep directory, trials/, a result.json a "
                         f"trial wrote, or a sweep's results.csv/.parquet")
    return [row]


def record_files(directory, dense=False):
    """Every result.json of a trial under `directory`; in a sweep (a folder with `trials/`) only
    those of `trials/` (or with `dense`, of its dense store `dense/`), so Ray's files under its
    `tune/` are never read as records."""
    found = []
    for folder, subfolders, files in os.walk(directory):
        folder = Path(folder)
        if "trials" in subfolders:
            found += sorted((folder / "dense").glob("*/result.json")) if dense else sorted((folder / "trials").rglob("result.json"))
            subfolders.clear()
            continue
        if dense:
            continue
        subfolders.sort()
        found += [folder / "result.json"] if "result.json" in files else []
    return found


def unreported_dense_runs(directory, rows, skipped):
    """Dense runs stored for tickets (`dense/<key>/`) that no dense trial's record reports: what
    `layerlth ticket` leaves for an after-training ticket. A sweep's dense trials report theirs."""
    reported = {Path(str(row["dense_run"])).name for row in rows if row.get("dense_run") and row.get("kind") == "dense"}
    found = []
    for path in record_files(directory, dense=True):
        if path.parent.name not in reported and (row := _record(path, skipped)) is not None:
            found.append(row)
    return found


def _record(path, skipped):
    """The trial record in `path`, or None (and `path` with why in `skipped`)."""
    try:
        row = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        skipped.append((path, f"not one JSON object: {error}"))
        return None
    if not isinstance(row, dict) or any(k not in row for k in RECORD_KEYS):
        skipped.append((path, f"lacks {', '.join(RECORD_KEYS)}"))
        return None
    return row


def _read_table(path):
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame.to_dict("records")


def clean(row):
    """A table's row as the record it came from: NaN -> None, nested JSON text -> lists, ints."""
    row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    for name in _NESTED:
        if isinstance(row.get(name), str):
            try:
                row[name] = json.loads(row[name])
            except json.JSONDecodeError:
                pass
    for name in _INTEGERS:
        if isinstance(row.get(name), float) and row[name].is_integer():
            row[name] = int(row[name])
    return row
