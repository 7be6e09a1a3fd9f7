"""Reading result rows back: result.json files, directories of them, or a sweep's CSV/Parquet."""

import json
from pathlib import Path


def _read_table(path):
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame.to_dict("records")


def load_rows(paths):
    rows = {}
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"no such results file or directory: {path}")
        if path.suffix in (".csv", ".parquet"):
            found = _read_table(path)
        else:
            files = sorted(path.rglob("result.json")) if path.is_dir() else [path]
            found = [json.loads(f.read_text()) for f in files]
        for row in found:  # a dense run stored twice (trial dir and dense store) counts once
            rows[row.get("trial_id", id(row))] = row
    return list(rows.values())
