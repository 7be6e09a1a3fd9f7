"""A sweep's results, independent of Ray's state: one result.json per trial under the hash of its
config, and the results table (CSV and Parquet) rebuilt from them, every file written atomically
to the sweep's storage (a local directory or an object store URI, `layerlth.storage`)."""

import io
import json

import pandas as pd

from layerlth.storage import Storage

# nested values become JSON strings in the table; per-epoch curves stay in result.json only
_LEFT_OUT = ("history",)


class SweepStore:
    def __init__(self, root):
        self.storage = root if isinstance(root, Storage) else Storage(root)
        self.root = self.storage.location

    @staticmethod
    def result_name(trial_id):
        return f"trials/{trial_id}/result.json"

    def result(self, trial_id):
        name = self.result_name(trial_id)
        return self.storage.read_json(name) if self.storage.exists(name) else None

    def finished(self, trial_id):
        result = self.result(trial_id)
        return bool(result) and result.get("status") == "finished"

    def save(self, result):
        self.storage.write_json(self.result_name(result["trial_id"]), result)

    def rows(self):
        return [self.storage.read_json(name) for name in self.storage.glob("trials/*/result.json")]

    def table(self):
        rows = [{k: _cell(v) for k, v in row.items() if k not in _LEFT_OUT} for row in self.rows()]
        return pd.DataFrame(rows)

    @property
    def csv_path(self):
        return self.storage.path("results.csv")

    def write_table(self):
        frame = self.table()
        self.storage.write_bytes("results.csv", frame.to_csv(index=False).encode())
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.storage.write_bytes("results.parquet", buffer.getvalue())
        return frame


def _cell(value):
    return json.dumps(value, default=str) if isinstance(value, (list, dict, tuple)) else value
