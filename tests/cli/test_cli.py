from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
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


def test_signsgd_strategy_names_are_registered_by_the_cli():
    """A recipe may say ``strategy: ddp_signsgd`` with any optimizer (import orders: test_strategy_registration)."""
    probe = (
        "import sys\n"
        "from trinity_lightning.cli import _build_cli_class\n"
        "_build_cli_class()\n"
        "from lightning.pytorch.strategies import StrategyRegistry\n"
        "assert 'ddp_signsgd' in StrategyRegistry, 'cli'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)


# --- issue 14, items 10-13: short names, one callback argument, predictions written, clean output --------------

_FAST = [
    "--model.image_size=8",
    "--model.channels=[4]",
    "--data.batch_size=64",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--seed_everything=0",
]


def _quiet_run(args, caplog, recwarn):
    """Run the Lightning part in-process; return the CLI and every warning/log message it produced."""
    from trinity_lightning.cli import run_lightning

    caplog.clear()
    with caplog.at_level(logging.INFO):
        cli = run_lightning(args)
    messages = [str(w.message) for w in recwarn] + [r.getMessage() for r in caplog.records]
    return cli, messages


def test_short_names_one_callback_argument_and_no_warnings_of_our_own(tmp_path, caplog, recwarn, capsys):
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from trinity_lightning import Classifier, DigitsDataModule

    cli, messages = _quiet_run(
        [
            "fit",
            "--model=Classifier",
            "--data=DigitsDataModule",
            *_FAST,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=ModelCheckpoint",
            "--trainer.callbacks+=EarlyStopping",
            # EarlyStopping's required `monitor` comes only from the override; the first callback by index
            "--trainer.callbacks.EarlyStopping.monitor",
            "val_loss",
            "--trainer.callbacks.EarlyStopping.patience=7",
            "--trainer.callbacks.0.save_last",
            "true",
        ],
        caplog,
        recwarn,
    )
    assert isinstance(cli.model, Classifier) and isinstance(cli.datamodule, DigitsDataModule)
    (stop,) = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    (checkpoint,) = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert (stop.monitor, stop.patience, checkpoint.save_last) == ("val_loss", 7, True)
    assert not [m for m in messages if "args parameter" in m or "already configured with model summary" in m]
    out = capsys.readouterr().out
    assert "epochs / steps" in out and "1 / 2" in out


def test_fit_help_lists_our_classes_and_short_names_resolve_in_a_fresh_process():
    """Nothing of ours imported beforehand (a fresh process): the CLI imports the registrable classes itself."""
    commands = {
        "help": ["fit", "--help"],
        "short": [
            "fit",
            "--model=Classifier",
            "--data=DigitsDataModule",
            "--trainer.callbacks+=Tensorize",
            "--trainer.callbacks.Tensorize.epoch=3",
            "--print_config",
        ],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "trinity_lightning", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    out = {name: process.communicate(timeout=300) for name, process in running.items()}
    assert all(process.returncode == 0 for process in running.values()), {k: v[1][-2000:] for k, v in out.items()}
    listing = " ".join(out["help"][0].split())
    for name in ("Classifier", "NRM", "DigitsDataModule", "SemiSupervisedDataModule", "Tensorize", "CrowdEM", "Signum"):
        assert f"trinity_lightning.{name}" in listing, name
    config = yaml.safe_load(out["short"][0])
    # jsonargparse writes the shortest import path (our top-level lazy names)
    assert config["model"]["class_path"] == "trinity_lightning.Classifier"
    assert config["data"]["class_path"] == "trinity_lightning.DigitsDataModule"
    assert config["trainer"]["callbacks"][0]["class_path"] == "trinity_lightning.Tensorize"
    assert config["trainer"]["callbacks"][0]["init_args"]["epoch"] == 3  # --print_config shows the override


def test_callback_override_errors_list_the_callbacks():
    from trinity_lightning.cli import apply_callback_overrides, split_callback_overrides

    rest, overrides = split_callback_overrides(
        ["fit", "--trainer.callbacks.folder=x", "--trainer.callbacks.Tensorize.epoch=4", "--trainer.callbacks.1.a", "b"]
    )
    assert rest == ["fit", "--trainer.callbacks.folder=x"]  # jsonargparse's own form is left to it
    assert overrides == [("Tensorize", "epoch", "4"), ("1", "a", "b")]
    callbacks = [{"class_path": "m.Tensorize"}, {"class_path": "m.Checkpoint"}, {"class_path": "n.Checkpoint"}]
    with pytest.raises(ValueError, match=r"no callback is named 'Nope'.*0: Tensorize, 1: Checkpoint, 2: Checkpoint"):
        apply_callback_overrides(callbacks, [("Nope", "x", "1")])
    with pytest.raises(ValueError, match=r"several callbacks are named 'Checkpoint'.*callbacks.<index>.x"):
        apply_callback_overrides(callbacks, [("Checkpoint", "x", "1")])
    with pytest.raises(ValueError, match="no callback 5"):
        apply_callback_overrides(callbacks, [("5", "x", "1")])
    apply_callback_overrides(callbacks, [("2", "every", "[1, 2]"), ("Tensorize", "rank", "0.5")])
    assert callbacks[2]["init_args"] == {"every": [1, 2]} and callbacks[0]["init_args"] == {"rank": 0.5}


def test_predict_writes_predictions_and_test_shows_the_given_checkpoint(tmp_path, caplog, recwarn, capsys):
    common = ["--model=Classifier", "--data=DigitsDataModule", *_FAST, f"--trainer.default_root_dir={tmp_path}"]
    _quiet_run(["fit", *common], caplog, recwarn)
    (ckpt,) = list(tmp_path.rglob("*.ckpt"))
    capsys.readouterr()
    _quiet_run(["test", *common, f"--ckpt_path={ckpt}"], caplog, recwarn)
    out = capsys.readouterr().out.replace("\n", "").replace("│", "").replace(" ", "")
    assert "checkpoint" + str(ckpt.resolve()).replace(" ", "") in out and "bestcheckpoint" not in out
    cli, _ = _quiet_run(["predict", *common, f"--ckpt_path={ckpt}"], caplog, recwarn)
    out = capsys.readouterr().out.replace("\n", "").replace("│", "").replace(" ", "")
    folder = Path(cli.trainer.log_dir)
    predictions = torch.load(folder / "predictions.pt")
    n_test = len(cli.datamodule.test_set)
    assert predictions.shape == (n_test, 10)
    torch.testing.assert_close(predictions.sum(dim=1), torch.ones(n_test))
    rows = (folder / "predictions.csv").read_text().splitlines()
    assert rows[0] == "row," + ",".join(f"output_{k}" for k in range(10)) and len(rows) == n_test + 1
    assert float(rows[1].split(",")[1]) == pytest.approx(float(predictions[0, 0]))
    assert "predictions.pt" in out and "predictions.csv" in out


def test_summary_shows_integers_without_decimals():
    from trinity_lightning.reporting import _format

    assert (_format(100.0), _format(torch.tensor(360.0)), _format(0.93125), _format("x")) == (
        "100",
        "360",
        "0.9313",
        "x",
    )
