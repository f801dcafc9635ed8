"""Tensor-train recurrent cells (Yu, Zheng, Anandkumar, Yue, "Long-term Forecasting using Higher Order Tensor
RNNs", arXiv 1711.00073): a transition that uses every order-``P`` monomial of ``L`` lagged hidden states.

With ``s = [1, h_{t-1}, ..., h_{t-L}]`` (dimension ``D = H L + 1``) the transition is ``W(s, ..., s)`` for an
``(out, D, ..., D)`` weight tensor ``W`` stored as a tensor train: a first factor ``(out, r_0)`` and ``P`` cores
``(r_{p-1}, D, r_p)`` with ``r_P = 1``. :func:`tt_contract` contracts ``s`` into the cores mode by mode, from the
last to the first, in ``O(P D r^2)`` per sample; the full outer product ``s ⊗ ... ⊗ s`` (``D^P`` numbers per
sample: 7.2 M at ``H=64, L=3, P=3``) is never formed. :func:`full_outer_product_contract` is the reference
computation that forms it (as the TensorFlow reference code does), kept for tests and the memory benchmark.

Every cell maps ``(x_t, state) -> (h_t, state)`` with ``state`` a tuple of tensors from ``initial_state``.

Example:
    >>> cell = TLSTMCell(input_size=3, hidden_size=8, lags=3, order=3, rank=2)
    >>> state = cell.initial_state(5)
    >>> h, state = cell(torch.randn(5, 3), state)
    >>> tuple(h.shape), tuple(state[0].shape)
    ((5, 8), (5, 3, 8))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TLSTMCell", "TTRNNCell", "TTTransition", "full_outer_product_contract", "tt_contract"]

State = tuple[torch.Tensor, ...]


def tt_contract(first: torch.Tensor, cores: Sequence[torch.Tensor], s: torch.Tensor) -> torch.Tensor:
    """``W(s, ..., s)`` for a tensor-train ``W``, contracted mode by mode (never forming ``s ⊗ ... ⊗ s``).

    Args:
        first: ``(out, r_0)``.
        cores: ``P`` tensors ``(r_{p-1}, D, r_p)``, the last with ``r_P = 1``.
        s: ``(batch, D)``.

    Returns:
        ``(batch, out)``; the largest intermediate is ``(batch, r_{p-1} r_p)``.

    Example:
        >>> first, cores = torch.ones(1, 1), [torch.ones(1, 2, 1)] * 2
        >>> tt_contract(first, cores, torch.tensor([[1.0, 2.0]]))  # (1 + 2) ** 2
        tensor([[9.]])
    """
    batch, dim = s.shape
    v = s.new_ones(batch, 1)
    for core in reversed(cores):
        a, d, b = core.shape
        if d != dim:
            raise ValueError(f"core of shape {tuple(core.shape)} does not match the state dimension {dim}")
        # (batch, D) @ (D, a*b) -> (batch, a, b), then against v (batch, b) -> (batch, a)
        t = (s @ core.permute(1, 0, 2).reshape(d, a * b)).view(batch, a, b)
        v = torch.bmm(t, v.unsqueeze(-1)).squeeze(-1)
    return v @ first.t()


def full_outer_product_contract(first: torch.Tensor, cores: Sequence[torch.Tensor], s: torch.Tensor) -> torch.Tensor:
    """The reference computation: form ``s ⊗ ... ⊗ s`` (``batch × D^P``) and contract it with the cores.

    Same result as :func:`tt_contract` at ``D^P`` times the memory; kept as the test and benchmark reference.

    Example:
        >>> first, cores = torch.ones(1, 1), [torch.ones(1, 2, 1)] * 2
        >>> full_outer_product_contract(first, cores, torch.tensor([[1.0, 2.0]]))
        tensor([[9.]])
    """
    batch, dim = s.shape
    outer = s
    for _ in range(len(cores) - 1):
        outer = (outer.unsqueeze(-1) * s.view(batch, *([1] * (outer.dim() - 1)), dim)).contiguous()
    # outer: (batch, D, ..., D); contract mode 1 with the first core, keeping its left rank a0 free
    rest = outer.reshape(batch, dim, -1)
    a0, _, b = cores[0].shape
    y = torch.einsum("nir,aib->nabr", rest, cores[0])  # (batch, a0, r_1, D^(P-1))
    for core in cores[1:]:
        _, _, c = core.shape
        y = y.reshape(batch, a0, b, dim, -1)
        y = torch.einsum("nabir,bic->nacr", y, core)
        b = c
    return y.reshape(batch, a0) @ first.t()


class TTTransition(nn.Module):
    """``W(s, ..., s)`` with ``W`` an ``(out_features, D, ..., D)`` tensor train of order ``order`` and ranks ``rank``.

    The cores start as the identity on the constant entry of ``s`` plus ``N(0, init_scale / D)`` noise, so the
    transition starts close to a constant and low-order terms, which keeps the products from exploding.

    Args:
        state_dim: ``D`` (``hidden * lags + 1``).
        out_features: output size.
        order: ``P``, the number of times ``s`` is contracted.
        rank: the TT rank (an int for all bonds, or ``order`` ints for ``r_0 .. r_{P-1}``).
        init_scale: standard deviation of the core noise times ``sqrt(D)``.

    Example:
        >>> tt = TTTransition(state_dim=7, out_features=4, order=3, rank=2)
        >>> tuple(tt(torch.randn(5, 7)).shape), tt.full_weight().shape
        ((5, 4), torch.Size([4, 7, 7, 7]))
    """

    def __init__(
        self, state_dim: int, out_features: int, order: int = 3, rank: int | Sequence[int] = 4, init_scale: float = 0.5
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order: expected >= 1, got {order}")
        ranks = [int(rank)] * order if isinstance(rank, int) else [int(r) for r in rank]
        if len(ranks) != order or min(ranks) < 1:
            raise ValueError(f"rank: expected one positive int or {order} of them, got {rank!r}")
        bonds = [*ranks, 1]
        self.state_dim, self.out_features, self.order, self.ranks = state_dim, out_features, order, tuple(ranks)
        self.first = nn.Parameter(torch.randn(out_features, bonds[0]) / math.sqrt(bonds[0]))
        cores = []
        for p in range(order):
            core = torch.randn(bonds[p], state_dim, bonds[p + 1]) * (init_scale / math.sqrt(state_dim))
            core[:, 0, :] += torch.eye(bonds[p], bonds[p + 1])
            cores.append(nn.Parameter(core))
        self.cores = nn.ParameterList(cores)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``(batch, D) -> (batch, out_features)``, contracted mode by mode."""
        return tt_contract(self.first, list(self.cores), s)

    def full_weight(self) -> torch.Tensor:
        """The dense ``(out, D, ..., D)`` tensor (tests only: it has ``out * D^P`` entries)."""
        import tensorly as tl

        with tl.backend_context("pytorch"):
            dense = tl.tt_to_tensor([self.first.unsqueeze(0), *self.cores])
        return dense.reshape(self.out_features, *([self.state_dim] * self.order))


