"""Lipschitz-bounded layers: spectral normalization with a per-layer bound, certified and empirical bounds.

torch's ``spectral_norm`` parametrization divides a weight by a power-iteration estimate of its top singular value
(one iteration per training forward, frozen in eval). That estimate is a *lower* bound of the true norm, so the
normalized layer's norm can exceed the intended bound, and for a convolution it normalizes the kernel reshaped to
a matrix, which is not the convolution's operator norm. Here the *certified* bound is therefore computed from the
exact norms of the weights actually used (``torch.linalg.matrix_norm(ord=2)`` for linear layers, the FFT operator
norm for convolutions), and the empirical bound is a lower bound found by gradient ascent on the input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_bound(bound: float, name: str = "layer_bound") -> float:
    """Return ``bound`` as a float, or raise ``ValueError`` when it is not a finite number > 0."""
    value = float(bound)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: expected a finite per-layer Lipschitz bound > 0, got {bound!r}")
    return value


class _Scale(nn.Module):
    """Parametrization ``W -> bound * W`` (chained after a normalization)."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.bound


class ConvOperatorNorm(nn.Module):
    """Parametrization dividing a convolution kernel by its *operator* norm (not the reshaped kernel's norm).

    A zero-padded, strided convolution on inputs of spatial size ``n`` is bounded by the circular convolution on
    size ``n + 2 * padding`` (embed, convolve, crop/subsample), whose singular values are those of the per-frequency
    ``out x in`` matrices of the kernel's FFT (Sedghi, Gupta & Long, ICLR 2019). The top one is estimated by one
    batched power iteration per training forward (persistent vectors, frozen in eval), like torch's
    ``spectral_norm``; :func:`layer_norm` computes it exactly. The input size is recorded by a forward pre-hook.
    """

    input_size: torch.Tensor
    _v: torch.Tensor

    def __init__(self, conv: nn.Module, n_power_iterations: int = 1) -> None:
        super().__init__()
        self.padding = _padding(conv)
        self.n_power_iterations = n_power_iterations
        self.register_buffer("input_size", torch.zeros(len(self.padding), dtype=torch.long))
        self.register_buffer("_v", torch.zeros(0, dtype=torch.complex64))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        saved = state_dict.get(prefix + "_v")
        if saved is not None:  # its shape depends on the input size seen: take the checkpoint's
            self._v = torch.empty_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def grid(self, weight: torch.Tensor) -> list[int]:
        """FFT size per spatial dim: recorded input size + 2 padding, at least the kernel size."""
        kernel = weight.shape[2:]
        sizes = [int(s) for s in self.input_size.tolist()]
        return [max(s + 2 * p if s > 0 else 2 * k, k) for s, p, k in zip(sizes, self.padding, kernel)]

    def frequency_matrices(self, weight: torch.Tensor) -> torch.Tensor:
        """``[F, out, in]`` complex matrices whose singular values are the circular convolution's."""
        grid = self.grid(weight)
        dims = tuple(range(2, weight.dim()))
        spectrum = torch.fft.fftn(weight, s=grid, dim=dims)
        return spectrum.flatten(2).permute(2, 0, 1)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mats = self.frequency_matrices(weight)
        with torch.no_grad():
            if self._v.shape != (mats.shape[0], mats.shape[2]):
                gen = torch.Generator().manual_seed(0)
                real = torch.randn(mats.shape[0], mats.shape[2], generator=gen)
                self._v = real.to(mats.dtype).to(weight.device)
            if self.training:
                v = self._v
                for _ in range(self.n_power_iterations):
                    u = torch.einsum("foi,fi->fo", mats, v)
                    v = torch.einsum("foi,fo->fi", mats.conj(), u)
                    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
                self._v = v
        u = torch.einsum("foi,fi->fo", mats, self._v.detach())
        sigma = u.norm(dim=1).max()
        return weight / sigma.clamp_min(1e-12)


def _padding(conv: Any) -> tuple[int, ...]:
    dims = len(conv.kernel_size)
    pad = conv.padding
    if isinstance(pad, str):  # "same": at most the kernel extent on each side; "valid": none
        eff = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return tuple(e if pad == "same" else 0 for e in eff)
    return tuple(int(p) for p in pad) if isinstance(pad, tuple) else (int(pad),) * dims


