from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from trinity_lightning.lander.controllers import OracleResidual, TrackingController, fly, landing_error
from trinity_lightning.lander.datamodule import LandingDataModule
from trinity_lightning.lander.module import ResidualDynamicsModule
from trinity_lightning.lander.simulator import SmoothReference


def test_datamodule_is_seeded_and_reports_its_range():
    a, b = LandingDataModule(flights=2, seconds=2.0, seed=4), LandingDataModule(flights=2, seconds=2.0, seed=4)
    a.setup("fit")
    b.setup("fit")
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])
    low, high = a.feature_range()
    assert low.shape == (3,) and bool((low <= high).all())
    assert float(low[0]) >= 0.0 and float(high[0]) <= 1.2  # heights within the exploration range
    with pytest.raises(ValueError, match="val_fraction"):
        LandingDataModule(val_fraction=1.0)


def _fit(tmp_path, flights, seconds, epochs, **kw):
    pl.seed_everything(0)
    dm = LandingDataModule(flights=flights, seconds=seconds, batch_size=64, seed=0)
    module = ResidualDynamicsModule(hidden=(32, 32), lr=1e-2, **kw)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)
    return dm, module, trainer


def test_module_learns_the_residual_within_its_lipschitz_bound(tmp_path):
    dm, module, trainer = _fit(tmp_path, 8, 6.0, 4, layer_bound=1.5)
    assert torch.allclose(module.feature_scale, torch.tensor([0.25, 1.0, 9.81]))
    low, high = dm.feature_range()
    assert torch.equal(module.feature_low, low) and torch.equal(module.feature_high, high)
    x = dm.val_set.tensors[0]
    truth = dm.sim.residual_from_features(x)  # noise-free (the labels carry process and label noise)
    baseline = float((truth - truth.mean()).pow(2).mean().sqrt())  # predicting the mean
    with torch.no_grad():
        assert float((module(x) - truth).pow(2).mean().sqrt()) < 0.6 * baseline
    assert module.lipschitz_bound() <= 1.5**3 * 1.05
    assert float(trainer.callback_metrics["lipschitz/certified"]) == pytest.approx(module.lipschitz_bound(), rel=1e-3)


@pytest.mark.slow
def test_the_learned_controller_lands_nearly_as_well_as_the_oracle(tmp_path):
    dm, module, _ = _fit(tmp_path, 16, 20.0, 10, layer_bound=1.35)
    sim = dm.sim
    module.eval()
    ref = SmoothReference.landing(torch.tensor([[0.9], [1.0], [1.1]], dtype=torch.float64), speed=0.5)
    learned = fly(sim, TrackingController(sim, residual=module), ref, seed=2)
    nominal = fly(sim, TrackingController(sim), ref, seed=2)
    oracle = fly(sim, TrackingController(sim, residual=OracleResidual(sim)), ref, seed=2)
    err = float(landing_error(learned).mean())
    assert err < 0.2 * float(landing_error(nominal).mean())
    assert err < 3 * float(landing_error(oracle).mean())
    assert sum(learned["iterations"]) / len(learned["iterations"]) <= 5


def test_bad_schedule():
    with pytest.raises(ValueError, match="schedule: expected 'cosine' or 'constant', got 'step'"):
        ResidualDynamicsModule(schedule="step")


def test_bad_feature_scale():
    with pytest.raises(ValueError, match="feature_scale: expected 3 numbers > 0"):
        ResidualDynamicsModule(feature_scale=[1.0, 0.0, 1.0])


def test_planar_data_and_module_shapes():
    dm = LandingDataModule(system="planar", flights=2, seconds=1.0)
    dm.setup("fit")
    x, y = dm.train_set.tensors
    assert x.shape[1] == 6 and y.shape[1] == 2
    assert dm.feature_scale == (0.25, 1.0, 1.0, 0.3, 9.81 / 2, 9.81 / 2)
    module = ResidualDynamicsModule(6, 2, hidden=(8,), feature_scale=dm.feature_scale)
    assert module(x).shape == y.shape
