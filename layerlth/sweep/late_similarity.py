"""The CKA of tickets that finished before their dense run: in a sweep, at-init and filter tickets
do not wait for it, so their row leaves `cka_vs_dense` empty and their final weights beside it
(`SweepStore.weights_name`). Once the dense run is stored, the driver fills the CKA in, on the same
1024 test images as a ticket that found its dense run computes it itself (`trial.similarity_to_dense`).

The ticket is rebuilt from the architecture of its own record's config; its weights file loads as
tensors only and may only say which blocks and filters are gone. A record naming a user's
`module:callable` that this sweep's own grid does not name is left alone: a record read back from
storage never makes the driver import anything."""

import io
import logging
from dataclasses import fields

from layerlth.data import load_dataset
from layerlth.foundations.arch_names import is_user
from layerlth.foundations.config import TrialConfig
from layerlth.foundations.recipes import training_recipe
from layerlth.tickets.dense_runs import DenseRun
from layerlth.training.checkpoints import UnsafeCheckpoint, load_state

log = logging.getLogger("layerlth")
_FIELDS = {f.name for f in fields(TrialConfig)}


def missing(row):
    """A finished ticket whose row has no CKA yet."""
    return (row.get("status") == "finished" and row.get("kind") != "dense" and row.get("p")
            and row.get("cka_vs_dense") is None)


def fill_similarity(store, archs=(), device="cpu"):
    """Fill in `cka_vs_dense` of every finished ticket whose dense run is stored by now; returns how
    many rows were completed. A ticket whose weights are missing or refuse to load is named and left;
    so is one of a user's architecture not among `archs` (those of the sweep's own configs)."""
    from layerlth.tickets.trial import similarity_to_dense  # the driver's only use of the trial's own code

    datasets, filled = {}, 0
    for row in filter(missing, store.rows()):
        if is_user(str(row.get("arch"))) and row.get("arch") not in archs:
            log.warning("cka_vs_dense of trial %s stays empty: its arch %r is not in this sweep's grid and is "
                        "not imported from a stored record", row.get("trial_id"), row.get("arch"))
            continue
        config = TrialConfig.from_dict({k: v for k, v in row.items() if k in _FIELDS} | {"device": device})
        run = DenseRun(config, training_recipe(config).epochs)
        name = store.weights_name(row["trial_id"])
        if not store.storage.exists(name) or not run.complete():
            continue
        try:
            ticket = load_state(store.storage.path(name), config, io.BytesIO(store.storage.read_bytes(name)))["model"]
        except (UnsafeCheckpoint, OSError) as error:
            log.warning("cka_vs_dense of trial %s stays empty: %s", row["trial_id"], error)
            continue
        key = (config.dataset, config.data_dir, config.train_subset)
        if key not in datasets:
            datasets[key] = load_dataset(config.dataset, config.data_dir).subset(train=config.train_subset)
        data = datasets[key]
        store.save({**row, "cka_vs_dense": similarity_to_dense(ticket, config, run, data, device)})
        filled += 1
    return filled