def _record_input_size(module: Any, args: tuple[torch.Tensor, ...]) -> None:
    norm = module.parametrizations.weight[0]
    size = torch.tensor(args[0].shape[2:], dtype=torch.long, device=norm.input_size.device)
    if not torch.equal(norm.input_size, size):
        norm.input_size.copy_(size)


def unsupported_reason(module: nn.Module) -> str | None:
    """Why :func:`spectral_normalize` cannot handle ``module`` (``None`` when it can)."""
    if isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return "lazy layer (run a forward first)"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "transposed convolution"
    if parametrize.is_parametrized(module, "weight"):
        return "weight already parametrized"
    if isinstance(module, _CONVS):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} (only 'zeros' is certified)"
    return None


def spectral_normalize(module: nn.Module, bound: float = 1.0, n_power_iterations: int = 1) -> nn.Module:
    """Normalize ``module``'s weight to spectral norm ``bound`` in place and return it.

    ``nn.Linear`` uses torch's ``spectral_norm`` parametrization; ``nn.Conv{1,2,3}d`` (zeros padding, groups=1)
    uses :class:`ConvOperatorNorm`, the operator norm of the convolution. Both are then scaled by ``bound``.

    Example:
        >>> layer = spectral_normalize(nn.Linear(4, 3), bound=2.0)
        >>> round(layer_norm(layer), 1) <= 2.0 + 0.5
        True
    """
    bound = check_bound(bound)
    reason = unsupported_reason(module)
    if reason is not None:
        raise ValueError(f"spectral_normalize: cannot normalize {type(module).__name__}: {reason}")
    if isinstance(module, nn.Linear):
        _torch_spectral_norm(module, n_power_iterations=n_power_iterations)
    elif isinstance(module, _CONVS):
        parametrize.register_parametrization(module, "weight", ConvOperatorNorm(module, n_power_iterations))
        module.register_forward_pre_hook(_record_input_size)
    else:
        raise ValueError(f"spectral_normalize: expected nn.Linear or nn.Conv1d/2d/3d, got {type(module).__name__}")
    parametrize.register_parametrization(module, "weight", _Scale(bound))
    return module


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Evaluate parametrizations without a power-iteration step (no side effect on their vectors)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def layer_norm(module: nn.Module, input_size: Sequence[int] | None = None) -> float:
    """Exact spectral norm of the weight a linear or conv layer uses now (operator norm for convolutions).

    For a convolution the bound is the circular convolution's on ``input_size + 2 * padding`` (recorded at the
    last forward of a normalized layer; else ``input_size``, or twice the kernel when neither is known), which
    bounds the zero-padded, strided convolution from above.

    Example:
        >>> round(layer_norm(nn.Linear(3, 3).requires_grad_(False).eval()), 3) > 0
        True
    """
    with _frozen(module):
        weight: torch.Tensor = getattr(module, "weight").detach()  # noqa: B009 - typed as Tensor | Module
    if isinstance(module, nn.Linear):
        return float(torch.linalg.matrix_norm(weight.double(), ord=2))
    if isinstance(module, _CONVS):
        norm = ConvOperatorNorm(module)
        if parametrize.is_parametrized(module, "weight"):
            norm.input_size.copy_(getattr(module, "parametrizations").weight[0].input_size)  # noqa: B009
        if input_size is not None:
            norm.input_size.copy_(torch.tensor(list(input_size), dtype=torch.long))
        mats = norm.frequency_matrices(weight.double())
        return float(torch.linalg.matrix_norm(mats, ord=2).max())
    raise ValueError(f"layer_norm: expected nn.Linear or nn.Conv1d/2d/3d, got {type(module).__name__}")


def certified_bound(model: nn.Module) -> float:
    """Product of the exact norms of ``model``'s linear and conv layers.

    A Lipschitz bound (2-norm) of the network when those layers are composed in sequence with 1-Lipschitz
    activations (ReLU, tanh; no BatchNorm, no residual sums), as in :class:`LipschitzMLP`.
    """
    bound = 1.0
    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONVS)):
            bound *= layer_norm(module)
    return bound


