"""``strategy="ddp_signsgd"`` resolves whatever the import order (issue 14, item 1): one fresh process per order."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_TRAINER = "Trainer(strategy={name!r}, accelerator='cpu', devices=1, logger=False, enable_progress_bar=False)"
_CHECK = "print('STRATEGY', type(trainer.strategy).__name__, type(trainer.strategy).__mro__[2].__module__)"


def _probe(code: str, cwd: Path | None = None, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


ORDERS = {
    "trinity_then_lightning": ("import trinity_lightning", "import lightning.pytorch as pl", "ddp_signsgd"),
    "callbacks_then_lightning": (
        "from trinity_lightning.callbacks import Tensorize",
        "import lightning.pytorch as pl",
        "ddp_signsgd_ef",
    ),
    "tensor_then_lightning": ("import trinity_lightning.tensor", "import lightning as pl", "ddp_signsgd_spawn"),
    "lightning_then_trinity": ("import lightning.pytorch as pl", "import trinity_lightning", "ddp_signsgd"),
}
PL_ORDERS = {
    "trinity_then_pytorch_lightning": ("import trinity_lightning", "import pytorch_lightning as pl", "ddp_signsgd"),
    "pytorch_lightning_then_trinity": (
        "import pytorch_lightning as pl",
        "import trinity_lightning.distributed",
        "ddp_signsgd_ef",
    ),
}


@pytest.mark.parametrize("order", sorted(ORDERS))  # each probe imports Lightning in a fresh process (~6 s)
def test_strategy_name_resolves_in_every_import_order(order):
    first, second, name = ORDERS[order]
    out = _probe(f"{first}\n{second}\ntrainer = pl.{_TRAINER.format(name=name)}\n{_CHECK}")
    assert "STRATEGY SignSGDStrategy lightning.pytorch" in out


@pytest.mark.slow
@pytest.mark.parametrize("order", sorted(PL_ORDERS))
def test_strategy_name_resolves_for_pytorch_lightning(order):
    pytest.importorskip("pytorch_lightning")
    first, second, name = PL_ORDERS[order]
    pickled = "import pickle\nassert type(pickle.loads(pickle.dumps(trainer.strategy))) is type(trainer.strategy)\n"
    out = _probe(f"{first}\n{second}\ntrainer = pl.{_TRAINER.format(name=name)}\n{pickled}{_CHECK}")
    assert "STRATEGY SignSGDStrategy pytorch_lightning" in out


def test_importing_trinity_does_not_import_lightning():
    out = _probe(
        "import sys, trinity_lightning, trinity_lightning.callbacks\n"
        "print('LOADED', [m for m in ('lightning', 'lightning.pytorch', 'pytorch_lightning') if m in sys.modules])"
    )
    assert "LOADED []" in out


@pytest.mark.slow
def test_a_users_own_lightning_cli_yaml_names_the_strategy(tmp_path):
    """A user script that imports our callbacks first, then runs its own ``LightningCLI`` on a YAML recipe."""
    (tmp_path / "recipe.yaml").write_text(
        textwrap.dedent(
            """
            trainer:
              strategy: ddp_signsgd
              accelerator: cpu
              devices: 1
              logger: false
              callbacks:
                - class_path: trinity_lightning.callbacks.Tensorize
                  init_args: {rank: 0.5, epoch: 1}
            model:
              class_path: trinity_lightning.models.Classifier
              init_args: {image_size: 8}
            """
        )
    )
    code = (
        "import trinity_lightning.callbacks\n"
        "from lightning.pytorch.cli import LightningCLI\n"
        "cli = LightningCLI(run=False)\n"
        "trainer = cli.trainer\n"
        f"{_CHECK}"
    )
    out = _probe(code, tmp_path, "--config", "recipe.yaml")
    assert "STRATEGY SignSGDStrategy lightning.pytorch" in out
