"""``trinity crowd quality``: CROWDLAB tables from an annotation file, with or without a model's probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trinity_lightning.cli import main as trinity
from trinity_lightning.crowd.cli import main
from trinity_lightning.crowd.quality import label_quality


def test_quality_writes_both_tables_sorted_and_prints_them(tmp_path, toy, capsys):
    answers, out = tmp_path / "answers.csv", tmp_path / "quality.csv"
    toy.to_csv(answers, index=False)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), 8)
    np.save(tmp_path / "probs.npy", probs)
    argv = ["crowd", "quality", str(answers), "--pred-probs", str(tmp_path / "probs.npy"), "--out", str(out)]
    assert trinity(argv) == 0
    items = pd.read_csv(out, index_col="item")
    expected = label_quality(toy, probs)
    assert list(items.columns) == list(expected.label_quality.columns)
    assert items["consensus_quality_score"].is_monotonic_increasing  # lowest first by default
    pd.testing.assert_frame_equal(
        items.sort_index(), expected.label_quality.sort_index(), check_exact=False, atol=1e-12, check_names=False
    )
    workers = pd.read_csv(tmp_path / "quality.annotators.csv", index_col="worker")
    assert list(workers.index) == list(expected.annotator_stats.index)
    printed = " ".join(capsys.readouterr().out.split())
    assert "Items, lowest first" in printed and "Annotators, lowest first" in printed
    # --sort picks the table that has the column; --descending turns only that one
    by = ["quality", str(answers), "--out", str(out), "--sort", "num_examples_labeled", "--descending", "--show", "0"]
    assert main(by) == 0 and capsys.readouterr().out == ""
    assert pd.read_csv(tmp_path / "quality.annotators.csv")["num_examples_labeled"].is_monotonic_decreasing
    assert pd.read_csv(out)["consensus_quality_score"].is_monotonic_increasing


def test_quality_reads_probabilities_by_item_id_and_works_without_a_model(tmp_path, toy):
    answers = tmp_path / "answers.csv"
    toy.to_csv(answers, index=False)
    probs = pd.DataFrame(np.random.default_rng(1).dirichlet(np.ones(3), 8), index=[f"t{i}" for i in range(8, 0, -1)])
    probs.to_csv(tmp_path / "probs.csv")
    out = tmp_path / "q.csv"
    assert main(["quality", str(answers), "--pred-probs", str(tmp_path / "probs.csv"), "--out", str(out)]) == 0
    expected = label_quality(toy, probs)  # looked up by item id, whatever the row order of the file
    got = pd.read_csv(out, index_col="item").sort_index()
    np.testing.assert_allclose(got["consensus_quality_score"], expected.label_quality["consensus_quality_score"])
    for method in ("frequencies", "mv"):
        assert main(["quality", str(answers), "--aggregator", method, "--out", str(out), "--show", "0"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pred-probs", "missing.npy"], "--pred-probs: cannot read missing.npy"),
        (["--aggregator", "nope"], "--aggregator: 'nope' is not a registered aggregator"),
        (["--annotators-out", "a.csv"], "--annotators-out: give --out too"),
        (["--show", "-1"], "--show: expected a number >= 0"),
    ],
)
def test_quality_bad_input_names_the_option(tmp_path, toy, capsys, extra, message):
    answers = tmp_path / "answers.csv"
    toy.to_csv(answers, index=False)
    assert main(["quality", str(answers), *extra]) == 2
    assert message in capsys.readouterr().err


def test_quality_wrong_probability_shape_names_the_option(tmp_path, toy, capsys):
    answers = tmp_path / "answers.csv"
    toy.to_csv(answers, index=False)
    np.save(tmp_path / "p.npy", np.full((3, 3), 1 / 3))
    assert main(["quality", str(answers), "--pred-probs", str(tmp_path / "p.npy")]) == 2
    assert "--pred-probs: expected shape (8, 3)" in capsys.readouterr().err
