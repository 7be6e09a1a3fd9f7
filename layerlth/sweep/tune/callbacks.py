"""Driver-side Tune callback: each finished or errored trial goes into the sweep's store at once,
and the results table is rebuilt, so a killed sweep loses no finished trial.

A write that fails (a full disk, a lost mount) does not crash the driver: the failure is noted,
`StopWhenStoreFails` stops the experiment, and the runner reports what was not stored. Tune pickles
its callbacks with the experiment (a restored one gets copies), so failures are noted per process,
by sweep directory.
"""

import json
from pathlib import Path

from ray import tune

# {sweep directory: [(what could not be written, the error)]}, this process's failed writes
FAILURES = {}


def failures(root):
    return FAILURES.setdefault(str(root), [])


class StoreResults(tune.Callback):
    def __init__(self, store):
        self.store = store

    def on_trial_complete(self, iteration, trials, trial, **info):
        raw = (trial.last_result or {}).get("result_json")
        result = json.loads(raw) if raw else None
        if result:  # the trial stored it already; the driver's copy covers a worker that could not
            self._write(result, lambda: self.store.finished(result["trial_id"]) or self.store.save(result))

    def on_trial_error(self, iteration, trials, trial, **info):
        if "pack" in trial.config:  # a pack's members are stored by the pack and its searcher
            return
        point = trial.config["point"]
        if self.store.finished(point["id"]):
            return
        error_file = trial.error_file
        error = Path(error_file).read_text() if error_file and Path(error_file).is_file() else str(trial.get_error())
        record = {**point["trial"], "trial_id": point["id"], "status": "errored", "error": error}
        self._write(record, lambda: self.store.save(record))

    def _write(self, record, save):
        keep(self.store, record, save)


def keep(store, record, save):
    """`save()` the record, then rebuild the results table; a write that fails is noted (the
    experiment then stops, `StopWhenStoreFails`), never raised in the driver."""
    try:
        save()
    except OSError as error:
        failures(store.root).append((f"record of trial {record['trial_id']} ({record['status']})", error))
        return
    try:
        store.write_table()
    except OSError as error:
        failures(store.root).append(("results table", error))


class StopWhenStoreFails(tune.Stopper):
    """Stops every trial once the store could not write: going on would train for nothing."""

    def __init__(self, root):
        self.root = str(root)

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return bool(failures(self.root))
