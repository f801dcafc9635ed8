from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trinity_lightning.cli import run_lightning
from trinity_lightning.lander import FlyLandings, ResidualDynamicsModule

ROOT = Path(__file__).resolve().parents[2]


def test_neural_lander_recipe_collects_trains_flies_and_plots(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "neural_lander.yaml").read_text())
    assert recipe["trainer"]["callbacks"][0]["init_args"]["landings"] == 20
    assert recipe["trainer"]["callbacks"][0]["init_args"]["plot"] == "docs/img/neural_lander.png"
    recipe["trainer"].update(
        max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False, enable_model_summary=False
    )
    recipe["trainer"]["callbacks"][0]["init_args"].update(landings=3, speed=1.0, plot=str(tmp_path / "landing.png"))
    recipe["data"]["init_args"].update(flights=4, seconds=4.0)
    recipe["model"]["init_args"]["hidden"] = [16, 16]
    recipe["summary"] = False
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    with pytest.warns(RuntimeWarning, match="outside the residual model's training range"):
        cli = run_lightning(["fit", "--config", str(config)])  # 16 s of data cannot cover every landing state
    assert isinstance(cli.model, ResidualDynamicsModule)
    fly = next(c for c in cli.trainer.callbacks if isinstance(c, FlyLandings))
    assert set(fly.errors) == {"nominal", "integral", "learned", "oracle"}
    assert fly.errors["oracle"] < 0.2 * fly.errors["nominal"]
    assert 0 < fly.iterations["oracle"] <= 5
    assert (tmp_path / "landing.png").stat().st_size > 10_000
    assert "lipschitz/certified" in cli.trainer.callback_metrics


def test_fly_landings_bad_arguments():
    with pytest.raises(ValueError, match="landings: expected >= 1"):
        FlyLandings(landings=0)
    with pytest.raises(ValueError, match="speed: expected a descent speed > 0"):
        FlyLandings(speed=0)