class _TTCell(nn.Module):
    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        lags: int = 3,
        order: int = 3,
        rank: int | Sequence[int] = 4,
        init_scale: float = 0.5,
    ) -> None:
        super().__init__()
        if lags < 1:
            raise ValueError(f"lags: expected >= 1, got {lags}")
        self.input_size, self.hidden_size, self.lags, self.order = input_size, hidden_size, lags, order
        self.input = nn.Linear(input_size, self.gates * hidden_size)
        self.transition = TTTransition(hidden_size * lags + 1, self.gates * hidden_size, order, rank, init_scale)

    def _preactivation(self, x: torch.Tensor, lagged: torch.Tensor) -> torch.Tensor:
        batch = lagged.shape[0]
        s = torch.cat([lagged.new_ones(batch, 1), lagged.reshape(batch, -1)], dim=1)
        return self.input(x) + self.transition(s)

    @staticmethod
    def _shift(lagged: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.unsqueeze(1), lagged[:, :-1]], dim=1)


class TTRNNCell(_TTCell):
    """Tensor-train RNN cell: ``h_t = tanh(W_x x_t + b + W(s, ..., s))``, ``s = [1, h_{t-1}, ..., h_{t-L}]``.

    Args:
        input_size: size of ``x_t``.
        hidden_size: ``H``.
        lags: ``L``, how many past hidden states enter the transition.
        order: ``P``, the order of the monomials of ``s``.
        rank: TT rank(s).
        init_scale: see :class:`TTTransition`.

    Example:
        >>> cell = TTRNNCell(2, 4, lags=2, order=2, rank=3)
        >>> h, (lagged,) = cell(torch.randn(3, 2), cell.initial_state(3))
        >>> torch.equal(lagged[:, 0], h)
        True
    """

    def initial_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Zero lagged states ``(batch, L, H)``."""
        return (torch.zeros(batch, self.lags, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``(batch, input_size)`` -> ``h_t`` ``(batch, H)`` and the shifted lags."""
        (lagged,) = state
        h = torch.tanh(self._preactivation(x, lagged))
        return h, (self._shift(lagged, h),)


class TLSTMCell(_TTCell):
    """Tensor-train LSTM cell: the higher-order TT transition inside every gate (input, forget, cell, output).

    The four gates share the TT cores and differ in the first factor (one TT with ``4H`` outputs).

    Args:
        input_size: size of ``x_t``.
        hidden_size: ``H``.
        lags: ``L``.
        order: ``P``.
        rank: TT rank(s).
        init_scale: see :class:`TTTransition`.

    Example:
        >>> cell = TLSTMCell(2, 4, lags=3, order=2, rank=2)
        >>> h, (lagged, c) = cell(torch.randn(3, 2), cell.initial_state(3))
        >>> tuple(lagged.shape), tuple(c.shape)
        ((3, 3, 4), (3, 4))
    """

    gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        lags: int = 3,
        order: int = 3,
        rank: int | Sequence[int] = 4,
        init_scale: float = 0.5,
    ) -> None:
        super().__init__(input_size, hidden_size, lags, order, rank, init_scale)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015)
            self.input.bias[hidden_size : 2 * hidden_size].fill_(1.0)

    def initial_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Zero lagged hidden states ``(batch, L, H)`` and a zero cell state ``(batch, H)``."""
        lagged = torch.zeros(batch, self.lags, self.hidden_size, device=device, dtype=dtype)
        return lagged, torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``(batch, input_size)`` -> ``h_t`` and ``(lags, c_t)``."""
        lagged, c = state
        i, f, g, o = self._preactivation(x, lagged).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (self._shift(lagged, h), c)
