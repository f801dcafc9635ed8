from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from trinity_lightning.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_is_fast_and_lists_tools(capsys):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "trinity_lightning", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - start < 3.0
    assert "fit" in result.stdout and "crowd" in result.stdout
    assert main(["bogus"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_quickstart_recipe_fits_one_epoch_in_a_subprocess(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    recipe["trainer"]["max_epochs"] = 1
    recipe["trainer"]["default_root_dir"] = str(tmp_path / "run")
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    result = subprocess.run(
        [sys.executable, "-m", "trinity_lightning", "fit", "--config", str(config), "--seed_everything", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test_acc" in result.stdout and "best checkpoint" in result.stdout
    checkpoints = list((tmp_path / "run").rglob("*.ckpt"))
    assert checkpoints, "fit wrote no checkpoint"
    saved = yaml.safe_load(next((tmp_path / "run").rglob("config.yaml")).read_text())
    assert saved["seed_everything"] == 3 and saved["trainer"]["max_epochs"] == 1


def test_signsgd_strategy_names_are_registered_by_the_cli_and_after_lightning():
    """A recipe may say ``strategy: ddp_signsgd`` with any optimizer; ``import lightning`` first also works."""
    probe = (
        "import sys\n"
        "from trinity_lightning.cli import _build_cli_class\n"
        "_build_cli_class()\n"
        "from lightning.pytorch.strategies import StrategyRegistry\n"
        "assert 'ddp_signsgd' in StrategyRegistry, 'cli'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    probe = (
        "import lightning.pytorch as pl\n"
        "import trinity_lightning\n"
        "from lightning.pytorch.strategies import StrategyRegistry\n"
        "assert 'ddp_signsgd' in StrategyRegistry\n"
        "pl.Trainer(strategy='ddp_signsgd', accelerator='cpu', devices=1, logger=False)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
