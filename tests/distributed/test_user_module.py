"""A LightningModule written as a user would trains with ``strategy="ddp_signsgd"`` in every import order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("user_module_script.py")

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize(
    "order",
    # each run starts 2 processes that import Lightning (~20 s on 2 busy cores): one order in the default suite
    [
        "trinity_first",
        pytest.param("callbacks_first", marks=pytest.mark.slow),
        pytest.param("lightning_first", marks=pytest.mark.slow),
    ],
)
def test_users_own_module_trains_with_ddp_signsgd(order, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), order, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["strategy"] for r in ranks] == ["SignSGDStrategy"] * 2
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])  # the vote keeps replicas bitwise identical
    assert not torch.equal(ranks[0]["params"], ranks[0]["before"])
    assert ranks[0]["steps"] == 3 * 12  # 384 examples / 2 ranks / 16 per batch, 3 epochs
    metrics = ranks[0]["metrics"]
    assert {"train/loss", "train/accuracy", "valid/loss", "valid/accuracy"} <= set(metrics)
    assert metrics["valid/accuracy"] > 0.6  # it learned (3 classes)
    # our Classifier logs val_loss / val_acc with sync_dist: both ranks report the same values
    first, second = (r["classifier"] for r in ranks)
    assert first["val_loss"] == pytest.approx(second["val_loss"], abs=1e-6)
    assert first["val_acc"] == pytest.approx(second["val_acc"], abs=1e-6)
