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
