"""``MyModel.load_from_checkpoint`` after ``Tensorize``, in a process that never ran it (issue 14, item 2).

The checkpoint names our instantiator (``hyper_parameters["_instantiator"]``, Lightning's hook for building the
module); ``import trinity_lightning`` trusts it. Without ``trinity_lightning`` imported, Lightning's error names it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trinity_lightning._registration import TENSORIZED_INSTANTIATORS
from trinity_lightning.tensor import Tensorize, TensorizedLinear
from trinity_lightning.tensor.checkpoint import load_tensorized_module, mark_for_plain_reload

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = """
import lightning.pytorch as pl
import torch
from torch import nn


class UserModel(pl.LightningModule):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
"""


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{cwd}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def _fit_and_save(module: pl.LightningModule, factorization: str, features: int, classes: int, path: Path) -> None:
    """One epoch under ``Tensorize`` on random data, then ``trainer.save_checkpoint(path)``."""
    data = DataLoader(TensorDataset(torch.randn(32, features), torch.randint(0, classes, (32,))), batch_size=16)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Tensorize(factorization, rank=0.5, verbose=False, progress=False)],
    )
    trainer.fit(module, data)
    trainer.save_checkpoint(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the user's module (from its own file) trained under ``Tensorize``, and its outputs."""
    root = tmp_path_factory.mktemp("plain_reload")
    (root / "user_model.py").write_text(USER_MODULE)
    spec = importlib.util.spec_from_file_location("user_model_trained_here", root / "user_model.py")
    assert spec is not None and spec.loader is not None
    user_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(user_model)
    pl.seed_everything(0)
    model = user_model.UserModel(hidden=10)
    _fit_and_save(model, "tucker", features=12, classes=3, path=root / "last.ckpt")
    model.eval()
    torch.save(model(torch.linspace(-1, 1, 24).reshape(2, 12)).detach(), root / "expected.pt")
    return root


def test_plain_load_from_checkpoint_in_a_fresh_process_that_imports_trinity_lightning(trained: Path) -> None:
    done = _run(
        """
        import torch
        import trinity_lightning  # anywhere before the load (e.g. for a callback); nothing else of ours
        from user_model import UserModel

        model = UserModel.load_from_checkpoint("last.ckpt")
        model.eval()
        assert model.hparams.hidden == 10, model.hparams
        assert type(model.net[0]).__name__ == "TensorizedLinear", model.net
        out = model(torch.linspace(-1, 1, 24).reshape(2, 12))
        assert torch.allclose(out, torch.load("expected.pt"), atol=1e-6), (out, torch.load("expected.pt"))
        print("OK")
        """,
        trained,
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_plain_load_without_trinity_lightning_names_the_loader(trained: Path) -> None:
    done = _run(
        """
        from user_model import UserModel
        UserModel.load_from_checkpoint("last.ckpt")
        """,
        trained,
    )
    assert done.returncode != 0
    assert "trinity_lightning.tensor.checkpoint.load_tensorized_module" in done.stderr, done.stderr[-2000:]


def make_tiny() -> type[pl.LightningModule]:
    """A new class per call (``Tensorize`` decorates the class it trains; a fresh one stands for another process)."""

    class Tiny(pl.LightningModule):
        def __init__(self, hidden: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny


def _checkpoint(tmp_path: Path, module: pl.LightningModule) -> dict:
    _fit_and_save(module, "cp", features=6, classes=2, path=tmp_path / "last.ckpt")
    return torch.load(tmp_path / "last.ckpt", weights_only=False)


def test_checkpoint_names_the_instantiator_and_the_module_hparams_stay_clean(tmp_path: Path) -> None:
    module = make_tiny()(hidden=5)
    checkpoint = _checkpoint(tmp_path, module)
    assert checkpoint["hyper_parameters"] == {"hidden": 5, "_instantiator": TENSORIZED_INSTANTIATORS[None]}
    assert "_instantiator" not in module.hparams  # only the checkpoint's copy carries it
    reloaded = make_tiny().load_from_checkpoint(tmp_path / "last.ckpt")
    assert isinstance(reloaded.net[0], TensorizedLinear) and reloaded.hparams == {"hidden": 5}


def test_a_lightning_cli_checkpoint_keeps_the_cli_instantiator_chained() -> None:
    checkpoint = {"hyper_parameters": {"hidden": 4, "_instantiator": "lightning.pytorch.cli.instantiate_module"}}
    tiny = make_tiny()
    assert mark_for_plain_reload(checkpoint, tiny())
    name = checkpoint["hyper_parameters"]["_instantiator"]
    assert name == "trinity_lightning.tensor.checkpoint.load_tensorized_module_lightning_cli"
    from trinity_lightning.tensor import checkpoint as module

    model = getattr(module, name.rsplit(".", 1)[1])(tiny, {"hidden": 4})
    assert isinstance(model, tiny) and model.hparams.hidden == 4 and "on_load_checkpoint" in vars(model)


@pytest.mark.parametrize(
    "checkpoint",
    [
        {"hyper_parameters": {"hidden": 4}, "hparams_name": "config"},  # hparams nested under one init argument
        {"hyper_parameters": {"_instantiator": "my.own.instantiator"}},  # not ours to wrap
    ],
)
def test_checkpoints_we_cannot_mark_are_left_as_they_are(checkpoint: dict) -> None:
    before = {key: dict(value) if isinstance(value, dict) else value for key, value in checkpoint.items()}
    assert not mark_for_plain_reload(checkpoint, make_tiny()())
    assert checkpoint == before


def test_the_instantiator_builds_the_class_with_its_arguments() -> None:
    model = load_tensorized_module(make_tiny(), {"hidden": 3})
    assert model.hparams.hidden == 3 and "on_load_checkpoint" in vars(model)
    model.on_load_checkpoint({})  # no spec: nothing rebuilt, and the per-instance hook is gone
    assert "on_load_checkpoint" not in vars(model)
