"""Seams a new user hit with third-party architectures (issue 14, items 6-9) and the package's import graph."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import tensorly as tl
import torch
from torch import nn

from trinity_lightning.tensor import (
    Tensorize,
    TensorizedConv,
    TensorizedLinear,
    TensorizedMultiheadAttention,
    UnsupportedLayerError,
    detensorize,
    load_tensorized,
    tensorize,
    tensorized_spec,
)
from trinity_lightning.tensor.tensorize import SPEC_KEY

# -- item 6: attention ---------------------------------------------------------------------------------------------


class TinyViT(nn.Module):
    """A small ViT: patch embedding (a strided conv), class token, 2 encoder layers, a linear head."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4, patch: int = 4, image: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1) + self.pos
        return self.head(self.encoder(tokens)[:, 0])


def test_transformer_encoder_layer_tensorizes_both_attention_projections_and_runs_on_the_numpy_backend():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = layer(x)
    tl.set_backend("numpy")  # a user's own TensorLy code: the forward must not depend on the global backend
    try:
        report = tensorize(layer, "tucker", rank="full", progress=False)
        names = [r.name for r in report.layers]
        assert names == ["self_attn.in_proj", "self_attn.out_proj", "linear1", "linear2"]
        assert report.layers[0].shape == (96, 32) and report.layers[0].layer_type == "MultiheadAttention.in_proj"
        attention = layer.self_attn
        assert isinstance(attention, TensorizedMultiheadAttention) and isinstance(attention, nn.MultiheadAttention)
        assert "in_proj_weight" not in dict(attention.named_parameters())  # factorized, not kept dense
        assert isinstance(attention.in_proj, TensorizedLinear) and isinstance(attention.out_proj, TensorizedLinear)
        with torch.no_grad():
            out = layer(x)  # eval: TransformerEncoderLayer checks its fast path, then calls the attention
        assert torch.allclose(out, expected, atol=1e-4)
        layer.train()
        loss = layer(x).square().mean()
        loss.backward()  # gradients reach the factors of both projections
        assert attention.in_proj.weight.core.grad is not None and attention.out_proj.weight.core.grad is not None
        assert tl.get_backend() == "numpy"
    finally:
        tl.set_backend("pytorch")


def test_small_vit_compresses_its_attention_and_round_trips_through_a_checkpoint_and_detensorize():
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.randn(3, 3, 16, 16)
    dense_params = sum(p.numel() for p in model.parameters())
    report = tensorize(model, "tucker", rank=0.5, progress=False)
    attention_rows = [r.name for r in report.layers if "self_attn" in r.name]
    assert attention_rows == [f"encoder.layers.{i}.self_attn.{p}" for i in (0, 1) for p in ("in_proj", "out_proj")]
    assert report.model_params_after < dense_params
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()

    spec = tensorized_spec(model)
    assert spec["encoder.layers.0.self_attn"]["kind"] == "multihead_attention"
    assert set(spec["encoder.layers.0.self_attn"]["projections"]) == {"in_proj", "out_proj"}
    assert not any(name.startswith("encoder.layers.0.self_attn.") for name in spec)
    fresh = load_tensorized(TinyViT().eval(), {"state_dict": model.state_dict(), SPEC_KEY: spec})
    with torch.no_grad():
        assert torch.equal(fresh(x), out)

    changed = detensorize(model)
    assert "encoder.layers.1.self_attn" in changed
    assert type(model.encoder.layers[1].self_attn) is nn.MultiheadAttention
    with torch.no_grad():
        assert torch.allclose(model(x), out, atol=1e-5)


