"""A sweep's results, independent of Ray's state: one result.json per trial under the hash of its
config, and the results table (CSV and Parquet) rebuilt from them, every file written atomically."""

import io
import json
from pathlib import Path

import pandas as pd

from layerlth.checkpoints import write_atomic, write_json_atomic

# nested values become JSON strings in the table; per-epoch curves stay in result.json only
_LEFT_OUT = ("history",)


class SweepStore:
    def __init__(self, root):
        self.root = Path(root)

    def trial_dir(self, trial_id):
        return self.root / "trials" / trial_id

    def result(self, trial_id):
        path = self.trial_dir(trial_id) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finished(self, trial_id):
        result = self.result(trial_id)
        return bool(result) and result.get("status") == "finished"

    def save(self, result):
        write_json_atomic(result, self.trial_dir(result["trial_id"]) / "result.json")

    def rows(self):
        return [json.loads(p.read_text()) for p in sorted((self.root / "trials").glob("*/result.json"))]

    def table(self):
        rows = [{k: _cell(v) for k, v in row.items() if k not in _LEFT_OUT} for row in self.rows()]
        return pd.DataFrame(rows)

    @property
    def csv_path(self):
        return self.root / "results.csv"

    def write_table(self):
        frame = self.table()
        write_atomic(self.csv_path, lambda handle: handle.write(frame.to_csv(index=False).encode()))
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_atomic(self.root / "results.parquet", lambda handle: handle.write(buffer.getvalue()))
        return frame


def _cell(value):
    return json.dumps(value, default=str) if isinstance(value, (list, dict, tuple)) else value
