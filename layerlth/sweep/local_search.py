"""A grid's depth searches without Ray: one trial after the other in this process, each stored in the
sweep's folder as a Ray sweep stores it (`trials/<hash>/result.json`), so a search, a grid and a Ray
sweep of the same folder reuse each other's trials. Killed, it is relaunched: the search replays its
rounds against the stored records and trains only what is missing."""

from layerlth.foundations.config import DEFAULT_DENSE_DIR, TrialConfig
from layerlth.search.core import run_search
from layerlth.search.report import format_summary, save_summaries, with_cost
from layerlth.sweep.store import SweepStore
from layerlth.tickets.trial import run_trial


def stored(store):
    """The record of a config when it counts as done: finished, or stopped early (a loss)."""
    def lookup(config):
        record = store.result(config.hash())
        return record if record and record.get("status") in ("finished", "stopped_early") else None
    return lookup


def in_sweep(config, root):
    """The config as the sweep runs it: dense runs in the sweep's own dense/ folder (not part of the hash)."""
    if config.dense_dir != DEFAULT_DENSE_DIR:
        return config
    return TrialConfig.from_dict(config.to_dict() | {"dense_dir": root.child("dense").location})


def trainer(store, root):
    def train(config):
        result = run_trial(in_sweep(config, root)) | {"trial_id": config.hash()}
        store.save(result)
        return result
    return train


def run_searches(search_list, root, log=print):
    """Run each search to its end; returns their summaries (also written to `searches.json`)."""
    store = SweepStore(root)
    summaries = []
    for search in search_list:
        log(f"{search.label}: p in {search.low}..{search.high}, seeds {list(search.seeds)}, {search.rule}")
        found, trained = run_search(search, stored(store), trainer(store, root), log)
        found = with_cost(search, found | {"trained_now": trained})
        summaries.append(found)
        log(format_summary(found))
    save_summaries(store, summaries)
    store.write_table()
    return summaries