def test_attention_projections_follow_include_and_exclude():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    report = tensorize(layer, "tucker", 0.5, exclude=["*.out_proj"], progress=False)
    assert [r.name for r in report.layers] == ["self_attn.in_proj", "linear1", "linear2"]
    assert type(layer.self_attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    layer(torch.randn(2, 3, 16))
    other = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    assert tensorize(other, "cp", 0.5, exclude=[nn.MultiheadAttention], progress=False).layers[0].name == "linear1"
    assert type(other.self_attn) is nn.MultiheadAttention


def test_attention_with_separate_key_value_sizes():
    attention = nn.Sequential()
    attention.add_module("mha", nn.MultiheadAttention(16, 2, kdim=8, vdim=12, batch_first=True))
    q, k, v = torch.randn(2, 3, 16), torch.randn(2, 4, 8), torch.randn(2, 4, 12)
    with torch.no_grad():
        expected = attention.mha(q, k, v)[0]
    report = tensorize(attention, "tucker", "full", progress=False)
    assert [r.name for r in report.layers] == ["mha.q_proj", "mha.k_proj", "mha.v_proj", "mha.out_proj"]
    with torch.no_grad():
        assert torch.allclose(attention.mha(q, k, v)[0], expected, atol=1e-4)


# -- item 7: grouped / depthwise convolutions ------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project (built here: no torchvision download)."""

    def __init__(self, channels: int, expand: int = 4) -> None:
        super().__init__()
        hidden = channels * expand
        self.conv = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _mobilenet_like() -> nn.Module:
    net = nn.Sequential()
    net.add_module("stem", nn.Conv2d(3, 16, 3, stride=2, padding=1))
    net.add_module("blocks", nn.Sequential(*(InvertedResidual(16) for _ in range(3))))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("head", nn.Linear(16, 10))
    return net


DEPTHWISE = ["blocks.0.conv.3", "blocks.1.conv.3", "blocks.2.conv.3"]


def test_every_unsupported_layer_is_named_in_one_error_with_an_exclude_pattern_that_works():
    with pytest.raises(UnsupportedLayerError) as caught:
        tensorize(_mobilenet_like(), "tucker", 0.5, progress=False)
    message = str(caught.value)
    assert message.startswith("3 layers cannot be tensorized")
    assert all(f"'{name}': grouped/depthwise Conv2d (groups=64)" in message for name in DEPTHWISE)
    assert "exclude=['blocks.*.conv.3']" in message and "skip_unsupported=True" in message
    assert "exclude=[Conv2d]" not in message  # the old hint excluded every convolution
    # the hint, applied as written, tensorizes every other conv and linear layer
    model = _mobilenet_like()
    report = tensorize(model, "tucker", 0.5, exclude=["blocks.*.conv.3"], progress=False)
    expected = ["stem", *(f"blocks.{i}.conv.{j}" for i in range(3) for j in (0, 6)), "head"]
    assert [r.name for r in report.layers] == expected
    assert all(fnmatch.fnmatchcase(name, "blocks.*.conv.3") is False for name in expected)


def test_skip_unsupported_leaves_them_dense_and_lists_them_in_the_report():
    model = _mobilenet_like().eval()
    report = tensorize(model, "tucker", 0.5, skip_unsupported=True, progress=False)
    assert list(report.skipped) == DEPTHWISE
    assert report.skipped["blocks.1.conv.3"] == "unsupported: grouped/depthwise Conv2d (groups=64)"
    assert len(report.layers) == 8 and type(model.blocks[1].conv[3]) is nn.Conv2d
    assert isinstance(model.blocks[1].conv[0], TensorizedConv)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    text = str(report)
    assert "left dense" in text and "blocks.2.conv.3" in text
    assert report.to_dict()["skipped"]["blocks.0.conv.3"].startswith("unsupported")


class _MobileNetModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mobilenet_like()


def test_tensorize_callback_skips_unsupported_layers_or_refuses_them_at_setup():
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module = _MobileNetModule()
    callback = Tensorize("tucker", 0.5, skip_unsupported=True, verbose=False, progress=False)
    callback.setup(trainer, module, "fit")
    assert callback.report is not None and list(callback.report.skipped) == [f"net.{name}" for name in DEPTHWISE]
    assert len(callback.report.layers) == 8
    later = Tensorize("tucker", 0.5, epoch=2, verbose=False, progress=False)  # used to fail at epoch 2
    with pytest.raises(
        UnsupportedLayerError, match=r"(?s)3 layers cannot be tensorized.*exclude=\['net.blocks.\*.conv.3'\]"
    ):
        later.setup(trainer, _MobileNetModule(), "fit")


# -- item 8: every argument validated when it is given -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": -0.5}, r"rank: a float rank .* must be in \(0, 1\], got -0.5"),
        ({"rank": 1.5}, r"rank: a float rank .* must be in \(0, 1\], got 1.5"),
        ({"rank": "half"}, r"rank: expected a float in \(0, 1\], 'full', .* got 'half'"),
        ({"rank": 0}, r"rank: expected a positive rank, got 0"),
        ({"rank": True}, r"rank: expected .* got True"),
        ({"rank": [4, 0]}, r"rank: expected positive ints, got \[4, 0\]"),
        ({"factorization": "cp", "rank": [4, 4]}, r"rank: CP takes a single int rank"),
        ({"rank": float("nan")}, r"rank: a float rank"),
        ({"epoch": 1.5}, r"epoch: expected an int >= 0, got 1.5"),
        ({"epoch": "2"}, r"epoch: expected an int >= 0, got '2'"),
        ({"include": "model.features.*"}, r"include: expected a list of layer names, patterns or types"),
        ({"exclude": [3]}, r"exclude: expected layer names, patterns or module types, got 3"),
        ({"implementation": "fast"}, r"implementation: expected 'auto', 'factorized' or 'reconstructed'"),
        ({"min_params": -1}, r"min_params: expected an int >= 0, got -1"),
        ({"min_params": 0.5}, r"min_params: expected an int >= 0, got 0.5"),
        ({"tensor_dropout": -0.1}, r"tensor_dropout: expected a probability in \[0, 1\)"),
        ({"rank_regularization": float("nan")}, r"rank_regularization: expected a finite penalty >= 0"),
        ({"verbose": "yes"}, r"verbose: expected True or False, got 'yes'"),
        ({"progress": 1}, r"progress: expected True or False, got 1"),
        ({"skip_unsupported": None}, r"skip_unsupported: expected True or False, got None"),
    ],
)
def test_tensorize_callback_rejects_bad_arguments_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tensorize(**kwargs)


