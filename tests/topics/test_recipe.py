"""recipes/topics_nyt.yaml runs through the trinity CLI and ends with the top-words table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trinity_lightning.cli import run_lightning
from trinity_lightning.data import has_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not has_dataset("nyt_bow"), reason="the shared nyt_bow data set is not available")
def test_topics_nyt_recipe_smoke(tmp_path, capsys):
    recipe = yaml.safe_load((ROOT / "recipes" / "topics_nyt.yaml").read_text())
    recipe["trainer"].update(
        max_epochs=2, limit_train_batches=2, enable_progress_bar=False, default_root_dir=str(tmp_path)
    )
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cli = run_lightning(["fit", "--config", str(config)])
    assert cli.model.topics_.shape == (20, 3012)
    assert "topics/npmi" in cli.trainer.callback_metrics
    assert "top 10 words" in capsys.readouterr().out
