"""Driver-side Tune callback: each finished or errored trial goes into the sweep's store at once,
and the results table is rebuilt, so a killed sweep loses no finished trial."""

import json
from pathlib import Path

from ray import tune


class StoreResults(tune.Callback):
    def __init__(self, store):
        self.store = store

    def on_trial_complete(self, iteration, trials, trial, **info):
        raw = (trial.last_result or {}).get("result_json")
        result = json.loads(raw) if raw else None
        if result and not self.store.finished(result["trial_id"]):
            self.store.save(result)
            self.store.write_table()

    def on_trial_error(self, iteration, trials, trial, **info):
        point = trial.config["point"]
        if self.store.finished(point["id"]):
            return
        error_file = trial.error_file
        error = Path(error_file).read_text() if error_file and Path(error_file).is_file() else str(trial.get_error())
        self.store.save({**point["trial"], "trial_id": point["id"], "status": "errored", "error": error})
        self.store.write_table()
