"""A sweep's results, independent of Ray's state: one result.json per trial under the hash of its
config, and the results table (CSV and Parquet) rebuilt from them, every file written atomically
to the sweep's storage (a local directory or an object store URI, `layerlth.foundations.storage`).

A record that cannot be read (damaged by hand, by a full disk on a filesystem without atomic
renames, ...) is reported with its path, set aside as `result.json.corrupt` and its trial counts
as not run, so a relaunch reruns it instead of failing on it.
"""

import io
import json
import logging

import pandas as pd

from layerlth.foundations.storage import Storage

log = logging.getLogger("layerlth")
# nested values become JSON strings in the table; per-epoch curves stay in result.json only
_LEFT_OUT = ("history",)


class StoreFailed(RuntimeError):
    """The store could not write (a full disk, a lost mount): the sweep stops, naming what is missing."""


class SweepStore:
    def __init__(self, root):
        self.storage = root if isinstance(root, Storage) else Storage(root)
        self.root = self.storage.location

    @staticmethod
    def result_name(trial_id):
        return f"trials/{trial_id}/result.json"

    @staticmethod
    def weights_name(trial_id):
        """A finished ticket's final weights (a state_dict and which blocks and filters it lacks)."""
        return f"trials/{trial_id}/weights.pt"

    def result(self, trial_id):
        return self._read(self.result_name(trial_id))

    def _read(self, name):
        """The record `name`; None when there is none or it was damaged (then it is set aside)."""
        try:
            record = json.loads(self.storage.read_bytes(name))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._set_aside(name, f"{type(error).__name__}: {error}")
        if not isinstance(record, dict) or not isinstance(record.get("trial_id"), str) or "status" not in record:
            return self._set_aside(name, "not a trial record (no trial_id or status)")
        return record

    def _set_aside(self, name, why):
        try:
            self.storage.move(name, name + ".corrupt")
        except FileNotFoundError:  # another process set it aside first
            return None
        log.warning("damaged trial record %s (%s): moved to %s.corrupt; its trial will run again",
                    self.storage.path(name), why, self.storage.path(name))
        return None

    def finished(self, trial_id):
        result = self.result(trial_id)
        return bool(result) and result.get("status") == "finished"

    def save(self, result):
        self.storage.write_json(self.result_name(result["trial_id"]), result)

    def rows(self):
        records = (self._read(name) for name in self.storage.glob("trials/*/result.json"))
        return [r for r in records if r is not None]

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
