from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trinity_lightning.lander import LipschitzMLP, certified_bound, empirical_lipschitz, layer_norm, spectral_normalize


def _warm(net: nn.Module, n: int = 30, d: int = 3) -> None:
    for _ in range(n):  # power iterations run on training forwards
        net(torch.randn(16, d))


def test_sn_layer_norms_are_at_the_per_layer_bound_and_certified_covers_empirical():
    torch.manual_seed(0)
    net = LipschitzMLP(3, 2, hidden=(32, 32, 32), layer_bound=[2.0, 1.5, 1.0, 0.5])
    _warm(net)
    norms = net.layer_norms()
    assert norms == pytest.approx([2.0, 1.5, 1.0, 0.5], rel=1e-3)
    assert net.enforced_bound() == pytest.approx(1.5)
    certified = net.certified_bound()
    empirical = net.empirical_bound([-2.0] * 3, [2.0] * 3, steps=60)
    assert certified == pytest.approx(math.prod(norms))
    assert 0 < empirical <= certified + 1e-6
    assert certified_bound(net) == pytest.approx(certified)


def test_without_sn_the_bound_is_not_enforced_but_still_certified():
    torch.manual_seed(0)
    net = LipschitzMLP(3, 1, hidden=(32, 32), spectral_norm=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(5.0)
    assert net.enforced_bound() == math.inf
    assert net.certified_bound() > 10
    assert empirical_lipschitz(net, [-1.0] * 3, [1.0] * 3, steps=40) <= net.certified_bound() + 1e-6


def test_empirical_bound_is_tight_for_a_linear_map():
    layer = nn.Linear(4, 3)
    exact = layer_norm(layer)
    assert empirical_lipschitz(layer, [-1.0] * 4, [1.0] * 4, steps=80, lr=0.1) == pytest.approx(exact, rel=0.02)


def test_conv_uses_the_operator_norm_not_the_reshaped_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    op = layer_norm(conv, input_size=(8, 8))
    # true operator norm by many power iterations on the convolution itself
    v = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        for _ in range(300):
            u = conv._conv_forward(v, conv.weight, None)
            v = nn.functional.conv_transpose2d(u, conv.weight, padding=1)
            v = v / v.norm()
        true = float(conv._conv_forward(v, conv.weight, None).norm())
    reshaped = float(torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2))
    assert op >= true - 1e-4  # an upper bound (certificate) ...
    assert op <= 1.2 * true  # ... close to the truth
    assert reshaped < true  # the reshaped kernel underestimates the operator
    spectral_normalize(conv, bound=1.0)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(30):
        conv(x)
    assert layer_norm(conv) == pytest.approx(1.0, rel=1e-3)
    with torch.no_grad():  # the normalized operator is 1-Lipschitz on real inputs
        a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
        assert float((conv(a) - conv(b)).norm()) <= float((a - b).norm()) * (1 + 1e-4)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_bad_bound_is_refused(bad):
    with pytest.raises(ValueError, match="layer_bound: expected a finite per-layer Lipschitz bound > 0"):
        LipschitzMLP(2, 1, hidden=(4,), layer_bound=bad)
    with pytest.raises(ValueError, match="layer_bound"):
        LipschitzMLP(2, 1, hidden=(4,), layer_bound=[1.0, bad])


def test_wrong_number_of_layer_bounds():
    with pytest.raises(ValueError, match="expected one number or 2"):
        LipschitzMLP(2, 1, hidden=(4,), layer_bound=[1.0, 1.0, 1.0])
