"""The storage that nodes share, on a local directory and on a local S3-compatible server (moto):
atomic files, listing, and a dense run trained into the bucket that an Algorithm 1 ticket reads."""

import io
import pickle

import pandas as pd
import pytest
from s3_server import s3_server

from layerlth.foundations.config import TrialConfig
from layerlth.foundations.storage import Storage
from layerlth.sweep.store import SweepStore
from layerlth.tickets.dense_runs import DenseRun
from layerlth.tickets.trial import run_trial


@pytest.fixture(scope="module")
def s3_env():
    with s3_server() as env:
        yield env


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return Storage(tmp_path / "store")
    for name, value in request.getfixturevalue("s3_env").items():
        monkeypatch.setenv(name, value)
    return Storage(f"s3://layerlth/{request.node.originalname}")


def test_files_round_trip_list_and_delete(storage):
    assert not storage.exists("trials/a/result.json") and storage.glob("trials/*/result.json") == []
    storage.write_json("trials/a/result.json", {"acc": 0.5})
    storage.write_bytes("trials/b/result.json", b'{"acc": 0.25}')
    storage.write_bytes("trials/b/deeper/result.json", b"{}")
    storage.write_bytes("results.csv", b"x\n1\n")
    assert storage.glob("trials/*/result.json") == ["trials/a/result.json", "trials/b/result.json"]
    assert storage.read_json("trials/a/result.json") == {"acc": 0.5}
    copy = pickle.loads(pickle.dumps(storage))  # how it travels to Ray workers
    assert copy.read_bytes("results.csv") == b"x\n1\n" and copy.location == storage.location
    assert storage.child("trials").read_json("b/result.json") == {"acc": 0.25}
    storage.write_bytes("results.csv", b"x\n2\n")  # overwritten whole
    assert storage.read_bytes("results.csv") == b"x\n2\n"
    storage.delete("trials/a/result.json")
    storage.delete("trials/a/result.json")  # deleting what is gone is no error
    assert storage.glob("trials/*/result.json") == ["trials/b/result.json"]
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        storage.read_bytes("nothing.json")
    assert storage.size("results.csv") == 4
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        storage.size("nothing.json")


def test_local_writes_leave_no_temporary_file(tmp_path):
    storage = Storage(tmp_path)
    storage.write_json("trials/a/result.json", {"ok": True})
    assert sorted(p.name for p in (tmp_path / "trials" / "a").iterdir()) == ["result.json"]
    assert storage.path("x/y") == str(tmp_path / "x" / "y") and Storage("s3://b/p/").path("x") == "s3://b/p/x"


def test_sweep_store_on_storage(storage):
    store = SweepStore(storage)
    store.save({"trial_id": "t1", "status": "finished", "final_test_acc": 0.9, "history": [{"epoch": 1}]})
    store.save({"trial_id": "t2", "status": "errored", "error": "boom"})
    assert store.finished("t1") and not store.finished("t2") and store.result("t3") is None
    frame = store.write_table()
    table = pd.read_csv(io.BytesIO(storage.read_bytes("results.csv")))
    assert sorted(table["trial_id"]) == ["t1", "t2"] and "history" not in table and len(frame) == 2
    assert pd.read_parquet(io.BytesIO(storage.read_bytes("results.parquet")))["status"].tolist() == list(frame["status"])
    assert store.csv_path == storage.path("results.csv")


@pytest.mark.slow
def test_algorithm1_ticket_reads_its_dense_run_from_the_bucket(s3_env, monkeypatch):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    common = dict(dataset="digits", arch="resnet20", recipe="he2016", epochs=2, score_batches=1, emissions=False,
                  dense_dir="s3://layerlth/dense", device="cpu")
    dense = run_trial(TrialConfig(kind="dense", **common))
    bucket = Storage("s3://layerlth/dense")
    key = TrialConfig(**common).dense_key()
    assert dense["dense_run"] == f"s3://layerlth/dense/{key}" and not dense["dense_reused"]
    assert bucket.glob(f"{key}/*") == [f"{key}/manifest.json", f"{key}/result.json", f"{key}/weights_epoch0.pt",
                                        f"{key}/weights_epoch1.pt", f"{key}/weights_epoch2.pt"]
    assert DenseRun(TrialConfig(**common), 2).complete()  # sizes from the bucket, against the manifest
    ticket = run_trial(TrialConfig(kind="after_training", criterion="kl", p=1, rewind=1, **common))
    assert ticket["status"] == "finished" and ticket["dense_run"] == dense["dense_run"]
    assert ticket["start_epoch"] == 1 and len(ticket["removed"]) == 1 and ticket["cka_vs_dense"] is not None
