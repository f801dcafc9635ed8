from __future__ import annotations

import pytest
import tensorly as tl
import torch
from torch import nn

from trinity_lightning.tensor import TensorizedConv, TensorizedLinear, UnsupportedLayerError
from trinity_lightning.tensor.layers import build_from_spec, tltorch

FACTORIZATIONS = ["cp", "tucker", "tt"]


def _conv(order: int) -> nn.Module:
    torch.manual_seed(order)
    if order == 1:
        return nn.Conv1d(3, 5, 3, stride=2, padding=1, dilation=1)
    if order == 2:
        return nn.Conv2d(3, 5, 3, stride=(1, 2), padding=(2, 1), dilation=(2, 1))
    return nn.Conv3d(2, 4, (3, 1, 3), padding=(1, 0, 1))


def _input(order: int) -> torch.Tensor:
    return torch.randn(2, _conv(order).in_channels, *([7] * order))


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_full_rank_conv_matches_dense(factorization, order):
    conv, x = _conv(order), _input(order)
    tconv = TensorizedConv.from_dense(conv, factorization, "full", "factorized")
    with torch.no_grad():
        expected = conv(x)
        # Tucker/TT decompositions at full rank are exact; CP by ALS at the generic bound is close (tltorch: decimal=2)
        tol = 5e-2 if factorization == "cp" else 1e-4
        assert torch.allclose(tconv(x), expected, atol=tol, rtol=0)
        tconv.implementation = "reconstructed"  # same factors, the other forward path
        tconv.forward_fun = tltorch.functional.convolution._get_factorized_conv(tconv.weight, "reconstructed")
        assert torch.allclose(tconv(x), expected, atol=tol, rtol=0)
        assert torch.allclose(tconv.to_dense()(x), expected, atol=tol, rtol=0)
    assert isinstance(tconv.to_dense(), type(conv))


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_full_rank_linear_matches_dense(factorization):
    torch.manual_seed(0)
    linear, x = nn.Linear(12, 6), torch.randn(4, 12)
    tlin = TensorizedLinear.from_dense(linear, factorization, "full")
    tol = 5e-2 if factorization == "cp" else 1e-4
    assert torch.allclose(tlin(x), linear(x), atol=tol, rtol=0)
    assert torch.allclose(tlin.to_dense()(x), linear(x), atol=tol, rtol=0)


@pytest.mark.parametrize("factorization", FACTORIZATIONS)
def test_low_rank_layer_is_smaller_and_spec_rebuilds_it(factorization):
    conv = nn.Conv2d(16, 32, 3, padding=1)
    tconv = TensorizedConv.from_dense(conv, factorization, 0.25)
    n_dense = sum(p.numel() for p in conv.parameters())
    n_fact = sum(p.numel() for p in tconv.parameters())
    assert n_fact <= 0.25 * conv.weight.numel() + 32 and n_fact < n_dense
    rebuilt = build_from_spec(nn.Conv2d(16, 32, 3, padding=1), tconv.spec())
    rebuilt.load_state_dict(tconv.state_dict())
    x = torch.randn(1, 16, 5, 5)
    assert torch.equal(rebuilt(x), tconv(x))


def test_forward_keeps_the_global_tensorly_backend():
    before = tl.get_backend()
    tl.set_backend("numpy")
    try:
        layer = TensorizedConv.from_dense(nn.Conv2d(2, 4, 3), "tucker", 0.5)
        layer(torch.randn(1, 2, 5, 5))
        assert tl.get_backend() == "numpy"
    finally:
        tl.set_backend(before)


def test_dense_state_dict_into_tensorized_layer_explains_what_to_do():
    model = nn.Sequential(nn.Conv2d(2, 4, 3))
    dense_state = model.state_dict()
    model[0] = TensorizedConv.from_dense(model[0], "cp", 2)
    with pytest.raises(
        ValueError,
        match=r"layer '0' is tensorized \(cp, rank 2\).*saved before tensorization.*"
        r"tensorize\(model",
    ):
        model.load_state_dict(dense_state)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.ConvTranspose2d(4, 4, 3), "ConvTranspose2d"),
    ],
)
def test_unsupported_convs_are_named(layer, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        TensorizedConv.from_dense(layer, "tucker", 0.5, name="block.conv")


def test_same_padding_is_converted():
    conv = nn.Conv2d(3, 4, 3, padding="same", dilation=2)
    x = torch.randn(1, 3, 9, 9)
    assert torch.allclose(TensorizedConv.from_dense(conv, "tucker", "full")(x), conv(x), atol=1e-4)


def test_tucker_linear_keeps_output_modes_at_full_rank():
    # a 10-output layer tensorizes to output modes (2, 5); a rank below that would make every logit vector
    # proportional to one direction
    tlin = TensorizedLinear.from_dense(nn.Linear(2048, 10), "tucker", 0.1)
    assert tlin.out_tensorized_features == (2, 5)
    assert tuple(tlin.spec()["rank"][:2]) == (2, 5)
    assert sum(p.numel() for p in tlin.parameters()) <= 0.1 * 20480 + 10