def empirical_lipschitz(
    model: nn.Module,
    low: torch.Tensor | Sequence[float],
    high: torch.Tensor | Sequence[float],
    *,
    starts: int = 64,
    steps: int = 100,
    lr: float = 0.05,
    seed: int = 0,
) -> float:
    """A lower bound of ``model``'s Lipschitz constant on the box ``[low, high]`` by gradient ascent on the input.

    Maximizes ``|f(x) - f(y)| / |x - y|`` over ``starts`` pairs of points (Adam on ``x`` and ``y``, kept in the
    box), and also reads the Jacobian's norm at the points visited; returns the largest ratio seen. Every value
    is attained, so it never exceeds the true constant (and hence :func:`certified_bound`).
    """
    lo = torch.as_tensor(low, dtype=torch.float32)
    hi = torch.as_tensor(high, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    x = (lo + (hi - lo) * torch.rand(starts, lo.numel(), generator=gen)).requires_grad_(True)
    y = (x.detach() + 0.05 * (hi - lo) * torch.randn(starts, lo.numel(), generator=gen)).requires_grad_(True)
    opt = torch.optim.Adam([x, y], lr=lr)
    best = 0.0
    params = [p.requires_grad for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for _ in range(steps):
            diff = (x - y).norm(dim=1).clamp_min(1e-6)
            ratio = (model(x) - model(y)).norm(dim=1) / diff
            best = max(best, float(ratio.detach().max()))
            opt.zero_grad()
            (-ratio.sum()).backward()
            opt.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
                y.copy_(torch.maximum(torch.minimum(y, hi), lo))
        jac = torch.func.vmap(torch.func.jacrev(lambda z: model(z.unsqueeze(0)).squeeze(0)))(x.detach())
        best = max(best, float(torch.linalg.matrix_norm(jac, ord=2).max()))
    finally:
        for p, flag in zip(model.parameters(), params):
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
    return best


class LipschitzMLP(nn.Module):
    """A ReLU MLP whose every linear layer is spectrally normalized to a per-layer bound.

    With ``spectral_norm=True`` each ``nn.Linear`` carries torch's ``spectral_norm`` parametrization followed by a
    scale, so its norm is ``layer_bound`` up to the power-iteration error; :meth:`certified_bound` is the product
    of the exact norms actually used (the certificate), :meth:`empirical_bound` a lower bound by gradient ascent.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: hidden widths (depth = ``len(hidden) + 1`` linear layers).
        layer_bound: per-layer bound, one number or one per linear layer (each > 0).
        spectral_norm: normalize the layers (``False``: a plain MLP with the same shapes).
        n_power_iterations: power iterations per training forward (torch's default is 1).

    Example:
        >>> net = LipschitzMLP(3, 1, hidden=(16, 16), layer_bound=1.5)
        >>> net(torch.zeros(5, 3)).shape
        torch.Size([5, 1])
        >>> _ = [net(torch.randn(8, 3)) for _ in range(20)]  # training forwards run the power iteration
        >>> net.certified_bound() >= net.empirical_bound([-1.0] * 3, [1.0] * 3, steps=20)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64, 64),
        layer_bound: float | Sequence[float] = 1.0,
        spectral_norm: bool = True,
        n_power_iterations: int = 1,
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden, out_features]
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"LipschitzMLP: layer sizes must be >= 1, got {sizes}")
        n = len(sizes) - 1
        bounds = [layer_bound] * n if isinstance(layer_bound, (int, float)) else list(layer_bound)
        if len(bounds) != n:
            raise ValueError(f"layer_bound: expected one number or {n} (one per linear layer), got {len(bounds)}")
        self.layer_bounds = [check_bound(b) for b in bounds]
        self.spectral_norm = spectral_norm
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            linear = nn.Linear(a, b)
            if spectral_norm:
                spectral_normalize(linear, self.layer_bounds[i], n_power_iterations)
            layers.append(linear)
            if i < n - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def enforced_bound(self) -> float:
        """The product of the per-layer bounds (what spectral normalization aims at; not a certificate)."""
        return math.prod(self.layer_bounds) if self.spectral_norm else math.inf

    def layer_norms(self) -> list[float]:
        """Exact spectral norm of each linear layer's weight as used now."""
        return [layer_norm(m) for m in self.net if isinstance(m, nn.Linear)]

    def certified_bound(self) -> float:
        """Certified Lipschitz bound (2-norm): the product of the exact layer norms."""
        return math.prod(self.layer_norms())

    def empirical_bound(
        self, low: torch.Tensor | Sequence[float], high: torch.Tensor | Sequence[float], **kwargs: float
    ) -> float:
        """Lower bound of the Lipschitz constant on a box, by gradient ascent (see :func:`empirical_lipschitz`)."""
        return empirical_lipschitz(self, low, high, **kwargs)  # type: ignore[arg-type]
