"""``recipes/active_digits.yaml`` killed with ``kill -9`` during its third round and resumed with
``--ckpt_path last`` ends with the same ``labels.json``, learning curve and final weights as an uninterrupted
run (issue 13). The budget is cut to 140 labelled images (4 rounds) to keep the test short."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _recipe(folder: Path) -> Path:
    recipe = yaml.safe_load((ROOT / "recipes" / "active_digits.yaml").read_text())
    recipe["trainer"]["callbacks"][0]["init_args"]["budget"] = 140
    recipe["test_after_fit"] = False
    path = folder / "recipe.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def _fit(folder: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "trinity_lightning", "fit", "--config", str(_recipe(folder)), *extra]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _outcome(folder: Path) -> dict:
    out = folder / "outputs" / "active_digits"
    rows = list(csv.DictReader((out / "active_learning_curve.csv").open()))
    weights = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    return {
        "labels": json.loads((out / "labels.json").read_text()),
        "curve": [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows],
        "weights": weights,
    }


@pytest.mark.timeout(2400)
def test_active_digits_killed_in_round_three_resumes_identically(tmp_path):
    reference = _fit(tmp_path / "reference")
    assert reference.wait(timeout=900) == 0, reference.stderr.read().decode()[-3000:] if reference.stderr else ""
    expected = _outcome(tmp_path / "reference")
    assert [int(r["labelled"]) for r in expected["curve"]] == [20, 60, 100, 140]

    run = tmp_path / "killed"
    process = _fit(run)
    curve = run / "outputs" / "active_digits" / "active_learning_curve.csv"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:  # round 3 starts once rounds 0-2 are on the curve
        if curve.exists() and len(curve.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # into round 3's training
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -9
    assert len(curve.read_text().splitlines()) == 4  # killed during round 3, before its end
    resumed = _fit(run, "--ckpt_path", "last")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read().decode()[-3000:] if resumed.stderr else ""
    got = _outcome(run)
    assert got["labels"] == expected["labels"] and got["curve"] == expected["curve"]
    assert all(torch.equal(got["weights"][k], expected["weights"][k]) for k in expected["weights"])
