from __future__ import annotations

import pandas as pd
import pytest

from trinity_lightning.cli import main as trinity
from trinity_lightning.crowd.cli import main


def test_aggregate_writes_labels_and_lists_the_least_reliable_annotators(tmp_path, toy, capsys):
    answers, out = tmp_path / "answers.csv", tmp_path / "labels.csv"
    toy.to_csv(answers, index=False)
    assert trinity(["crowd", "aggregate", str(answers), "--method", "dawid_skene", "--out", str(out)]) == 0
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["item", "label", "confidence", "p_a", "p_b", "p_c"]
    assert labels["label"].tolist()[:7] == ["a", "b", "c", "a", "c", "a", "b"]
    printed = " ".join(capsys.readouterr().out.split())
    assert "Least reliable annotators" in printed and "EM iterations" in printed
    assert printed.index("w3") < printed.index("w2")  # w3 disagrees most, w2 is reliable
    assert "true -> said" in printed
    compat = tmp_path / "compat.csv"
    assert main(["aggregate", str(answers), "--crowdkit-compat", "--out", str(compat), "--show", "0"]) == 0
    assert "19 EM iterations" in " ".join(capsys.readouterr().out.split())  # crowd-kit 1.4.2's count on this table
    assert pd.read_csv(compat)["p_b"].iloc[-1] == pytest.approx(0.81284432, abs=1e-7)


def test_aggregate_glad_crowdkit_compat_replays_crowdkit(tmp_path, toy):
    """``--method glad --crowdkit-compat``: crowd-kit's GLAD on the file's rows in the file's order."""
    from trinity_lightning.crowd import GLAD

    answers, out = tmp_path / "answers.csv", tmp_path / "glad.csv"
    shuffled = toy.sample(frac=1.0, random_state=1).reset_index(drop=True)  # not in (item, worker) order
    shuffled.to_csv(answers, index=False)
    args = ["aggregate", str(answers), "--method", "glad", "--crowdkit-compat", "--out", str(out), "--show", "0"]
    assert main(args) == 0
    expected = GLAD(crowdkit_compat=True).fit(shuffled)
    written = pd.read_csv(out).set_index("item")[["p_a", "p_b", "p_c"]].to_numpy()
    assert abs(written - expected.probas_.numpy()).max() < 1e-12


def test_aggregate_majority_vote_names_its_tie_rule(tmp_path, toy, capsys):
    answers, out = tmp_path / "answers.tsv", tmp_path / "mv.csv"
    toy.to_csv(answers, sep="\t", index=False)
    assert (
        main(
            [
                "aggregate",
                str(answers),
                "--method",
                "mv",
                "--tie-break",
                "smallest",
                "--out",
                str(out),
                "--no-probabilities",
                "--show",
                "2",
            ]
        )
        == 0
    )
    assert pd.read_csv(out).columns.tolist() == ["item", "label", "confidence"]
    assert "1 ties (smallest)" in " ".join(capsys.readouterr().out.split())


def test_bad_input_exits_2_with_the_line_and_field(tmp_path, toy, capsys):
    answers = tmp_path / "answers.csv"
    toy.assign(label=toy["label"].where(toy.index != 5)).to_csv(answers, index=False)
    assert main(["aggregate", str(answers), "--out", str(tmp_path / "x.csv")]) == 2
    assert "line 7, field 'label': value is missing" in capsys.readouterr().err
    assert main(["aggregate", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(SystemExit):
        main(["aggregate", str(answers), "--out", "x.csv", "--method", "bogus"])


def test_ids_are_strings_leading_zeros_and_1_0_stay_distinct(tmp_path, capsys):
    """Issue 14 item 16: '001' became 1 and '1', '01', '1.0' were merged into one item."""
    answers, out = tmp_path / "answers.csv", tmp_path / "labels.csv"
    answers.write_text("task,worker,label\n001,07,a\n1,7,b\n01,7.0,a\n1.0,007,b\n001,7,a\n")
    assert main(["aggregate", str(answers), "--method", "mv", "--out", str(out), "--show", "0"]) == 0
    labels = pd.read_csv(out, dtype={"item": str})
    assert sorted(labels["item"]) == ["001", "01", "1", "1.0"]
    assert "4 items, 4 annotators" in " ".join(capsys.readouterr().out.split())


def test_classes_lets_ds_and_one_coin_fit_a_table_with_one_observed_class(tmp_path, capsys):
    answers, out = tmp_path / "answers.csv", tmp_path / "labels.csv"
    answers.write_text("task,worker,label\nt1,a,yes\nt1,b,yes\nt2,a,yes\n")
    for method in ("dawid_skene", "one_coin"):
        assert main(["aggregate", str(answers), "--method", method, "--out", str(out)]) == 2
        assert "needs at least 2 classes, but the table has one, 'yes'" in capsys.readouterr().err
        assert main(["aggregate", str(answers), "--method", method, "--classes", "no,yes", "--out", str(out)]) == 0
        labels = pd.read_csv(out)
        assert labels.columns.tolist() == ["item", "label", "confidence", "p_no", "p_yes"]
        assert labels["label"].tolist() == ["yes", "yes"]
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("task,worker,label\nt1,a,1\nt2,a,1\nt3,b,2\n")
    assert main(["aggregate", str(numeric), "--classes", "0,1,2", "--out", str(out), "--show", "0"]) == 0
    assert pd.read_csv(out).columns.tolist()[-3:] == ["p_0", "p_1", "p_2"]
    assert main(["aggregate", str(numeric), "--classes", "0,1", "--out", str(out)]) == 2
    assert "line 4, field 'label': unknown label 2" in capsys.readouterr().err
    assert main(["aggregate", str(numeric), "--classes", "0,,1", "--out", str(out)]) == 2


def test_ragged_row_exits_2_naming_its_own_line(tmp_path, capsys):
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\nt1,a,yes,extra\nt2,b,no\n")
    assert main(["aggregate", str(answers), "--out", str(tmp_path / "x.csv")]) == 2
    assert "answers.csv, line 2, field 'columns': expected 3 fields" in capsys.readouterr().err


def test_n_iter_and_the_deprecated_max_iter(tmp_path, toy, capsys):
    answers, out = tmp_path / "answers.csv", tmp_path / "labels.csv"
    toy.to_csv(answers, index=False)
    assert main(["aggregate", str(answers), "--n-iter", "2", "--tol", "0", "--out", str(out), "--show", "0"]) == 0
    assert "2 EM iterations" in " ".join(capsys.readouterr().out.split())
    assert main(["aggregate", str(answers), "--max-iter", "3", "--tol", "0", "--out", str(out), "--show", "0"]) == 0
    captured = capsys.readouterr()
    assert "--max-iter is deprecated; use --n-iter" in captured.err
    assert "3 EM iterations" in " ".join(captured.out.split())
