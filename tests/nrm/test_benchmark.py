"""``benchmarks/nrm_semisupervised.py``: paired claims on common seeds, the paired t-interval, repeats kept apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import nrm_semisupervised as bench  # noqa: E402


def _run(method: str, seed: int, acc: float, on: str = "gpu") -> dict:
    return {
        "dataset": "mnist",
        "method": method,
        "seed": seed,
        "test_acc": acc,
        "steps": 1500,
        "steps_planned": 1500,
        "fit_seconds": 1.0,
        "num_labelled": 100,
        "trained_on": on,
    }


def test_paired_claims_use_common_seeds_and_repeats_are_reported_not_averaged(tmp_path: Path) -> None:
    runs = [_run("ce", s, a) for s, a in enumerate([0.80, 0.82, 0.84])]
    runs += [_run("maxmin_nrm", s, a) for s, a in enumerate([0.83, 0.84, 0.87])]
    runs += [_run("two_path_ce", s, a, on="cpu") for s, a in enumerate([0.82, 0.83, 0.86, 0.90])]  # seed 3 unpaired
    runs += [_run("ce", 0, 0.805, on="cpu")]  # a CPU repeat of the GPU ce run of seed 0
    path = bench.aggregate(runs, command="test", note="n", results_dir=tmp_path)
    out = json.loads(path.read_text())
    claims = {c["id"]: c for c in out["claims"]}
    vs_ce = claims["maxmin_nrm_vs_ce_semisup"]
    assert vs_ce["per_seed_delta"] == [3.0, 2.0, 3.0] and vs_ce["seeds"] == [0, 1, 2]
    assert vs_ce["delta"] == pytest.approx(8 / 3, abs=1e-3)
    low, high = bench.paired_interval([3.0, 2.0, 3.0])
    assert vs_ce["interval95"] == [round(low, 3), round(high, 3)] and low > 0
    assert vs_ce["met"] is False and vs_ce["seeds_required"] == 5  # delta >= 2, interval above 0, but 3 seeds
    five = [
        _run(m, s, a + (0.03 if m == "maxmin_nrm" else 0))
        for m in ("ce", "maxmin_nrm")
        for s, a in enumerate([0.8, 0.81, 0.79, 0.8, 0.82])
    ]
    five_out = json.loads(bench.aggregate(five, command="t", results_dir=tmp_path / "five").read_text())
    assert five_out["claims"][0]["pairs"] == 5 and five_out["claims"][0]["met"] is True
    vs_two = claims["maxmin_nrm_vs_two_path_ce"]
    assert vs_two["seeds"] == [0, 1, 2] and vs_two["anchor"] == pytest.approx(83.667, abs=1e-3)  # seed 3 left out
    assert vs_two["per_seed_delta"] == [1.0, 1.0, 1.0] and vs_two["met"] is True
    assert vs_two["trained_on"] == {"maxmin_nrm": ["gpu"], "two_path_ce": ["cpu"]}
    assert out["details"]["accuracy_percent"]["mnist"]["ce"]["per_seed"]["0"] == 80.0  # the first run stays
    (repeat,) = out["details"]["repeats"]
    assert repeat["test_acc_percent"] == [80.0, 80.5] and repeat["difference_points"] == 0.5
    assert repeat["trained_on"] == ["gpu", "cpu"]
    # the results file alone rebuilds itself: its runs and repeats read back, the same claims come out
    again = bench.aggregate(bench.read_records(path), command="test", note="n", results_dir=tmp_path / "again")
    assert json.loads(again.read_text())["claims"] == out["claims"]


def test_interval_needs_two_pairs_and_widens_with_spread() -> None:
    assert all(v != v for v in bench.paired_interval([1.0]))  # nan
    narrow, wide = bench.paired_interval([2.0, 2.1, 1.9]), bench.paired_interval([0.0, 2.0, 4.0])
    assert narrow[0] > 1.5 and wide[0] < 0 < wide[1]


def test_records_read_from_a_results_file_say_where_they_trained(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"machine": {"gpu": "H100"}, "details": {"runs": [{"seed": 0}]}}))
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps({"seed": 1, "trained_on": "cpu"}) + "\n")
    assert bench.read_records(results) == [{"trained_on": "gpu", "seed": 0}]
    assert bench.read_records(runs) == [{"seed": 1, "trained_on": "cpu"}]


def _cifar(method: str, seed: int, acc: float, augment: bool) -> dict:
    run = {**_run(method, seed, acc), "dataset": "cifar10", "num_labelled": 4000, "steps": 2500, "steps_planned": 2500}
    return (
        {**run, "augment": True, "augment_settings": bench.AUGMENT}
        if augment
        else {**run, "steps": 1000, "steps_planned": 1000}
    )


def test_augmented_runs_are_reported_apart_and_leave_the_claims_alone(tmp_path: Path) -> None:
    plain = [_run(m, s, a + d) for m, d in (("ce", 0), ("maxmin_nrm", 0.02)) for s, a in enumerate([0.8, 0.82, 0.84])]
    plain += [_cifar(m, s, 0.6 + d, False) for m, d in (("ce", 0.02), ("maxmin_nrm", 0)) for s in range(3)]
    augmented = [
        _cifar(m, s, a + d, True)
        for m, d in (("ce", 0.0), ("two_path_ce", -0.01), ("maxmin_nrm", 0.03))
        for s, a in enumerate([0.70, 0.72, 0.71])
    ]
    without = json.loads(bench.aggregate(plain, command="t", results_dir=tmp_path / "plain").read_text())
    out = json.loads(bench.aggregate(plain + augmented, command="t", results_dir=tmp_path / "both").read_text())
    assert out["claims"] == without["claims"]  # the MNIST claims and the plain CIFAR-10 extra, unchanged
    assert not any("aug" in c["id"] for c in out["claims"])
    summary = out["details"]["accuracy_percent"]
    assert summary["cifar10"]["ce"]["per_seed"] == {"0": 62.0, "1": 62.0, "2": 62.0}  # not the augmented runs
    assert summary["cifar10_aug"]["maxmin_nrm"]["per_seed"] == {"0": 73.0, "1": 75.0, "2": 74.0}
    assert out["details"]["repeats"] == []  # the augmented seed-s run is not a repeat of the plain one
    reported = out["details"]["reported"]["cifar10_aug"]
    assert reported["methods"]["ce"] == {"mean": 71.0, "std": 1.0, "seeds": 3, "steps": [2500]}
    vs_ce = reported["maxmin_nrm_minus_ce"]
    assert vs_ce["delta"] == pytest.approx(3.0) and vs_ce["per_seed_delta"] == [3.0, 3.0, 3.0]
    assert vs_ce["interval95"] == [3.0, 3.0] and vs_ce["pairs"] == 3
    assert reported["two_path_ce_minus_ce"]["delta"] == pytest.approx(-1.0)
    assert reported["maxmin_nrm_minus_two_path_ce"]["delta"] == pytest.approx(4.0)
    settings = out["details"]["protocol"]["settings"]
    assert settings["cifar10"]["steps"] == 1000 and "augment" not in settings["cifar10"]
    assert settings["cifar10_aug"]["steps"] == 2500 and settings["cifar10_aug"]["augment"]["crop_padding"] == 4
    # the augmented runs alone (what one device call writes): no claim, the report only
    alone = json.loads(bench.aggregate(augmented, command="t", results_dir=tmp_path / "alone").read_text())
    assert alone["claims"] == [] and set(alone["details"]["reported"]) == {"cifar10_aug"}
    # a results file rebuilds itself with its augmented runs
    again = bench.aggregate(
        bench.read_records(tmp_path / "both" / "nrm_semisupervised.json"), command="t", results_dir=tmp_path / "again"
    )
    assert json.loads(again.read_text())["details"]["reported"] == out["details"]["reported"]


def test_the_committed_results_file_re_aggregates_unchanged(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "results" / "nrm_semisupervised.json"
    saved = json.loads(results.read_text())
    extra = {k: v for k, v in saved["details"].items() if k not in bench.AGGREGATED}
    note = saved["details"]["protocol"]["note"]
    path = bench.aggregate(
        bench.read_records(results), command="t", note=note, extra_details=extra, results_dir=tmp_path
    )
    again = json.loads(path.read_text())
    assert again["claims"] == saved["claims"] and again["details"] == saved["details"]


def test_the_cifar_aug_preset_and_options_reach_the_jobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jobs: list[dict] = []

    class Pool:  # runs nothing: records the jobs main() submits
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args) -> None:
            pass

        def submit(self, fn, job):
            jobs.append(job)
            return len(jobs)

    monkeypatch.setattr(bench, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(bench, "as_completed", lambda futures: [])
    monkeypatch.setattr("trinity_lightning.data.load_cifar10", lambda split: None)  # no CIFAR decode
    bench.main(["--scale", "cifar_aug", "--runs", str(tmp_path / "r.jsonl")])
    assert {(j["dataset"], j["method"], j["seed"]) for j in jobs} == {
        ("cifar10", m, s) for m in ("ce", "two_path_ce", "maxmin_nrm") for s in (0, 1, 2)
    }
    assert all(j["augment"] is True and j["steps"] == bench.SCALES["cifar_aug"]["steps"]["cifar10"] for j in jobs)
    jobs.clear()
    bench.main(
        [
            "--datasets",
            "cifar10",
            "--methods",
            "ce",
            "--seeds",
            "0",
            "--steps",
            '{"cifar10": 7}',
            "--runs",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert jobs == [{**jobs[0], "augment": False, "steps": 7}]
