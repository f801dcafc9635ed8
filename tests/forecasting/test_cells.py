"""TT cells: the mode-by-mode contraction equals the full-outer-product reference and the dense TT tensor."""

from __future__ import annotations

import pytest
import torch

from trinity_lightning.forecasting import (
    TLSTMCell,
    TTRNNCell,
    TTTransition,
    full_outer_product_contract,
    tt_contract,
)


@pytest.mark.parametrize(("order", "rank"), [(1, 3), (2, 2), (3, 4), (3, (2, 3, 4))])
def test_mode_by_mode_contraction_equals_the_full_outer_product(order, rank):
    torch.manual_seed(order)
    tt = TTTransition(state_dim=3 * 4 + 1, out_features=5, order=order, rank=rank, init_scale=1.0)
    s = torch.cat([torch.ones(6, 1), torch.randn(6, 12)], dim=1)
    ours = tt(s)
    reference = full_outer_product_contract(tt.first, list(tt.cores), s)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)
    dense = tt.full_weight()  # tensorly's tt_to_tensor, contracted with s in every mode
    outer = s
    for _ in range(order - 1):
        outer = torch.einsum("n...,nd->n...d", outer, s)
    assert torch.allclose(ours, outer.reshape(6, -1) @ dense.reshape(5, -1).T, atol=1e-5, rtol=1e-5)


def test_gradients_agree_with_the_reference():
    torch.manual_seed(0)
    tt = TTTransition(9, 4, order=3, rank=3, init_scale=1.0).double()
    s = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    (g_ours,) = torch.autograd.grad(tt(s).square().sum(), s)
    (g_ref,) = torch.autograd.grad(full_outer_product_contract(tt.first, list(tt.cores), s).square().sum(), s)
    assert torch.allclose(g_ours, g_ref, atol=1e-10)


def test_constant_entry_makes_a_linear_rnn_a_special_case():
    first = torch.randn(2, 1)
    core = torch.zeros(1, 3, 1)
    core[0, 0, 0] = 1.0  # only the constant: W(s) = first
    s = torch.tensor([[1.0, 5.0, -2.0]])
    assert torch.allclose(tt_contract(first, [core, core], s), first.T)


def test_cells_shift_their_lags_and_run_a_sequence():
    cell = TTRNNCell(2, 4, lags=3, order=2, rank=2)
    state = cell.initial_state(3)
    outputs = []
    for _ in range(4):
        h, state = cell(torch.randn(3, 2), state)
        outputs.append(h)
    (lagged,) = state
    assert torch.equal(lagged[:, 0], outputs[-1]) and torch.equal(lagged[:, 2], outputs[-3])
    lstm = TLSTMCell(2, 4, lags=2, order=3, rank=2)
    h, (lagged, _c) = lstm(torch.randn(3, 2), lstm.initial_state(3))
    assert h.abs().max() < 1 and lagged.shape == (3, 2, 4)


def test_bad_cell_arguments():
    with pytest.raises(ValueError, match="rank: expected one positive int or 3 of them"):
        TTTransition(5, 2, order=3, rank=(2, 2))
    with pytest.raises(ValueError, match="lags: expected >= 1"):
        TLSTMCell(2, 4, lags=0)
    with pytest.raises(ValueError, match="does not match the state dimension"):
        tt_contract(torch.ones(1, 1), [torch.ones(1, 3, 1)], torch.ones(2, 4))


def test_memory_benchmark_counts_the_outer_product_and_agrees():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import forecasting as bench

    out = bench.run_memory(quick=True)  # H=16, L=3, P=3, rank 4, batch 4: 49^3 entries per sample
    assert out["details"]["equal_to_1e-5"]
    assert out["details"]["reference_largest_bytes"] >= 4 * 49**3 * 4  # the outer product itself was formed
    assert out["claim"]["ratio"] > 10
