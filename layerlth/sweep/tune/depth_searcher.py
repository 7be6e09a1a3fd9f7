"""The Tune searcher of a grid's depth searches (`layerlth.search.core`), beside `dense_gate`'s.

Each search proposes its rounds from the records of its completed ones, so it is a pure function of
what is stored: a trial already stored (by a grid, an earlier launch, another search) is looked up,
not run; a relaunch replays every search against the records and goes on where it stopped, with
nothing of the searcher saved. Searches run side by side; within one, a round's trials (its p values
at every seed) run at once, and an after-training ticket waits until its dense run is stored.
"""

import json
import logging

from ray.tune.search import Searcher

from layerlth.search.core import SearchError, replay

log = logging.getLogger("layerlth")
DONE = ("finished", "stopped_early")


def search_tag(search):
    """A W&B tag naming the search: its setting's hash and range (labels are too long for a tag)."""
    return f"search={search.base.hash()[:8]}:{search.low}-{search.high}"


class Records:
    """Trial records by hash: those the store held when first asked, and those completed since."""

    def __init__(self, store):
        self.store, self.known, self.absent = store, {}, set()

    def get(self, trial_hash):
        if trial_hash not in self.known and trial_hash not in self.absent:
            record = self.store.result(trial_hash)
            if record and record.get("status") in DONE:
                self.known[trial_hash] = record
            else:
                self.absent.add(trial_hash)  # until a trial of this sweep completes it
        return self.known.get(trial_hash)

    def add(self, trial_hash, record):
        self.absent.discard(trial_hash)
        self.known[trial_hash] = record


class DepthSearcher(Searcher):
    def __init__(self, search_list, store, params):
        """`params(label, config)` is the Tune config of a trial."""
        super().__init__()
        self.searches, self.params = list(search_list), params
        self.records = Records(store)
        self.running = {}  # Tune trial id -> trial hash
        self.failed = {}  # search label -> why it stopped
        self.asked = {search.label: 0 for search in self.searches}  # trials handed to Tune, per search

    def pending(self):
        """[(search, configs of its current round not yet recorded)] of the searches not done."""
        found = []
        for search in self.searches:
            if search.label in self.failed:
                continue
            try:
                _, _, _, missing = replay(search, self.records)
            except SearchError as error:
                log.error("%s", error)
                self.failed[search.label] = str(error)
                continue
            if missing:
                found.append((search, missing))
        return found

    def _ready(self, config):
        """An after-training ticket, or one that may stop early (its dense curve is the reference),
        starts once its dense run is stored."""
        if config.is_dense or (config.kind != "after_training" and not config.stop_rungs):
            return True
        return self.records.get(config.dense_config().hash()) is not None

    def suggest(self, trial_id):
        waiting = self.pending()
        in_flight = set(self.running.values())
        for search, missing in waiting:
            for config in missing:
                if config.hash() not in in_flight and self._ready(config):
                    self.running[trial_id] = config.hash()
                    self.asked[search.label] += 1
                    params = self.params(f"{search.label} p={config.p} seed={config.seed}", config)
                    params["point"]["tags"] = [search_tag(search)]  # W&B runs of one search share it
                    return params
        return None if waiting else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        trial_hash = self.running.pop(trial_id, None)
        if trial_hash is None:
            return
        raw = (result or {}).get("result_json")
        if error or not raw:
            record = self.records.store.result(trial_hash) or {"status": "errored", "trial_id": trial_hash}
        else:
            record = json.loads(raw)
        self.records.add(trial_hash, record)

    def save(self, checkpoint_path):
        """Nothing to save: a relaunch replays the searches against the stored records."""

    def restore(self, checkpoint_path):
        raise NotImplementedError("layerlth never restores a pickled searcher: relaunch the grid (--resume), "
                                  "which replays the searches against the stored records")
