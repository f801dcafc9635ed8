"""MACE, Wawa, ZeroBasedSkill, gold majority vote: behaviour, bad input, the CLI for every registered method."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from trinity_lightning.crowd import GLAD, MACE, DawidSkene, GoldMajorityVote, MajorityVote
from trinity_lightning.crowd.cli import METHODS, main
from trinity_lightning.crowd.simulate import hammer_spammer_confusions, simulate_annotations


def _simulated(seed: int = 0):
    truth = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(seed))
    table = simulate_annotations(truth, hammer_spammer_confusions(12, 3, hammer_fraction=0.6, seed=seed), 5, seed=seed)
    return table, truth


def test_mace_finds_the_spammers_and_beats_majority_vote():
    table, truth = _simulated()
    mace = MACE().fit(table)
    mv = MajorityVote(tie_break="smallest").fit(table)
    assert (mace.labels_ == truth).float().mean() >= (mv.labels_ == truth).float().mean()
    assert torch.allclose(mace.probas_.sum(1), torch.ones(table.num_items, dtype=mace.probas_.dtype))
    assert mace.spamming_.shape == (12, 2) and mace.thetas_.shape == (12, 3)


def test_mace_matches_crowdkit_labels_on_the_toy_table(toy):
    ck = pytest.importorskip("crowdkit.aggregation")
    ours = MACE().fit(toy)
    theirs = ck.MACE().fit_predict(toy)
    got = pd.Series(ours.table_.decode_labels(ours.labels_), index=ours.table_.item_ids)
    assert (got == theirs.reindex(got.index)).all()


def test_glad_matches_crowdkit_on_the_toy_table(toy):
    ck = pytest.importorskip("crowdkit.aggregation")
    ours = GLAD().fit(toy)
    theirs = ck.GLAD().fit(toy)
    got = pd.Series(ours.table_.decode_labels(ours.labels_), index=ours.table_.item_ids)
    assert (got == theirs.labels_.reindex(got.index)).all()
    alphas = theirs.alphas_.reindex(ours.table_.worker_ids).to_numpy()
    assert abs(ours.alphas_.numpy() - alphas).max() < 1e-3


def test_glad_abilities_order_the_workers():
    table, truth = _simulated(1)
    glad = GLAD().fit(table)
    assert (glad.labels_ == truth).float().mean() > 0.8 and glad.alphas_.shape == (12,)
    with pytest.raises(ValueError, match="m_step_max_iter: expected a positive integer, got 0"):
        GLAD(m_step_max_iter=0)


def test_mace_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="method: expected 'vb' or 'em', got 'gibbs'"):
        MACE(method="gibbs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha, beta"):
        MACE(alpha=0)


def test_gold_labels_bad_input_names_the_argument_and_value(toy):
    with pytest.raises(ValueError, match="true_labels: label 'zebra' is not one of the table's classes"):
        DawidSkene().fit(toy, {"t1": "zebra"})
    ds = DawidSkene().fit(toy, {"t1": "b", "no-such-item": "a"})
    assert ds.gold_unused_ == 1 and ds.table_.decode_labels(ds.labels_)[0] == "b"
    with pytest.raises(ValueError, match="initial_error: set initial_error_strategy"):
        DawidSkene().fit(toy, initial_error=torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match=r"initial_error: expected shape \(4, 3, 3\)"):
        DawidSkene(initial_error_strategy="assign").fit(toy, initial_error=torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="true_labels: GoldMajorityVote needs gold labels"):
        GoldMajorityVote().fit(toy)
    with pytest.raises(ValueError, match="initial_error_strategy: expected one of"):
        DawidSkene(initial_error_strategy="replace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        DawidSkene(threads=0)


def test_sparse_rows_equal_the_dense_reference(toy):
    """errors_ rebuilt from the observed rows: columns sum to 1 over the observed labels, unused cells at eps."""
    ds = DawidSkene(dtype=torch.float64).fit(toy)
    errors = ds.errors_
    assert errors.shape == (4, 3, 3)
    assert torch.allclose(errors.sum(dim=1), torch.ones(4, 3, dtype=torch.float64), atol=1e-8)
    assert ds.error_rows_.shape[0] == int(ds._incidence.observed.sum())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_cli_aggregates_with_every_method(tmp_path, toy, method):
    answers, gold, out = tmp_path / "a.csv", tmp_path / "g.csv", tmp_path / "o.csv"
    (toy.replace({"label": {"c": "a"}}) if method == "kos" else toy).to_csv(answers, index=False)  # KOS: binary
    pd.DataFrame({"task": ["t1", "t2", "t3"], "label": ["a", "b", "c"]}).to_csv(gold, index=False)
    extra = ["--gold", str(gold)] if method in ("gold_mv", "gold_majority_vote") else []
    assert main(["aggregate", str(answers), "--method", method, "--out", str(out), "--threads", "1", *extra]) == 0
    assert len(pd.read_csv(out)) == 8


def test_cli_threads_and_gold_errors(tmp_path, toy, capsys):
    answers = tmp_path / "a.csv"
    toy.to_csv(answers, index=False)
    assert main(["aggregate", str(answers), "--out", str(tmp_path / "o.csv"), "--threads", "0"]) == 2
    assert "--threads: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(["aggregate", str(answers), "--method", "gold_mv", "--out", str(tmp_path / "o.csv")]) == 2
    assert "--gold: --method gold_mv needs gold labels" in capsys.readouterr().err


def test_quality_tables_rank_the_bad_items_and_annotators_first(toy):
    from trinity_lightning.crowd.quality import annotator_quality, consensus_quality

    table, truth = _simulated(2)
    ds = DawidSkene().fit(table)
    items = consensus_quality(ds)
    assert list(items.columns) == ["item", "consensus", "quality", "agreement", "annotations"]
    assert items["quality"].is_monotonic_increasing and len(items) == table.num_items
    workers = annotator_quality(ds)
    accuracy = (table.labels == truth[table.items]).double()
    true_acc = torch.zeros(12, dtype=torch.float64).index_add_(0, table.workers, accuracy) / torch.bincount(
        table.workers, minlength=12
    )
    worst = workers["worker"].iloc[0]
    assert float(true_acc[worst]) <= float(true_acc.median())  # the least reliable listed first is a bad one
    model = torch.nn.functional.one_hot(truth, 3).double()  # a perfect model pulls every consensus to the truth
    blended = consensus_quality(ds, model, model_weight=0.9)
    assert (blended.sort_values("item")["consensus"].to_numpy() == truth.numpy()).all()
    with pytest.raises(ValueError, match=r"model_probas: expected shape \(300, 3\)"):
        consensus_quality(ds, torch.ones(2, 3))


def test_threads_are_restored_and_auto_uses_at_least_one(toy, monkeypatch):
    import os

    from trinity_lightning.crowd.dawid_skene import auto_threads

    before = torch.get_num_threads()
    DawidSkene(threads=1).fit(toy)
    assert torch.get_num_threads() == before
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))  # a saturated machine: one thread
    assert auto_threads() == 1
