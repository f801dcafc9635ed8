from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trinity_lightning.lander import SpectralNormalization, layer_norm


class ConvNet(pl.LightningModule):
    def __init__(self, extra: nn.Module | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
        self.head = nn.Linear(4 * 3 * 3, 1)
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))

    def training_step(self, batch, _):
        loss = nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _data() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=gen)
    return DataLoader(TensorDataset(x, x.mean(dim=(1, 2, 3)).unsqueeze(1) * 3), batch_size=16)


def _trainer(tmp_path, epochs, callbacks, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kw,
    )


def test_callback_normalizes_linear_and_conv_and_logs_the_bound_each_epoch(tmp_path):
    pl.seed_everything(0)
    model = ConvNet()
    sn = SpectralNormalization(bound=0.8)
    trainer = _trainer(tmp_path, 3, [sn], enable_checkpointing=False)
    trainer.fit(model, _data())
    assert sn.layers == ["features.0", "features.2", "head"]
    assert len(sn.history) == 3
    norms = sn.layer_norms(model)
    for name, value in norms.items():
        assert value <= 0.8 * 1.01, name  # the layer's exact (operator) norm is at the bound
        assert value >= 0.8 * 0.9, name
    assert float(trainer.callback_metrics["spectral/certified_bound"]) == pytest.approx(sn.history[-1], rel=1e-5)
    assert sn.history[-1] <= 0.8**3 * 1.03
    assert layer_norm(model.features[2]) == pytest.approx(norms["features.2"])


def test_layers_it_cannot_normalize_are_named_in_one_error_and_exclude_skips_them(tmp_path):
    extra = nn.ModuleDict({"up": nn.ConvTranspose2d(4, 4, 2), "grouped": nn.Conv2d(4, 4, 3, groups=2)})
    model = ConvNet(extra)
    with pytest.raises(
        ValueError,
        match=r"cannot normalize 2 layer\(s\): extra.up \(transposed convolution\); "
        r"extra.grouped \(grouped convolution \(groups=2\)\).*exclude=\['extra.up', 'extra.grouped'\]",
    ):
        SpectralNormalization().apply(model)
    names = SpectralNormalization(exclude=["extra.*"]).apply(model)
    assert names == ["features.0", "features.2", "head"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="bound: expected a finite per-layer Lipschitz bound > 0, got 0"):
        SpectralNormalization(bound=0)
    with pytest.raises(ValueError, match="n_power_iterations"):
        SpectralNormalization(n_power_iterations=0)


def test_resume_from_checkpoint_is_exact(tmp_path):
    pl.seed_everything(0)
    straight = ConvNet()
    sn_straight = SpectralNormalization(bound=0.8)
    _trainer(tmp_path / "a", 2, [sn_straight], enable_checkpointing=False).fit(straight, _data())

    pl.seed_everything(0)
    first = ConvNet()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path / "b", 1, [SpectralNormalization(bound=0.8), ckpt]).fit(first, _data())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    key = SpectralNormalization(bound=0.8).state_key
    assert saved["callbacks"][key]["layers"] == ["features.0", "features.2", "head"]
    assert len(saved["callbacks"][key]["history"]) == 1

    pl.seed_everything(123)
    resumed = ConvNet()  # a fresh, plain model: the callback normalizes it before the checkpoint loads
    sn_resumed = SpectralNormalization(bound=0.8)
    _trainer(tmp_path / "c", 2, [sn_resumed], enable_checkpointing=False).fit(
        resumed, _data(), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    assert sn_resumed.history == pytest.approx(sn_straight.history, rel=0, abs=0)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
