"""benchmarks/neural_lander.py: the results file carries the issue's claim ids, and a smoke run works."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "neural_lander.json"
CLAIMS = {
    "landing_error_vs_nominal": 5.0,
    "sn_landing_error_vs_oracle": 0.67,
    "sn_extrapolation_gain": 2.0,
    "learned_vs_integral_fast_descent": 2.0,
}


def _bench():
    spec = importlib.util.spec_from_file_location("neural_lander_bench", ROOT / "benchmarks" / "neural_lander.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_results_file_has_the_named_claims_with_consistent_ratios():
    data = json.loads(RESULTS.read_text())
    claims = {c["id"]: c for c in data["claims"]}
    for name, target in CLAIMS.items():
        c = claims[name]
        assert c["target"] == target
        assert c["ratio"] == pytest.approx(c["anchor"] / c["ours"])  # all four: lower is better
        assert c["met"] == (c["ratio"] >= target)
    details = data["details"]
    assert details["settings"]["seeds"] == [0, 1, 2] and details["settings"]["landings"] == 20
    assert set(details["landing_error_m"]) == {"nominal", "integral", "analytic", "mlp", "sn", "oracle"}
    assert "load_average" in details and data["machine"]["threads"] >= 1
    for seed in details["per_seed"]:  # the certificate is never below what gradient ascent finds
        for model in ("mlp", "sn"):
            assert seed["lipschitz"][model]["certified"] >= seed["lipschitz"][model]["empirical"]


@pytest.mark.slow
def test_benchmark_smoke_run(capsys):
    bench = _bench()
    assert (
        bench.main(
            [
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--flights",
                "2",
                "--seconds",
                "4",
                "--landings",
                "2",
                "--scarce-flights",
                "1",
                "--scarce-epochs",
                "1",
                "--no-write",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for name in CLAIMS:
        assert name in out
