"""Constructor orders (issue 13): ``in_channels, num_classes`` everywhere; old keyword calls keep working."""

from __future__ import annotations

import inspect

import pytest
import torch

from trinity_lightning.models import Classifier, SmallCNN
from trinity_lightning.models.resnet import CifarResNet
from trinity_lightning.nrm import NRM, RenderingCNN
from trinity_lightning.tensor import TensorHeadCNN


@pytest.mark.parametrize("cls", [SmallCNN, CifarResNet, RenderingCNN, TensorHeadCNN, Classifier, NRM])
def test_in_channels_comes_before_num_classes(cls):
    names = [n for n in inspect.signature(cls).parameters if n != "model"]
    assert names[:2] == ["in_channels", "num_classes"], names


def test_old_keyword_calls_build_the_same_models():
    torch.manual_seed(0)
    old = Classifier(num_classes=3, lr=0.1, weight_decay=0.0, in_channels=2, image_size=8, channels=(4,))
    torch.manual_seed(0)
    new = Classifier(in_channels=2, num_classes=3, image_size=8, channels=(4,), lr=0.1, weight_decay=0.0)
    assert old.hparams == new.hparams
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))
    assert NRM(num_classes=3, in_channels=2, image_size=8, layers=[4, "M"]).net.num_classes == 3
    net = CifarResNet(depth=8, num_classes=7, in_channels=1, width=4)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 7)
    assert CifarResNet(1, 7, depth=8, width=4)(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


def test_old_positional_calls_fail_loudly_instead_of_swapping():
    with pytest.raises(TypeError):
        Classifier(None, 3)  # was (model, num_classes); now keyword-only after `model`
    with pytest.raises(TypeError):
        NRM(10, 1)  # was (num_classes, in_channels): keyword-only now, never silently swapped
