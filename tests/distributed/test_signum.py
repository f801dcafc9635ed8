"""Signum: the update rule, decoupled weight decay, state_dict, errors; the small CIFAR ResNet."""

from __future__ import annotations

import copy

import pytest
import torch

from trinity_lightning.distributed import Signum
from trinity_lightning.models.resnet import CifarResNet


def test_signum_matches_the_reference_rule_over_steps():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50))
    x, m = w.detach().clone(), torch.zeros(50)
    opt = Signum([w], lr=0.01, momentum=0.9, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(50)
        w.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        x = x - 0.01 * (torch.sign(m) + 0.1 * x)
    torch.testing.assert_close(w.detach(), x)


def test_momentum_zero_is_signsgd_and_zero_gradient_does_not_move():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    opt = Signum([w], lr=0.5, momentum=0.0)
    w.grad = torch.tensor([-4.0, 0.0, 1e-9])
    opt.step()
    assert w.detach().tolist() == [1.5, 2.0, 2.5]
    assert not opt.state  # no momentum buffer for signSGD


def test_state_dict_round_trip_gives_identical_updates():
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(20))
    opt = Signum([a], lr=0.1, momentum=0.5)
    for _ in range(3):
        a.grad = torch.randn(20)
        opt.step()
    b = torch.nn.Parameter(a.detach().clone())
    clone = Signum([b], lr=0.1, momentum=0.5)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))  # as after torch.save / torch.load
    g = torch.randn(20)
    a.grad, b.grad = g.clone(), g.clone()
    opt.step()
    clone.step()
    assert torch.equal(a, b)


def test_errors_name_the_argument():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr"):
        Signum(p, lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Signum(p, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        Signum(p, weight_decay=-1.0)
    emb = torch.nn.Embedding(5, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        Signum(emb.parameters()).step()


def test_cifar_resnet_shapes_and_depth_check():
    net = CifarResNet(depth=14, width=4, num_classes=7, in_channels=1)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 7)
    assert len(net.stages) == 6
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(depth=10)


def test_warnings_of_the_hook_skip_library_frames():
    """``user_stacklevel`` skips torch/Lightning/our frames, so a NaN warning names the user's line."""
    import os
    import warnings

    from trinity_lightning.distributed.hook import user_stacklevel

    namespace = {"user_stacklevel": user_stacklevel, "warnings": warnings}
    library_file = os.path.join(os.path.dirname(torch.__file__), "autograd", "fake_graph.py")
    code = "def engine():\n    warnings.warn('signSGD: NaN', RuntimeWarning, stacklevel=user_stacklevel())\n"
    exec(compile(code, library_file, "exec"), namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        namespace["engine"]()  # the "user" line
    assert [w.filename for w in caught] == [__file__]
