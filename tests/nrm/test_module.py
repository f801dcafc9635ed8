"""The NRM LightningModule: losses fall in a short semi-supervised run, checkpoints resume, bad input is named."""

from __future__ import annotations

import statistics

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from trinity_lightning.data import ArrayDataset
from trinity_lightning.nrm import METHODS, NRM, SemiSupervisedDataModule

TRAINER = {
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
    "num_sanity_val_steps": 0,
}


@pytest.fixture(scope="module")
def digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return ArrayDataset(torch.tensor(d.images, dtype=torch.float32)[:, None], torch.tensor(d.target))


class _Losses(pl.Callback):
    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.history.append({k[6:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train_")})


def test_twenty_semi_supervised_steps_lower_every_loss(digits):
    pl.seed_everything(0, verbose=False)
    dm = SemiSupervisedDataModule(
        digits, labels_per_class=5, labelled_batch_size=25, unlabelled_ratio=2, val_size=50, seed=0
    )
    # every term weighted enough that the optimizer works on it (with a small RPN weight the growing logits
    # of a sharpening classifier can outpace the penalty early on)
    model = NRM(image_size=8, layers=[8, "M", 16], lr=3e-3, alpha_recon=1.0, alpha_rpn=1.0)
    losses = _Losses()
    pl.Trainer(max_steps=20, limit_val_batches=0, enable_checkpointing=False, callbacks=[losses], **TRAINER).fit(
        model, dm
    )
    assert len(losses.history) == 20
    for name in ("ce", "recon", "rpn", "loss"):
        first = statistics.fmean(h[name] for h in losses.history[:3])
        last = statistics.fmean(h[name] for h in losses.history[-3:])
        assert last < first, (name, first, last)
    assert losses.history[-1]["recon"] > 0 and losses.history[-1]["rpn"] > 0


def test_deterministic_trainer_fits_and_repeats_exactly(digits):
    """``Trainer(deterministic=True)`` (deterministic algorithms on) trains the full Max-Min NRM, twice alike."""

    def fit() -> dict[str, torch.Tensor]:
        pl.seed_everything(0, verbose=False)
        dm = SemiSupervisedDataModule(
            digits, labels_per_class=3, labelled_batch_size=10, unlabelled_ratio=2, val_size=20, unlabelled_limit=60
        )
        model = NRM(image_size=8, layers=[4, "M", 8])
        pl.Trainer(max_steps=3, deterministic=True, limit_val_batches=0, enable_checkpointing=False, **TRAINER).fit(
            model, dm
        )
        assert torch.are_deterministic_algorithms_enabled()
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, second = fit(), fit()
    assert all(torch.equal(first[k], second[k]) for k in first)
    pl.seed_everything(0, verbose=False)
    initial = NRM(image_size=8, layers=[4, "M", 8]).state_dict()  # the same initialization, untrained
    assert not torch.equal(first["net.head.weight"], initial["net.head.weight"])  # it did train


def test_labelled_only_batches_and_baseline_ignore_unlabelled():
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    model = NRM(num_classes=3, image_size=8, layers=[4, "M"])
    out = model.losses((x, y))
    assert out["recon"].item() > 0 and out["loss"].item() > out["ce"].item()
    baseline = NRM(num_classes=3, image_size=8, layers=[4, "M"], max_min=False, alpha_recon=0, alpha_rpn=0)
    assert not baseline.uses_unlabelled
    plain = baseline.losses((x, y))
    with_pool = baseline.losses({"labelled": (x, y), "unlabelled": torch.full((50, 1, 8, 8), float("nan"))})
    assert plain["loss"].item() == pytest.approx(with_pool["loss"].item())  # the pool is never touched


def test_two_path_ce_is_both_paths_cross_entropy_averaged_logits_and_nothing_else():
    """``method="two_path_ce"``: CE on the Max and the Min path (summed, as Max-Min NRM weighs them), prediction the
    mean of the two paths' logits, no reconstruction, no RPN, the unlabelled images never used."""
    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    model = NRM(num_classes=3, image_size=8, layers=[4, "M", 8], method="two_path_ce")
    assert model.hparams["max_min"] is True and model.hparams["method"] == "two_path_ce"
    assert model.hparams["alpha_recon"] == model.hparams["alpha_rpn"] == 0.0 and not model.uses_unlabelled
    poison = torch.full((20, 1, 8, 8), float("nan"))  # any use of the unlabelled images would show as nan
    out = model.losses({"labelled": (x, y), "unlabelled": poison})
    max_logits, min_logits = model.net.infer(x, "max").logits, model.net.infer(x, "min").logits
    expected = F.cross_entropy(max_logits, y) + F.cross_entropy(min_logits, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6) and out["ce"].item() == out["loss"].item()
    assert out["recon"].item() == 0.0 and out["rpn"].item() == 0.0
    model.eval()
    mean_logits = (model.net.infer(x, "max").logits + model.net.infer(x, "min").logits) / 2
    torch.testing.assert_close(model(x), mean_logits, rtol=0, atol=0)
    assert not torch.allclose(model.net.infer(x, "max").logits, mean_logits)  # the Min path does contribute


def test_named_methods_equal_their_explicit_switches_and_conflicts_are_named():
    torch.manual_seed(0)
    batch = {
        "labelled": (torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])),
        "unlabelled": torch.randn(6, 1, 8, 8),
    }
    for method, switches in METHODS.items():
        torch.manual_seed(1)
        named = NRM(num_classes=3, image_size=8, layers=[4, "M"], method=method)
        torch.manual_seed(1)
        explicit = NRM(num_classes=3, image_size=8, layers=[4, "M"], **switches)
        assert {k: named.hparams[k] for k in switches} == switches
        assert all(torch.equal(v, explicit.state_dict()[k]) for k, v in named.state_dict().items())
        assert named.losses(batch)["loss"].item() == explicit.losses(batch)["loss"].item(), method
    default = NRM()
    assert default.hparams["method"] is None
    assert {k: default.hparams[k] for k in METHODS["maxmin_nrm"]} == METHODS["maxmin_nrm"]
    assert NRM(method="two_path_ce", alpha_recon=0, max_min=True).hparams["alpha_recon"] == 0.0  # agreeing is fine
    with pytest.raises(ValueError, match=r"alpha_recon: method 'two_path_ce' sets it to 0\.0, got 0\.5"):
        NRM(method="two_path_ce", alpha_recon=0.5)
    with pytest.raises(ValueError, match="max_min"):
        NRM(method="ce", max_min=True)
    with pytest.raises(ValueError, match="method: expected one of"):
        NRM(method="two_path")


def test_soft_pseudo_labels_send_gradient_to_the_classifier_from_unlabelled_data():
    torch.manual_seed(0)
    batch = {
        "labelled": (torch.randn(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)),
        "unlabelled": torch.randn(8, 1, 8, 8),
    }
    for pseudo, expect_grad in (("soft", True), ("hard", False)):
        model = NRM(num_classes=3, image_size=8, layers=[4, "M"], alpha_rpn=0.0, pseudo_label=pseudo, max_min=False)
        model.losses(batch)["recon"].backward()
        # hard pseudo-labels pick the class without a gradient; soft ones let x choose its best template
        assert (model.net.head.bias.grad is not None and model.net.head.bias.grad.abs().sum() > 0) == expect_grad


def test_render_from_classes_and_latent_choices():
    model = NRM(image_size=8, layers=[4, "M"]).eval()
    y = torch.tensor([1, 2])
    assert model.render(y, x=torch.randn(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    assert model.render(y).shape == (2, 1, 8, 8)  # random latents
    latents = model.infer_latents(torch.randn(2, 1, 8, 8))
    assert torch.equal(model.render(y, latents), model.render(y, latents))


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="alpha_rpn"):
        NRM(alpha_rpn=-1.0)
    with pytest.raises(ValueError, match="pseudo_label"):
        NRM(pseudo_label="sharp")
    with pytest.raises(ValueError, match="schedule"):
        NRM(schedule="step")
    with pytest.raises(ValueError, match="batch"):
        NRM(image_size=8, layers=[4]).losses({"unlabelled": torch.zeros(2, 1, 8, 8)})


def test_checkpoint_resume_restores_weights_split_and_step(digits, tmp_path):
    pl.seed_everything(0, verbose=False)

    def data(seed: int) -> SemiSupervisedDataModule:
        return SemiSupervisedDataModule(
            digits,
            labels_per_class=3,
            labelled_batch_size=10,
            unlabelled_ratio=2,
            val_size=40,
            unlabelled_limit=100,
            seed=seed,
        )

    first_dm = data(seed=0)
    model = NRM(image_size=8, layers=[4, "M"], schedule="cosine")
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    pl.Trainer(max_epochs=1, callbacks=[checkpoint], default_root_dir=tmp_path, **TRAINER).fit(model, first_dm)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["SemiSupervisedDataModule"]["labelled_indices"] == first_dm.labelled_indices.tolist()

    class Check(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.step = trainer.global_step
            self.weights_equal = all(
                torch.equal(saved["state_dict"][k], v.cpu()) for k, v in pl_module.state_dict().items()
            )

    check = Check()
    resumed_dm = data(seed=7)  # a different seed would draw another split; the checkpoint's must win
    with pytest.warns(UserWarning, match="labelled set differs"):
        pl.Trainer(max_epochs=2, callbacks=[check], default_root_dir=tmp_path, **TRAINER).fit(
            NRM(image_size=8, layers=[4, "M"], schedule="cosine"), resumed_dm, ckpt_path=tmp_path / "last.ckpt"
        )
    assert check.step == saved["global_step"] > 0 and check.weights_equal
    assert resumed_dm.labelled_indices.tolist() == first_dm.labelled_indices.tolist()
    assert set(resumed_dm.unlabelled_indices).isdisjoint(resumed_dm.labelled_indices)


@pytest.mark.slow
def test_max_min_nrm_learns_mnist_from_100_labels():
    """Real data end to end: 100 MNIST labels + unlabelled images, a small net, 150 steps -> well above chance."""
    from tests.conftest import require_dataset

    require_dataset("mnist")
    pl.seed_everything(0, verbose=False)
    dm = SemiSupervisedDataModule(
        "mnist",
        labels_per_class=10,
        labelled_batch_size=20,
        unlabelled_ratio=2,
        val_size=200,
        unlabelled_limit=6000,
        test_limit=1000,
        seed=0,
    )
    model = NRM(layers=[8, "M", 16, "M"], lr=3e-3, schedule="cosine")
    trainer = pl.Trainer(max_steps=150, limit_val_batches=0, enable_checkpointing=False, **TRAINER)
    trainer.fit(model, dm)
    assert trainer.test(model, dm, verbose=False)[0]["test_acc"] > 0.6


def test_save_grid_names_its_extra_when_matplotlib_is_missing(monkeypatch, tmp_path):
    import sys

    from trinity_lightning.nrm import save_grid

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"trinity-lightning\[nrm\]"):
        save_grid(torch.rand(1, 1, 1, 4, 4), tmp_path / "g.png")


def test_method_is_a_config_option():
    """A YAML/CLI config selects the matched baseline by name (``--model.method two_path_ce``)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(NRM, "model")
    config = parser.parse_args(["--model.method", "two_path_ce", "--model.image_size", "8", "--model.layers", "[4]"])
    model = parser.instantiate_classes(config).model
    assert model.hparams["method"] == "two_path_ce" and model.hparams["max_min"] is True
    assert model.hparams["alpha_recon"] == model.hparams["alpha_rpn"] == 0.0
