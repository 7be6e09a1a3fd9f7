"""Weights & Biases: one run per trial, grouped by sweep, tagged with what the trial is.

Mode "auto" logs online when an API key is configured and offline otherwise (sync later with
`wandb sync`). A network that does not answer costs at most INIT_TIMEOUT seconds (counted in the
trial's wall_seconds): the run then falls back to offline, says so, and removes the folder of the
online attempt, so only runs that hold data are left to sync.
"""

import logging
import netrc
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger("layerlth")
INIT_TIMEOUT = 20
MODES = ("auto", "online", "offline", "disabled")


def api_key_configured():
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_mode(mode):
    if mode not in MODES:
        raise ValueError(f"unknown W&B mode {mode!r}; allowed: {list(MODES)}")
    if mode == "auto":
        return os.environ.get("WANDB_MODE") or ("online" if api_key_configured() else "offline")
    return mode


def tags(config):
    rounds = [f"k={config.rounds}"] if config.rounds != 1 else []  # iterative removal
    return [config.arch, config.kind, config.criterion if config.p else "dense", f"p={config.p}", *rounds,
            f"seed={config.seed}"]


def start_run(config, group, mode, project, entity=None, directory=None, extra_tags=()):
    """A W&B run for the trial, or None when disabled; `extra_tags` e.g. the depth search it serves."""
    if mode == "disabled":
        return None
    import wandb

    kwargs = dict(project=project, entity=entity, group=group, name=f"{config.kind}-{config.arch}-{config.hash()}",
                  tags=[*tags(config), *extra_tags], config=config.to_dict(), dir=directory, reinit="create_new")
    if directory:
        os.makedirs(directory, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]  # names the attempt's folder, so a failed one can be removed
    try:
        return wandb.init(mode=mode, id=run_id, settings=wandb.Settings(init_timeout=INIT_TIMEOUT, silent=True), **kwargs)
    except Exception as error:  # wandb raises CommError and others when the server is unreachable
        if mode != "online":
            raise
        remove_run_folders(directory, run_id)
        log.warning("W&B did not answer within %ss (%s); logging this trial offline, sync it later "
                    "with `wandb sync`", INIT_TIMEOUT, str(error).splitlines()[0])
        return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)


def remove_run_folders(directory, run_id):
    """Delete the folders W&B made for run `run_id` (an online attempt that never connected)."""
    root = Path(directory or os.environ.get("WANDB_DIR") or ".") / "wandb"
    for folder in root.glob(f"run-*-{run_id}"):
        shutil.rmtree(folder, ignore_errors=True)


def finish_run(run, result, stop_service=True):
    """The run's summary from the result, then finished; `stop_service` stops the W&B service too
    (not while other runs of this process, a pack's, are still logging)."""
    if run is None:
        return
    keys = ("final_test_acc", "best_test_acc", "params", "macs", "macs_reduction", "train_seconds",
            "images_per_second", "memory_bytes", "energy_kwh", "co2_kg", "emissions_method", "cka_vs_dense",
            "status",
            # robustness (when the trial evaluates it)
            "acc_cifar10c", "cifar10c_source", "acc_cifar102", "acc_fgsm", "acc_pgd", "attack_clean_acc",
            "attack_eps", "pgd_steps", "pgd_step_size", "attack_images", "robustness_error")
    run.summary.update({k: result[k] for k in keys if result.get(k) is not None})
    run.finish()
    if stop_service:
        stop_wandb()


def stop_wandb():
    """Stop the W&B service now, not in an atexit hook of a worker Ray kills."""
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
