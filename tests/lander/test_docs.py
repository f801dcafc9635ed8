"""docs/lander.md quotes benchmarks/results/neural_lander.json: the figures must match the file."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lander_page_quotes_the_results_file():
    text = (ROOT / "docs" / "lander.md").read_text()
    data = json.loads((ROOT / "benchmarks" / "results" / "neural_lander.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    assert f"**{claims['landing_error_vs_nominal']['ratio']:.1f}x**" in text
    assert f"**{claims['sn_landing_error_vs_oracle']['ratio']:.2f}**" in text
    assert f"**{claims['sn_extrapolation_gain']['ratio']:.2f}x**" in text
    assert f"**{claims['learned_vs_integral_fast_descent']['ratio']:.1f}x**" in text
    details = data["details"]
    for name, value in details["landing_error_m"].items():
        assert f"{value:.4f} m" in text, name
    assert f"**{details['mean_fixed_point_iterations_sn']['normal']:.1f}**" in text
    assert f"**{details['lipschitz_certified_over_empirical_sn']:.1f}**" in text
    assert "img/neural_lander.png" in text and (ROOT / "docs" / "img" / "neural_lander.png").exists()
