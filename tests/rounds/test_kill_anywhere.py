"""Exact resume from a kill at any point (issue 13): a campaign with a dropout model and a file oracle whose
"person" answers from scripted gold labels is stopped during training, pool scoring, while the query file is
written, after an answer line, right after the answers are applied, or in the middle of writing the labels
file; resumed with ``ckpt_path=last`` it ends with the same labelled set, answers, queries, learning curve
and bit-identical weights as an uninterrupted run.

A few points run in the default suite in-process (the stop is an exception that leaves the same files as a
kill); twelve seeded random points run under ``slow`` in subprocesses stopped with ``SIGKILL``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from . import _campaign

ROOT = Path(__file__).resolve().parents[2]


def _same(a: dict, b: dict) -> dict[str, bool]:
    out = {k: a[k] == b[k] for k in a if k != "weights"}
    out["weights"] = a["weights"].keys() == b["weights"].keys() and all(
        torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]
    )
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    out = _campaign.run(root)
    return out, json.loads((root / "ticks.json").read_text())


@pytest.mark.parametrize("kill", [("loaded", 2), ("labels", 3), ("train", 13)])
def test_resume_after_a_kill_is_exact(tmp_path, reference, kill):
    expected, ticks = reference
    assert ticks[kill[0]] >= kill[1]
    with pytest.raises(_campaign.Killed):
        _campaign.run(tmp_path, kill)
    assert _same(_campaign.run(tmp_path), expected) == dict.fromkeys(expected, True)


def _subprocess(root: Path, *kill: str) -> int:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    script = Path(_campaign.__file__)
    return subprocess.run([sys.executable, str(script), str(root), *kill], env=env, capture_output=True).returncode


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 25 subprocess campaigns: about 8 minutes on 2 idle cores
def test_sigkill_at_seeded_random_points_resumes_exactly(tmp_path):
    assert _subprocess(tmp_path / "reference") == 0
    expected = _campaign.outcome(tmp_path / "reference")
    ticks = json.loads((tmp_path / "reference" / "ticks.json").read_text())
    rng = random.Random(13)
    points = [(phase, n) for phase in _campaign.PHASES for n in rng.sample(range(1, ticks[phase] + 1), 2)]
    for phase, n in points:
        root = tmp_path / f"{phase}{n}"
        assert _subprocess(root, phase, str(n)) == -9, (phase, n)  # killed
        assert _subprocess(root) == 0, (phase, n)
        assert _same(_campaign.outcome(root), expected) == dict.fromkeys(expected, True), (phase, n)
