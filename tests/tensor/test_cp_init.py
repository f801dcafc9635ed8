"""The fast CP initialisation: exact on low-rank tensors, as good as TensorLy's parafac on conv kernels, faster."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from trinity_lightning.tensor import TensorizedConv, TensorizedLinear
from trinity_lightning.tensor.cp_init import cp_als, cp_relative_error, slice_svd_start


def _low_rank(shape: tuple[int, ...], rank: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, rank, generator=gen) for n in shape]
    out = factors[0]
    for f in factors[1:]:
        out = (out.unsqueeze(1) * f.unsqueeze(0)).reshape(-1, rank)
    return out.sum(1).reshape(shape)


def test_cp_als_recovers_an_exactly_low_rank_tensor():
    tensor = _low_rank((12, 10, 3, 3), rank=4)
    weights, factors = cp_als(tensor, rank=6, n_sweeps=30)
    assert cp_relative_error(tensor, weights, factors) < 1e-3


def test_slice_svd_start_is_exact_when_rank_covers_every_slice():
    kernel = torch.randn(6, 5, 2, 2, generator=torch.Generator().manual_seed(1))
    factors = slice_svd_start(kernel, rank=4 * 5)  # 4 positions x rank-5 slices
    assert cp_relative_error(kernel, torch.ones(20), factors) < 1e-5


def test_cp_als_matches_parafac_error_on_a_conv_kernel_in_less_time():
    import tensorly as tl
    from tensorly.decomposition import parafac

    from trinity_lightning.tensor._backend import pytorch_backend

    conv = nn.Conv2d(32, 32, 3)
    torch.manual_seed(0)
    nn.init.kaiming_normal_(conv.weight)
    kernel = conv.weight.detach()
    rank = 40
    start = time.perf_counter()
    weights, factors = cp_als(kernel, rank)
    ours_s = time.perf_counter() - start
    ours = cp_relative_error(kernel, weights, factors)
    with pytorch_backend():
        start = time.perf_counter()
        cp = parafac(kernel, rank, n_iter_max=100, init="svd", l2_reg=1e-5)
        theirs_s = time.perf_counter() - start
        theirs = float((kernel - tl.cp_to_tensor(cp)).norm() / kernel.norm())
    assert ours <= 1.05 * theirs, (ours, theirs)
    assert ours_s < theirs_s, (ours_s, theirs_s)


@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_tensorized_layers_use_the_fast_cp_and_decomposition_kwargs_select_parafac(layer, monkeypatch):
    import trinity_lightning.tensor.layers as layers

    calls: list[int] = []
    original = layers.cp_als
    monkeypatch.setattr(layers, "cp_als", lambda t, r: calls.append(r) or original(t, r))
    torch.manual_seed(0)
    dense = nn.Conv2d(8, 8, 3) if layer == "conv" else nn.Linear(16, 12)
    build = TensorizedConv.from_dense if layer == "conv" else TensorizedLinear.from_dense
    fast = build(dense, "cp", 0.5)
    assert len(calls) == 1
    rebuilt = fast.to_dense().weight.detach()
    weight = dense.weight.detach()
    assert float((rebuilt - weight).norm() / weight.norm()) < 0.9
    build(dense, "cp", 0.5, decomposition_kwargs={"n_iter_max": 5})
    assert len(calls) == 1  # TensorLy's parafac, as before
