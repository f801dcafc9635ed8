from __future__ import annotations

import re
from pathlib import Path

import yaml

from trinity_lightning.cli import run_lightning
from trinity_lightning.tensor import Tensorize, TensorizedConv

ROOT = Path(__file__).resolve().parents[2]


def test_tensorize_digits_recipe_smoke(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "tensorize_digits.yaml").read_text())
    recipe["trainer"].update(
        max_epochs=2,
        default_root_dir=str(tmp_path),
        limit_train_batches=4,
        limit_val_batches=2,
        limit_test_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    recipe["trainer"]["callbacks"][0]["init_args"]["epoch"] = 1
    recipe["trainer"]["callbacks"][1]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    recipe["model"]["init_args"]["channels"] = [8, 16]
    recipe["summary"] = False
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cli = run_lightning(["fit", "--config", str(config)])
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, Tensorize))
    assert callback.tensorized_at == 1
    assert [r.name for r in callback.report.layers] == ["model.features.4", "model.head.2"]
    assert isinstance(cli.model.model.features[4], TensorizedConv)
    assert "test_acc" in cli.trainer.callback_metrics


def test_cifar10_recipe_parses():
    recipe = yaml.safe_load((ROOT / "recipes" / "tensorize_cifar10.yaml").read_text())
    args = recipe["trainer"]["callbacks"][0]["init_args"]
    assert recipe["trainer"]["callbacks"][0]["class_path"] == "trinity_lightning.tensor.Tensorize"
    Tensorize(**args)
    assert recipe["data"]["init_args"]["dataset"] == "cifar10"


def test_a_bad_rank_in_a_recipe_fails_before_training_naming_the_argument(tmp_path):
    """``rank: half`` used to be accepted and fail at the tensorization epoch."""
    import pytest

    recipe = yaml.safe_load((ROOT / "recipes" / "tensorize_digits.yaml").read_text())
    recipe["trainer"]["callbacks"][0]["init_args"]["rank"] = "half"
    recipe["trainer"]["default_root_dir"] = str(tmp_path)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    message = "rank: expected a float in (0, 1], 'full', a positive int or a list of positive ints, got 'half'"
    with pytest.raises(ValueError, match=re.escape(message)):  # raised while the CLI builds the callbacks
        run_lightning(["fit", "--config", str(config)])
    assert not list(tmp_path.glob("**/*.ckpt"))
