from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from trinity_lightning.data import DigitsDataModule
from trinity_lightning.models import Classifier
from trinity_lightning.tensor import Tensorize, TensorizedConv, TensorizedLinear, load_tensorized, tensorize
from trinity_lightning.tensor.tensorize import SPEC_KEY

LR = 0.01


class ScheduledClassifier(Classifier):
    def configure_optimizers(self):  # type: ignore[override]
        opt = torch.optim.Adam(self.parameters(), lr=LR)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


def _model() -> ScheduledClassifier:
    return ScheduledClassifier(in_channels=1, image_size=8, channels=(8, 16))


class Probe(Callback):
    """Records, at the first batch of each epoch, whether the optimizer holds exactly the model's parameters."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[bool, float, bool]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            opt = trainer.optimizers[0]
            in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
            tensorized = any(isinstance(m, (TensorizedConv, TensorizedLinear)) for m in pl_module.modules())
            self.seen[trainer.current_epoch] = (
                in_opt == {id(p) for p in pl_module.parameters()},
                opt.param_groups[0]["lr"],
                tensorized,
            )


def _trainer(root: Path, max_epochs: int, *callbacks: Callback) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[
            ModelCheckpoint(dirpath=root / "ckpt", save_last=True, save_top_k=-1, filename="{epoch}"),
            *callbacks,
        ],
    )


def test_mid_training_tensorization_checkpoint_and_resume_into_a_fresh_dense_model(tmp_path):
    pl.seed_everything(0)
    model, probe = _model(), Probe()
    callback = Tensorize("tucker", rank=0.5, epoch=1, verbose=False)
    trainer = _trainer(tmp_path, 2, callback, probe)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    # epoch 0 dense, epoch 1 tensorized; optimizer rebuilt over the new parameters, scheduled LR carried over
    assert probe.seen[0] == (True, LR, False)
    assert probe.seen[1] == (True, LR * 0.5, True)
    assert callback.tensorized_at == 1 and callback.report is not None
    assert callback.report.model_params_after < callback.report.model_params_before
    dense_ckpt = torch.load(tmp_path / "ckpt" / "epoch=0.ckpt", weights_only=False)
    after_ckpt = torch.load(tmp_path / "ckpt" / "epoch=1.ckpt", weights_only=False)
    assert SPEC_KEY not in dense_ckpt
    assert set(after_ckpt[SPEC_KEY]) == {"model.features.0", "model.features.4", "model.head.2"}
    assert after_ckpt["callbacks"][callback.state_key] == {"done": True, "tensorized_at": 1}

    # a fresh dense model loads the checkpoint outside the Trainer ...
    x = torch.randn(5, 1, 8, 8)
    model.eval()
    fresh = load_tensorized(_model(), tmp_path / "ckpt" / "epoch=1.ckpt").eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))

    # ... and resumes training with trainer.fit(ckpt_path=...)
    resumed_model, resumed_probe = _model(), Probe()
    resumed_callback = Tensorize("tucker", rank=0.5, epoch=1, verbose=False)
    resumed = _trainer(tmp_path / "resume", 3, resumed_callback, resumed_probe)
    resumed.fit(resumed_model, DigitsDataModule(batch_size=32), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed_callback.done and resumed_callback.report is None  # structure restored, not re-decomposed
    assert resumed_probe.seen == {2: (True, LR * 0.25, True)}
    assert resumed.global_step == trainer.global_step + 3


def test_epoch_zero_tensorizes_before_the_optimizer_exists(tmp_path):
    probe = Probe()
    trainer = _trainer(tmp_path, 1, Tensorize("tt", rank=0.5, epoch=0, verbose=False), probe)
    trainer.fit(_model(), DigitsDataModule(batch_size=32))
    assert probe.seen[0] == (True, LR, True)


def test_dense_checkpoint_resumes_then_tensorizes_the_loaded_weights(tmp_path):
    pl.seed_everything(0)
    dense_model = _model()
    _trainer(tmp_path, 1).fit(dense_model, DigitsDataModule(batch_size=32))
    probe = Probe()
    callback = Tensorize("tucker", rank=0.5, epoch=0, verbose=False)
    model = _model()
    trainer = _trainer(tmp_path / "b", 2, callback, probe)
    trainer.fit(model, DigitsDataModule(batch_size=32), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    # the dense checkpoint loaded (layers back to dense), then the loaded weights were decomposed at epoch 1
    assert callback.tensorized_at == 1
    assert probe.seen == {1: (True, LR * 0.5, True)}
    assert callback.report is not None and callback.report.layers[0].reconstruction_error < 0.9


def test_plain_load_of_a_dense_checkpoint_into_a_tensorized_model_explains(tmp_path):
    pl.seed_everything(0)
    _trainer(tmp_path, 1).fit(_model(), DigitsDataModule(batch_size=32))
    model = _model()
    tensorize(model, "tucker", 0.5)
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    with pytest.raises(
        ValueError,
        match=r"layer 'model.features.0' is tensorized.*saved before tensorization.*"
        r"Load it into the dense model first",
    ):
        model.load_state_dict(state)


def test_tensor_dropout_hook_only_acts_in_training():
    model = _model()
    tensorize(model, "tucker", 0.8)
    callback = Tensorize("tucker", rank=0.8, tensor_dropout=0.5, verbose=False)
    callback._mark_done(model)
    conv = model.model.features[4]
    assert conv.weight._forward_hooks
    x = torch.randn(4, 1, 8, 8)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_state_key_and_bad_arguments():
    assert Tensorize("cp", 0.5, epoch=2).state_key == "Tensorize{'factorization': 'cp', 'rank': 0.5, 'epoch': 2}"
    with pytest.raises(ValueError, match="epoch: expected an int >= 0"):
        Tensorize(epoch=-1)
    with pytest.raises(ValueError, match=r"tensor_dropout: expected a probability in \[0, 1\)"):
        Tensorize(tensor_dropout=1.0)
    with pytest.raises(ValueError, match="factorization: expected one of"):
        Tensorize("svd")


def test_epoch_zero_checkpoint_resumes_into_a_fresh_model_with_the_trained_factors(tmp_path):
    # the common recipe: tensorize at fit start; the resumed run must load the trained factors, not re-decompose
    pl.seed_everything(0)
    model = _model()
    trainer = _trainer(tmp_path, 1, Tensorize("tucker", rank=0.5, epoch=0, verbose=False))
    trainer.fit(model, DigitsDataModule(batch_size=32))
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    resumed_model, probe = _model(), Probe()
    callback = Tensorize("tucker", rank=0.5, epoch=0, verbose=False)
    resumed = _trainer(tmp_path / "resume", 2, callback, probe)
    loaded: dict[str, torch.Tensor] = {}

    class Capture(Callback):
        def on_train_start(self, trainer, pl_module):  # after the checkpoint is restored, before any step
            loaded.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    resumed.callbacks.append(Capture())
    resumed.fit(resumed_model, DigitsDataModule(batch_size=32), ckpt_path=ckpt)
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert probe.seen == {1: (True, LR * 0.5, True)}
    assert resumed.global_step == trainer.global_step + 3
