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
