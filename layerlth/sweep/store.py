"""A sweep's results, independent of Ray's state: one result.json per trial under the hash of its
config, and the results table (CSV and Parquet) rebuilt from them, every file written atomically.

A record that cannot be read (damaged by hand, by a full disk on a filesystem without atomic
renames, ...) is reported with its path, set aside as `result.json.corrupt` and its trial counts
as not run, so a relaunch reruns it instead of failing on it.
"""

import io
import json
import logging
from pathlib import Path

import pandas as pd

from layerlth.checkpoints import write_atomic, write_json_atomic

log = logging.getLogger("layerlth")
# nested values become JSON strings in the table; per-epoch curves stay in result.json only
_LEFT_OUT = ("history",)


class StoreFailed(RuntimeError):
    """The store could not write (a full disk, a lost mount): the sweep stops, naming what is missing."""


class SweepStore:
    def __init__(self, root):
        self.root = Path(root)

    def trial_dir(self, trial_id):
        return self.root / "trials" / trial_id

    def result(self, trial_id):
        return self._read(self.trial_dir(trial_id) / "result.json")

    def _read(self, path):
        """The record at `path`; None when there is none or it was damaged (then it is set aside)."""
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._set_aside(path, f"{type(error).__name__}: {error}")
        if not isinstance(record, dict) or not isinstance(record.get("trial_id"), str) or "status" not in record:
            return self._set_aside(path, "not a trial record (no trial_id or status)")
        return record

    def _set_aside(self, path, why):
        aside = path.with_name(path.name + ".corrupt")
        try:
            path.replace(aside)
        except FileNotFoundError:  # another process set it aside first
            return None
        log.warning("damaged trial record %s (%s): moved to %s; its trial will run again", path, why, aside)
        return None

    def finished(self, trial_id):
        result = self.result(trial_id)
        return bool(result) and result.get("status") == "finished"

    def save(self, result):
        write_json_atomic(result, self.trial_dir(result["trial_id"]) / "result.json")

    def rows(self):
        records = (self._read(p) for p in sorted((self.root / "trials").glob("*/result.json")))
        return [r for r in records if r is not None]

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
