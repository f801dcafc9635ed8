"""The tensor benchmark's claim arithmetic and the docs' line counts (no training: synthetic summary rows)."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tensor_layers_bench", ROOT / "benchmarks" / "tensor_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _row(method, acc, head_params, params=1000, factorization="cp", rank=0.1):
    return {
        "method": method,
        "factorization": factorization,
        "rank": rank,
        "seeds": 3,
        "acc": acc,
        "acc_std": 0.0,
        "params": params,
        "head_params": head_params,
    }


def test_no_configuration_within_tolerance_reads_as_such(bench):
    dense = _row("dense", 0.80, 2000, factorization=None, rank=None)
    rows = [dense, _row("trl", 0.75, 200, rank=0.1), _row("trl", 0.60, 50, rank=0.03)]
    c = bench.iso_claim("x", "what", rows, ("trl",), dense, "head_params", 0.5, target=10.0)
    assert (c["ours"], c["anchor"], c["ratio"], c["met"]) == (2000, 2000, 1.0, False)
    assert c["chosen"] is None and c["within_tolerance"] == []
    assert c["closest"]["config"] == "trl cp rank=0.1" and c["closest"]["ratio"] == 10.0
    assert c["closest"]["drop_points"] == pytest.approx(5.0)
    assert c["tested_ratio_range"] == [10.0, 40.0]
    assert "not a measured ratio" in c["reading"] and "less than 10.0x" in c["reading"]
    assert c["best_at_target"]["config"] == "trl cp rank=0.1"


def test_most_compressed_configuration_within_tolerance_is_chosen(bench):
    dense = _row("dense", 0.80, 2000, params=9000, factorization=None, rank=None)
    rows = [
        dense,
        _row("tensorized", 0.792, 0, params=3000, rank=0.33),  # 0.8 pt below: within 1.0, 3x
        _row("tensorized", 0.795, 0, params=4500, rank=0.5),  # within, 2x
        _row("tensorized", 0.70, 0, params=1000, rank=0.1),  # 10 pt below: out
        _row("trl", 0.80, 10, rank=0.01),  # another method: ignored
    ]
    c = bench.iso_claim("x", "what", rows, ("tensorized",), dense, "params", 1.0, target=3.0)
    assert c["ours"] == 3000 and c["ratio"] == pytest.approx(3.0) and c["met"]
    assert [p["config"] for p in c["within_tolerance"]] == ["tensorized cp rank=0.33", "tensorized cp rank=0.5"]
    assert c["reading"].startswith("tensorized cp rank=0.33: 3.00x") and "target met" in c["reading"]


def test_results_file_claims_are_what_the_stored_summaries_give(bench):
    import json

    stored = json.loads((ROOT / "benchmarks" / "results" / "tensor_layers.json").read_text())
    recomputed = bench.build_claims(stored["details"]["summary"], stored["details"].get("latency"))
    assert [(c["id"], c["ours"], c["anchor"], c.get("met")) for c in recomputed] == [
        (c["id"], c["ours"], c["anchor"], c.get("met")) for c in stored["claims"]
    ]
    ids = {c["id"] for c in stored["claims"]}
    assert {"trl_head_param_ratio_at_iso_accuracy", "tensorized_net_param_ratio_at_iso_accuracy"} <= ids
    assert all("reading" in c for c in stored["claims"] if "iso_accuracy" in c["id"])


def test_docs_show_both_versions_with_the_computed_line_counts(bench):
    docs = (ROOT / "docs" / "tensor.md").read_text()
    by_hand, ours = bench._lines(bench.by_hand_tltorch), bench._lines(bench.with_trinity)
    match = re.search(r"tltorch by hand: (\d+) lines; `tensorize\(\)`: (\d+) lines", docs)
    assert match and (int(match[1]), int(match[2])) == (by_hand, ours)
    assert by_hand > 4 * ours
    for fn in (bench.by_hand_tltorch, bench.with_trinity):
        body = inspect.getsource(fn).split('"""')[-1] if fn.__doc__ else inspect.getsource(fn)
        for line in body.strip().splitlines():
            assert line.strip() in docs, f"docs/tensor.md lacks {line.strip()!r} of {fn.__name__}"
