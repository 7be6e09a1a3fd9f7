import json

import pytest

from layerlth.cli import main


def test_inspect_lists_blocks_and_the_ticket_cost(capsys):
    main(["inspect", "resnet32", "--remove", "3", "--criterion", "synflow", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 466_906 and info["macs"] == 69_124_736
    assert len(info["blocks"]) == 15 and sum(b["removable"] for b in info["blocks"]) == 12
    assert len(info["removed"]) == 3
    assert round(100 * (1 - info["ticket_macs"] / info["macs"]), 2) == 20.48


def test_inspect_rounds_prints_the_one_shot_and_the_iterative_choice(capsys):
    main(["inspect", "resnet32", "--remove", "3", "--criterion", "synflow", "--rounds", "3", "--json"])
    info = json.loads(capsys.readouterr().out)
    iterative = info["iterative"]
    assert len(info["removed"]) == 3 and iterative["rounds"] == 3
    assert [len(step["removed"]) for step in iterative["removal_rounds"]] == [1, 1, 1]
    assert iterative["removal_rounds"][0]["scores"] == info["scores"]  # round 1 scores the dense net
    main(["inspect", "resnet32", "--remove", "3", "--criterion", "synflow", "--rounds", "3"])
    out = capsys.readouterr().out
    assert "removed by synflow (lowest scores):" in out and "removed by synflow in 3 rounds" in out
    assert "blocks differ from the one-shot choice" in out


def test_inspect_table_names_why_a_block_is_kept(capsys):
    main(["inspect", "resnet20"])
    out = capsys.readouterr().out
    assert "stage2.block1" in out and "changes resolution or width" in out and "4.72M MACs  removable" in out


def test_ticket_ends_with_a_summary_keeps_its_record_and_prints_it_whole_with_json(capsys, tmp_path):
    argv = ["ticket", "--dataset", "synthetic", "-p", "1", "--criterion", "snip", "--epochs", "1",
            "--recipe", "he2016", "--score-batches", "1"]
    main(argv + ["--no-emissions"])
    out = capsys.readouterr().out.strip().splitlines()
    [record_line] = [line for line in out if line.startswith("record: ")]
    record = json.loads((tmp_path / record_line.split()[1]).read_text())  # the test runs in tmp_path
    assert record_line.split()[1] == f"results/trials/{record['trial_id']}/result.json"
    assert len(out) <= 10 and out[0].startswith("resnet20 at_init snip p=1 on synthetic, seed 0: finished")
    assert f"{record['final_test_acc']:.2%}" in out[1] and any(record["removed"][0] in line for line in out)
    main(argv + ["--no-emissions", "--json", "--out-dir", str(tmp_path / "mine")])
    result = json.loads(capsys.readouterr().out)
    assert len(result["removed"]) == 1 and "history" not in result
    assert result == {k: v for k, v in json.loads((tmp_path / "mine" / "result.json").read_text()).items()
                      if k != "history"} | {"out_dir": str(tmp_path / "mine")}


@pytest.mark.parametrize(
    "argv,message",
    [(["inspect", "resnet21"], "unknown arch 'resnet21'"),
     (["ticket", "--criterion", "l2"], "unknown criterion 'l2'"),
     (["ticket", "-p", "9"], "p=9 is not possible"),
     (["inspect", "resnet32", "--remove", "2", "--rounds", "3"], "rounds=3 is not possible with p=2: allowed 1..2")],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_inspect_scores_on_the_datasets_own_image_shape(capsys):
    main(["inspect", "resnet20", "--remove", "2", "--criterion", "snip", "--dataset", "digits", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == [1, 8, 8] and len(info["removed"]) == 2 and info["ticket_macs"] < info["macs"]


def test_inspect_says_a_trained_criterion_is_meant_for_trained_nets(capsys):
    main(["inspect", "resnet20", "--remove", "1", "--criterion", "hrank", "--dataset", "digits", "--json"])
    captured = capsys.readouterr()
    assert "hrank is meant for trained nets" in captured.err and "meant for trained nets" in json.loads(captured.out)["note"]
    main(["inspect", "resnet20", "--remove", "1", "--criterion", "snip", "--dataset", "digits"])
    assert "meant for trained nets" not in capsys.readouterr().err