def test_good_arguments_are_kept():
    callback = Tensorize("TT", rank=[1, 4, 4, 1], epoch=2, include=["model.*", nn.Conv2d], exclude=("head",))
    assert (callback.factorization, callback.rank, callback.include, callback.exclude) == (
        "tt",
        (1, 4, 4, 1),
        ["model.*", nn.Conv2d],
        ["head"],
    )
    assert Tensorize(rank="full").rank == "full" and Tensorize(rank=3).rank == 3


def test_tensorize_function_checks_every_layer_before_changing_any():
    """A rank too large for the last layer used to fail after the first layers were already replaced."""
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match=r"layer '2'.*larger than the full rank"):
        tensorize(model, "tucker", rank=3, progress=False)
    assert type(model[0]) is nn.Linear  # untouched
    with pytest.raises(ValueError, match=r"linear_order: expected an int >= 1"):
        tensorize(model, linear_order=0)
    with pytest.raises(ValueError, match=r"rank: expected"):
        tensorize(model, rank="half")


def test_callback_checks_ranks_against_the_model_at_setup_not_at_the_tensorization_epoch():
    from trinity_lightning.models import Classifier

    callback = Tensorize("tucker", rank=12, epoch=3, verbose=False, progress=False)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    model = Classifier(in_channels=1, image_size=8, channels=(8,))
    with pytest.raises(ValueError, match=r"layer 'model.features.0'.*larger than the full rank"):
        callback.setup(trainer, model, "fit")


# -- item 9: progress per layer ------------------------------------------------------------------------------------


def test_progress_names_each_layer_on_rank_zero(capsys):
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    tensorize(model, "cp", rank=0.25, progress=True)
    err = capsys.readouterr().err
    assert "tensorize cp: layer 1/2 '0' Conv2d 16x8x3x3" in err
    assert "tensorize cp: layer 2/2 '2' Linear 10x576" in err
    assert re.search(r"tensorize cp: layer 1/2 '0' done in \d+\.\d s \(rel\. error 0\.\d{3}\)", err)
    assert "done: 2 layers" in err


def test_progress_is_quiet_when_disabled_and_on_other_ranks(capsys, monkeypatch):
    from lightning_utilities.core.rank_zero import rank_zero_only

    model = nn.Sequential(nn.Linear(32, 32))
    tensorize(model, "tucker", 0.5, progress=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    tensorize(nn.Sequential(nn.Linear(32, 32)), "tucker", 0.5, progress=True)
    assert capsys.readouterr() == ("", "")


def test_callback_progress_flag_reaches_tensorize(capsys):
    from trinity_lightning.models import Classifier

    for progress in (True, False):
        callback = Tensorize("tucker", rank=0.5, verbose=False, progress=progress)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        callback.setup(trainer, Classifier(in_channels=1, image_size=8, channels=(8,)), "fit")
        err = capsys.readouterr().err
        assert ("layer 1/2 'model.features.0'" in err) is progress


# -- house-keeping: no import circle in the package -----------------------------------------------------------------


def test_tensor_package_modules_import_each_other_without_a_cycle():
    """Function-level imports count too: regularization <-> tensorize used to be one such circle."""
    package = Path(__file__).parents[2] / "src" / "trinity_lightning" / "tensor"
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        name = path.stem
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trinity_lightning.tensor."):
                graph[name].add(node.module.rsplit(".", 1)[1])
    graph.pop("__init__")

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert not cycles, f"import cycles through {cycles}"


def test_rank_lasso_reaches_both_attention_projections():
    from trinity_lightning.tensor import RankLasso, fold_rank_lasso

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    tensorize(layer, "tucker", 0.5, progress=False)
    lasso = RankLasso(0.01)
    assert sorted(lasso.attach(layer)) == ["linear1", "linear2", "self_attn.in_proj", "self_attn.out_proj"]
    lasso.reset()
    (layer(torch.randn(2, 3, 16)).square().mean() + lasso.penalty()).backward()
    attention = layer.self_attn
    assert attention.in_proj.weight.lasso_weights[0].grad is not None
    assert attention.out_proj.weight.lasso_weights[0].grad is not None  # the hook ran: MHA read a rebuilt weight
    layer.eval()
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        before = layer(x)
    assert set(fold_rank_lasso(layer)) == {"linear1", "linear2", "self_attn.in_proj", "self_attn.out_proj"}
    with torch.no_grad():
        assert torch.allclose(layer(x), before, atol=1e-5)
