"""The Lightning strategy: registry entries, configuration errors, the recipe over 2 gloo processes, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.strategies import StrategyRegistry
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from trinity_lightning.distributed import SignSGDState, SignSGDStrategy, Signum

ROOT = Path(__file__).resolve().parents[2]


def test_registry_entries_and_trainer_selection():
    assert StrategyRegistry["ddp_signsgd"]["strategy"] is SignSGDStrategy
    assert StrategyRegistry["ddp_signsgd"]["init_params"] == {"start_method": "popen"}
    assert StrategyRegistry["ddp_signsgd_spawn"]["init_params"] == {"start_method": "spawn"}
    assert StrategyRegistry["ddp_signsgd_ef"]["init_params"] == {"start_method": "popen", "error_feedback": True}
    assert "majority vote" in StrategyRegistry["ddp_signsgd"]["description"]
    SignSGDStrategy.register_strategies(StrategyRegistry)  # idempotent
    trainer = pl.Trainer(
        strategy="ddp_signsgd_ef",
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    assert isinstance(trainer.strategy, SignSGDStrategy)
    assert trainer.strategy._signsgd_kwargs["error_feedback"] is True


def test_bad_configuration_is_rejected_with_the_argument_named():
    with pytest.raises(MisconfigurationException, match="ddp_comm_hook"):
        SignSGDStrategy(ddp_comm_hook=lambda state, bucket: None)
    with pytest.raises(ValueError, match="momentum"):
        SignSGDStrategy(momentum=1.5)
    with pytest.raises(ValueError, match="communication"):
        SignSGDStrategy(communication="ring")  # type: ignore[arg-type]


class _Opts:
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizers = [optimizer]


def _strategy_with(optimizer: torch.optim.Optimizer, **kwargs) -> SignSGDStrategy:
    strategy = SignSGDStrategy(**kwargs)
    strategy.signsgd_state = SignSGDState(
        momentum=kwargs.get("momentum") or 0.0, error_feedback=kwargs.get("error_feedback", False)
    )
    strategy.optimizers = [optimizer]
    return strategy


def test_signum_momentum_moves_into_the_hook():
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = Signum(params, lr=1e-3, momentum=0.8)
    strategy = _strategy_with(optimizer)
    strategy._check_optimizers()
    assert strategy.signsgd_state.momentum == 0.8
    assert optimizer.param_groups[0]["momentum"] == 0.0
    with pytest.raises(MisconfigurationException, match="momentum"):
        _strategy_with(Signum(params, lr=1e-3, momentum=0.8), momentum=0.9)._check_optimizers()
    with pytest.raises(MisconfigurationException, match="SGD"):
        _strategy_with(Signum(params, lr=1e-3, momentum=0.0), error_feedback=True)._check_optimizers()
    with pytest.warns(UserWarning, match="not Signum"):
        _strategy_with(torch.optim.AdamW(params))._check_optimizers()


def _run_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    recipe = yaml.safe_load((ROOT / "recipes" / "signsgd_digits.yaml").read_text())
    recipe["trainer"].update(
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=2,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path / "run"),
    )
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "trinity_lightning",
            "fit",
            "--config",
            str(config),
            "--trainer.callbacks+=tests.distributed.helpers.DumpSignSGDState",
            f"--trainer.callbacks.folder={tmp_path / 'dump'}",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )


@pytest.mark.distributed
def test_recipe_trains_with_two_processes_and_checkpoints_every_rank(tmp_path):
    result = _run_cli(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("best checkpoint") == 1  # the run summary, printed by rank 0 only, no deadlock
    end = [torch.load(tmp_path / "dump" / f"end_rank{r}.pt", weights_only=False) for r in range(2)]
    assert end[0]["comm_hook"] == "signsgd_hook"
    assert end[0]["momentum"] == 0.9 and end[0]["state"]["step"] == 6
    last = next((tmp_path / "run").rglob("last.ckpt"))
    checkpoint = torch.load(last, weights_only=True)
    saved = checkpoint["signsgd"]
    assert saved["world_size"] == 2 and len(saved["ranks"]) == 2
    for rank in range(2):
        for name, value in end[rank]["state"]["buffers"]["momentum"].items():
            assert torch.equal(saved["ranks"][rank]["buffers"]["momentum"][name], value)
    first = next(iter(end[0]["state"]["buffers"]["momentum"]))
    assert not torch.equal(end[0]["state"]["buffers"]["momentum"][first], end[1]["state"]["buffers"]["momentum"][first])


@pytest.mark.slow
@pytest.mark.distributed
def test_resume_restores_each_ranks_momentum(tmp_path):
    assert _run_cli(tmp_path).returncode == 0
    last = next((tmp_path / "run").rglob("last.ckpt"))
    saved = torch.load(last, weights_only=True)["signsgd"]
    result = _run_cli(tmp_path, f"--ckpt_path={last}", "--trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        start = torch.load(tmp_path / "dump" / f"start_rank{rank}.pt", weights_only=False)["state"]
        assert start["step"] == saved["ranks"][rank]["step"] == 6
        for name, value in saved["ranks"][rank]["buffers"]["momentum"].items():
            assert torch.equal(start["buffers"]["momentum"][name], value)


def test_rendezvous_and_dead_worker_timeouts_are_separate():
    from datetime import timedelta

    strategy = SignSGDStrategy(timeout=timedelta(minutes=30), vote_timeout=timedelta(seconds=20))
    assert strategy._timeout == timedelta(minutes=30)  # process group: start-up under load may take minutes
    assert strategy._signsgd_kwargs["timeout"] == timedelta(seconds=20)  # each collective of the vote
    assert SignSGDStrategy(timeout=timedelta(minutes=3))._signsgd_kwargs["timeout"] == timedelta(minutes=3)
    with pytest.raises(ValueError, match="timeout"):
        SignSGDStrategy(vote_timeout=timedelta(seconds=0))


def test_resuming_from_a_checkpoint_without_signsgd_state_warns(tmp_path):
    path = tmp_path / "ddp.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, path)  # e.g. written by a plain `ddp` run
    strategy = SignSGDStrategy()
    with pytest.warns(UserWarning, match="no signSGD state.*momentum restarts from zero"):
        strategy.load_checkpoint(path)
