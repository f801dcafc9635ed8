"""docs/index.md's claims table is generated from benchmarks/results/*.json and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_claims_table_in_docs_index_matches_the_results_files():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "claims_table.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "docs" / "index.md").read_text()
    assert "`ds_fit_time_vs_crowdkit`" in text and "`byzantine_1_of_3_accuracy_delta`" in text
