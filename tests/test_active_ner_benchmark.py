"""``benchmarks/active_ner.py``: the dev-patience budget rule shared by every active-learning round and the
full-data reference, and the recorder that reads test once per point, at the best dev epoch's weights."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import active_ner  # noqa: E402


def test_patience_rule_stops_after_patience_epochs_without_a_strict_improvement() -> None:
    due = active_ner.patience_due
    # best 72.7 at index 2, then 2 epochs without a strict improvement (a tie is no improvement)
    assert due([70.0, 71.0, 72.7, 72.7, 72.0], steps=100, patience=2, max_epochs=30, min_steps=0)
    assert not due([70.0, 71.0, 72.7, 72.7], steps=100, patience=2, max_epochs=30, min_steps=0)
    # the old reference's dev curve: patience 2 would have stopped it at its 8th epoch (67.1), patience 3 goes on
    old_reference = [0.0, 45.7, 53.4, 61.0, 61.7, 67.1, 65.9, 65.2]
    assert due(old_reference, steps=999, patience=2, max_epochs=30, min_steps=0)
    assert not due(old_reference, steps=999, patience=3, max_epochs=30, min_steps=0)
    # at most max_epochs; never before min_steps optimizer steps
    assert due([1.0, 2.0, 3.0], steps=100, patience=3, max_epochs=3, min_steps=0)
    assert not due([5.0, 1.0, 1.0, 1.0, 1.0], steps=29, patience=3, max_epochs=3, min_steps=30)
    assert not due([], steps=100, patience=1, max_epochs=1, min_steps=0)


def test_dev_patience_reads_only_the_epochs_of_the_labelled_set_in_use() -> None:
    rows = [{"words": 10, "dev_f1": f} for f in (40.0, 50.0, 45.0)] + [{"words": 25, "dev_f1": f} for f in (30.0, 20.0)]
    rule = active_ner.DevPatience(SimpleNamespace(rows=rows), patience=2, max_epochs=20, min_steps=0)
    assert not rule.due(epochs=2, steps=50)  # the round at 25 words: best 30.0, one epoch without improvement
    rows.append({"words": 25, "dev_f1": 29.0})
    assert rule.due(epochs=3, steps=60)
    with pytest.raises(ValueError, match="patience"):
        active_ner.DevPatience(SimpleNamespace(rows=[]), patience=0, max_epochs=20, min_steps=0)


def test_the_full_reference_stops_by_the_same_rule() -> None:
    rows = [{"words": 100, "dev_f1": f} for f in (60.0, 70.0, 69.0)]
    rule = active_ner.DevPatience(SimpleNamespace(rows=rows), patience=2, max_epochs=20, min_steps=0)
    stop = rule.callback()
    trainer = SimpleNamespace(current_epoch=2, global_step=96, should_stop=False)
    stop.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop
    rows.append({"words": 100, "dev_f1": 68.0})
    trainer.current_epoch = 3
    stop.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


class _Weight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_recorder_scores_test_once_per_point_with_the_best_dev_weights_and_restores_the_current_ones() -> None:
    dm = SimpleNamespace(labelled_cost=10)
    record = active_ner._dev_test_recorder(dm)
    seen: list[float] = []

    def fake_test(module: nn.Module) -> float:  # "test F1" = the weight it is read at
        seen.append(float(module.w))
        return float(module.w)

    record._test_f1 = fake_test
    module = _Weight()
    trainer = SimpleNamespace(current_epoch=0, callback_metrics={})
    for epoch, (w, dev) in enumerate([(1.0, 0.50), (2.0, 0.60), (3.0, 0.55)]):  # point 1: best dev at w = 2
        module.w.data.fill_(w)
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_f1": torch.tensor(dev)}
        record.on_validation_end(trainer, module)
    assert seen == []  # nothing read on test while the point trains
    dm.labelled_cost = 25  # the round queried: the next validation belongs to point 2
    module.w.data.fill_(4.0)
    trainer.current_epoch, trainer.callback_metrics = 3, {"val_f1": torch.tensor(0.40)}
    record.on_validation_end(trainer, module)
    assert seen == [2.0] and float(module.w) == 4.0  # point 1's best weights read once, training weights restored
    record.on_fit_end(trainer, module)
    assert seen == [2.0, 4.0]
    chosen = active_ner._selected(record.rows)
    assert [(r["words"], r["epoch"], r["test_f1"]) for r in chosen] == [(10, 1, 2.0), (25, 3, 4.0)]
    assert [r["test_f1"] for r in record.rows] == [None, 2.0, None, 4.0]


def test_job_order_and_the_recorded_command_leave_out_machine_local_paths(monkeypatch) -> None:
    args = SimpleNamespace(full_seeds=3, seeds=2, strategies=["mnlp", "random"])
    assert active_ner._job_names(args) == ["full_0", "mnlp_0", "random_0", "full_1", "full_2", "mnlp_1", "random_1"]
    argv = ["active_ner.py", "--step", "0.15", "--work", "/tmp/x", "--only", "full_2", "mnlp_1", "--workers", "4"]
    monkeypatch.setattr(sys, "argv", [*argv, "--summarize-only", "--plot", "/tmp/p.png"])
    assert active_ner._command() == "python benchmarks/active_ner.py --step 0.15 --workers 4"


def test_dev_and_test_limits_are_separate_and_test_defaults_to_the_whole_split() -> None:
    limits = active_ner._limits
    run = SimpleNamespace(scale=1.0, train_limit=2000, eval_limit=500, test_limit=None)
    assert limits(run) == (2000, 500, None)  # dev 500 sentences chooses epochs, test is all 3,453
    previous = SimpleNamespace(scale=1.0, train_limit=1000, eval_limit=500, test_limit=500)
    assert limits(previous) == (1000, 500, 500)  # the stop-18 protocol
    assert limits(SimpleNamespace(scale=0.1, train_limit=None, eval_limit=None, test_limit=None)) == (1404, 345, 345)
    assert limits(SimpleNamespace(scale=1.0, train_limit=None, eval_limit=None, test_limit=None)) == (None,) * 3


def test_summary_interpolates_each_seeds_crossing_of_99pct_of_the_mean_reference(tmp_path) -> None:
    import json

    full = [
        {"strategy": "full", "seed": s, "test_f1": f1, "best_dev_epoch": 9, "epoch_dev_f1": [], "seconds": 1.0}
        for s, f1 in ((0, 69.0), (1, 71.0))
    ]  # mean 70.0: the 99% bar is 69.3

    def campaign(strategy: str, seed: int, f1: list[float]) -> dict:
        return {
            "strategy": strategy,
            "seed": seed,
            "seconds": 1.0,
            "cpu_seconds": 1.0,
            "total_words": 1000,
            "fraction": [0.01, 0.31, 0.61],
            "f1": f1,
            "dev_f1": f1,
            "chosen_epoch": [0, 1, 2],
            "labelled": [1, 30, 60],
            "tokens": [10, 310, 610],
            "query_seconds": [0.0, 0.1, 0.1],
        }

    results = [
        *full,
        campaign("mnlp", 0, [10.0, 59.3, 79.3]),  # crosses 69.3 half way: 0.46
        campaign("mnlp", 1, [10.0, 69.3, 70.0]),  # at 0.31
        campaign("random", 0, [10.0, 50.0, 60.0]),  # never: the cap
    ]
    args = SimpleNamespace(
        start=0.01,
        step=0.3,
        stop=0.61,
        train_limit=1000,
        eval_limit=500,
        test_limit=None,
        scale=1.0,
        strategies=["mnlp", "random"],
        seeds=2,
        full_seeds=2,
        results_dir=str(tmp_path),
        plot=str(tmp_path / "p.png"),
        work=str(tmp_path / "work"),
        patience=3,
        max_epochs=20,
        min_steps=30,
        epochs=3,
        full_epochs=15,
        mc_samples=10,
        bald_pool=0.25,
        batch_size=32,
        lr=1e-3,
        device="cpu",
        threads=1,
    )
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "choice.json").write_text('{"pool": 2000}')
    active_ner.summarize(args, results)
    out = json.loads((tmp_path / "active_ner.json").read_text())
    assert out["details"]["run_choice"] == {"pool": 2000} and out["details"]["reported"] == {}
    claims = {c["id"]: c for c in out["claims"]}
    spread = out["details"]["curves"]["mnlp"]["fraction_to_99pct_full_per_seed"]
    assert spread["per_seed"] == pytest.approx([0.46, 0.31]) and spread["mean"] == pytest.approx(0.385)
    assert claims["mnlp_words_to_full_f1"]["ours"] == pytest.approx(0.385)
    assert claims["mnlp_words_to_full_f1"]["reached"] is True
    # a stop before MNLP's crossing caps it: the ratio is then an upper bound and never "met"
    capped = dict(vars(args), stop=0.31, step=0.3, results_dir=str(tmp_path / "capped"))
    (tmp_path / "capped").mkdir()
    active_ner.summarize(
        SimpleNamespace(**capped),
        [r for r in results if r["strategy"] == "full"]
        + [
            {
                **r,
                "fraction": r["fraction"][:2],
                "f1": r["f1"][:2],
                "dev_f1": r["dev_f1"][:2],
                "labelled": r["labelled"][:2],
                "tokens": r["tokens"][:2],
            }
            for r in results
            if r["strategy"] == "mnlp"
        ],
    )
    capped_claims = {c["id"]: c for c in json.loads((tmp_path / "capped" / "active_ner.json").read_text())["claims"]}
    assert (
        capped_claims["mnlp_words_to_full_f1"]["reached"] is False
        and capped_claims["mnlp_words_to_full_f1"]["ratio"] > 0.5
    )
    assert capped_claims["mnlp_words_to_full_f1"]["met"] is False
    vs_random = claims["mnlp_vs_random_words_to_99pct_full_f1"]
    assert vs_random["anchor"] == 0.61 and vs_random["random_reached"] is False  # a lower bound on the ratio
    assert out["details"]["jobs_not_finished"] == ["random_1"] and "/tmp" not in out["command"]
    assert out["details"]["dev_sentences"] == 500 and out["details"]["test_sentences"] == "all (3,453)"

    # --extension: random's campaign run on to 91% (same rounds before the stop) places the crossing the stop cut off
    ext = tmp_path / "ext"
    ext.mkdir()
    further = campaign("random", 0, [10.0, 50.0, 61.0, 79.3])
    further["fraction"] = [0.01, 0.31, 0.61, 0.91]
    (ext / "random_0.json").write_text(json.dumps(further))
    (ext / "full_0.json").write_text(json.dumps(full[0]))  # a reference there is not read
    args.extension = str(ext)
    active_ner.summarize(args, results)
    out = json.loads((tmp_path / "active_ner.json").read_text())
    vs_random = {c["id"]: c for c in out["claims"]}["mnlp_vs_random_words_to_99pct_full_f1"]
    assert vs_random["random_reached"] is True and vs_random["anchor"] == pytest.approx(
        0.61 + 0.3 * 8.3 / 18.3, abs=1e-4
    )
    assert "--extension" in vs_random["what"]
    assert vs_random["ratio"] == pytest.approx(vs_random["anchor"] / 0.385, rel=1e-3)
    assert out["details"]["extension"]["strategies"]["random"]["seeds"] == [0]
    assert "mnlp" not in out["details"]["extension"]["strategies"]  # no MNLP campaign there
    # an extension that is not the same protocol (another F1 on a shared round) stops the summary
    further["f1"][1] = 51.0
    (ext / "random_0.json").write_text(json.dumps(further))
    with pytest.raises(SystemExit, match="random seed 0 differs"):
        active_ner.summarize(args, results)


def test_the_previous_protocol_is_kept_as_a_reported_run_and_carried_on() -> None:
    protocol = {"step": 0.15, "stop": 0.61, "patience": 3, "max_epochs": 20, "min_steps": 30}
    previous = {
        "command": "python benchmarks/active_ner.py --train-limit 1000 --eval-limit 500",
        "date": "2026-12-03",
        "claims": [{"id": "mnlp_words_to_full_f1", "ours": 0.61, "reached": False}],
        "details": {"protocol": protocol, "pool_sentences": 1000, "dev_test_sentences": 500, "plot": "x.png"},
    }
    now = {"protocol": protocol, "pool_sentences": 3000, "dev_sentences": 500, "test_sentences": "all (3,453)"}
    reported = active_ner.reported_runs(previous, now)
    assert list(reported) == ["pool1000_test500"]
    entry = reported["pool1000_test500"]
    assert entry["claims_as_reported_rows"][0]["ours"] == 0.61 and entry["pool_sentences"] == 1000
    assert "plot" not in entry and entry["command"].endswith("--eval-limit 500")
    # the next summary of the same protocol carries the earlier run on and adds nothing
    this_run = {"command": "c", "claims": [], "details": {**now, "reported": reported}}
    assert active_ner.reported_runs(this_run, now) == reported
    assert active_ner.reported_runs(None, now) == {}
    # a run with other rounds (2% steps to 21%) is reported under its own key; summarizing the claims' run again
    # afterwards reports the 2% run and drops the claims' run's own stale copy
    fine = {**now, "protocol": {**protocol, "step": 0.02, "stop": 0.21}, "reported": reported}
    after_fine = active_ner.reported_runs(this_run, fine)
    assert sorted(after_fine) == ["pool1000_test500", "pool3000_testall"]
    fine_file = {"command": "f", "claims": [], "details": {**fine, "reported": after_fine}}
    again = active_ner.reported_runs(fine_file, now)
    assert sorted(again) == ["pool1000_test500", "pool3000_testall_step2pct_stop21pct"]


def test_job_results_skip_the_choice_note_in_the_work_folder(tmp_path) -> None:
    import json

    for name in ("full_0", "mnlp_2", "random_10"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"strategy": name.rsplit("_", 1)[0]}))
    (tmp_path / "choice.json").write_text("{}")
    (tmp_path / "least_confidence_x.json").write_text("{}")
    assert [r["strategy"] for r in active_ner.job_results(tmp_path)] == ["full", "mnlp", "random"]
