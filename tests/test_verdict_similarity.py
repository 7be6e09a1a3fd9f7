import pytest
import torch

from layerlth.measure.similarity import linear_cka
from layerlth.tickets.verdict import format_verdicts, signed, verdict, verdicts


def test_signed_prints_like_the_paper():
    assert signed(0.4) == "(+)0.40" and signed(0.0) == "(+)0.00" and signed(-0.5) == "(-)0.50"


def test_verdict_for_each_xi():
    dense = [0.9200, 0.9250, 0.9300]  # std 0.5 points
    v = verdict(dense, [0.9210, 0.9240, 0.9260])
    assert v["diff"] == pytest.approx(-0.133, abs=1e-3) and v["diff_text"] == "(-)0.13"
    assert not v["wins_xi0"] and v["wins_xi1"] and v["wins_xi_std"]
    assert v["dense_std"] == pytest.approx(0.5)
    far = verdict(dense, [0.90, 0.91])
    assert not far["wins_xi1"] and not far["wins_xi_std"]
    assert verdict(dense, [0.93, 0.93])["wins_xi0"]
    with pytest.raises(ValueError):
        verdict([], [0.9])


def test_one_dense_seed_has_no_std_verdict():
    """std = 0 over one seed would make every tie a win: the column reads n/a, None in JSON."""
    assert verdict([0.92], [0.92])["wins_xi_std"] is None
    rows = [dict(arch="resnet20", dataset="digits", shortcut="B", recipe="he2016", epochs=2, train_subset=None,
                 kind=kind, criterion="grasp", p=p, rewind=0, reinit=False, final_test_acc=acc)
            for kind, p, acc in (("dense", 0, 0.9), ("at_init", 1, 0.95))]
    [row] = verdicts(rows)
    assert row["wins_xi0"] and row["wins_xi_std"] is None
    assert format_verdicts([row]).splitlines()[1].endswith("yes/yes/n/a")


def test_linear_cka_is_invariant_to_rotation_and_scale_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=g))[0]
    assert linear_cka(x, x) == pytest.approx(1)
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1)
    assert linear_cka(x, torch.randn(200, 8, generator=g)) < 0.2


def test_verdict_command_reads_result_files(tmp_path, capsys):
    import json

    from layerlth.cli import main

    base = {"arch": "resnet32", "dataset": "cifar10", "shortcut": "B", "recipe": "paper", "epochs": 200,
            "train_subset": None, "criterion": "grasp", "rewind": 0, "reinit": False}
    accs = {("dense", 0): [0.925, 0.924, 0.926], ("at_init", 1): [0.929, 0.928, 0.929]}
    for (kind, p), values in accs.items():
        for seed, acc in enumerate(values):
            row = base | {"kind": kind, "p": p, "seed": seed, "final_test_acc": acc, "trial_id": f"{kind}{seed}"}
            (tmp_path / f"{kind}{seed}").mkdir()
            (tmp_path / f"{kind}{seed}" / "result.json").write_text(json.dumps(row))
    main(["verdict", str(tmp_path), "--json"])
    [v] = json.loads(capsys.readouterr().out)
    assert v["diff_text"] == "(+)0.37" and v["wins_xi0"] and v["ticket_n"] == 3
