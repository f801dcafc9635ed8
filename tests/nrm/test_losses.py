"""Max-min cross-entropy gradients, RPN zero/positive, the reconstruction loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trinity_lightning.nrm import RenderingCNN, max_min_cross_entropy, reconstruction_loss, rendering_path_normalization


def test_max_min_gradients_have_the_signs_the_definition_implies():
    torch.manual_seed(0)
    z_max = torch.randn(6, 4, requires_grad=True)
    z_min = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = max_min_cross_entropy(z_max, z_min, y, alpha_max=1.0, alpha_min=0.5)
    g_max, g_min = torch.autograd.grad(loss, [z_max, z_min])
    correct = F.one_hot(y, 4).bool()
    # descending the loss raises the correct class's Max score (maximizes its posterior) ...
    assert (g_max[correct] < 0).all() and (g_max[~correct] > 0).all()
    # ... and lowers every incorrect class's Min score (minimizes the incorrect posteriors on their worst paths)
    assert (g_min[~correct] > 0).all() and (g_min[correct] < 0).all()
    # exactly alpha * (softmax - onehot) / N for each network
    expected_min = 0.5 * (z_min.softmax(1) - correct.float()) / 6
    assert torch.allclose(g_min, expected_min, atol=1e-7)
    assert torch.allclose(g_max, (z_max.softmax(1) - correct.float()) / 6, atol=1e-7)


def test_max_min_reduces_to_cross_entropy():
    z = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    plain = F.cross_entropy(z, y)
    assert torch.allclose(max_min_cross_entropy(z, None, y), plain)
    assert torch.allclose(max_min_cross_entropy(z, torch.randn(5, 3), y, alpha_min=0.0), plain)
    assert torch.allclose(max_min_cross_entropy(z, z, y, 1.0, 1.0), 2 * plain)
    with pytest.raises(ValueError, match="alpha_max, alpha_min"):
        max_min_cross_entropy(z, z, y, alpha_min=-1.0)


def _trained_net(slope: float = 0.1) -> RenderingCNN:
    torch.manual_seed(0)
    net = RenderingCNN(1, 4, image_size=8, layers=[6, "M", 8], slope=slope).double()
    with torch.no_grad():
        for block in net.blocks:
            block.bn.bias.uniform_(-1, 1)  # non-zero NRM biases (the prior's parameters)
    net.train()
    net.infer(torch.randn(32, 1, 8, 8, dtype=torch.double) + 0.5)
    return net.eval()


def _rpn(net: RenderingCNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    path = net.infer(x)
    top = F.one_hot(y, 4).double()
    _, levels = net.render(top, path)
    _, prior = net.render(top, net.prior_latents(path), path.scales)
    return rendering_path_normalization(levels, prior, path.biases)


def test_rpn_is_zero_on_the_prior_path_and_positive_off_it():
    net = _trained_net()
    y = torch.tensor([0, 1, 2])
    # a blank image is explained by the prior alone: its inferred path is the prior's path
    assert torch.equal(_rpn(net, torch.zeros(3, 1, 8, 8, dtype=torch.double), y), torch.zeros(3, dtype=torch.double))
    # images that switch units away from the prior's choice pay a positive price
    rpn = _rpn(net, torch.randn(3, 1, 8, 8, dtype=torch.double), y)
    assert (rpn > 0).all()


def test_rpn_is_zero_without_biases_or_without_switching():
    x, y = torch.randn(3, 1, 8, 8, dtype=torch.double), torch.tensor([0, 1, 3])
    net = _trained_net()
    for block in net.blocks:  # zero NRM biases: BatchNorm shift and running mean
        block.bn.bias.data.zero_()
        block.bn.running_mean.zero_()
    assert torch.equal(_rpn(net, x, y), torch.zeros(3, dtype=torch.double))
    # a linear network (every unit always renders) has a single rendering path
    linear = RenderingCNN(1, 4, image_size=8, layers=[6, 8], slope=0.0).double().eval()
    with torch.no_grad():
        linear.blocks[0].bn.bias.fill_(5.0)  # large biases keep all units on for small inputs
        linear.blocks[1].bn.bias.fill_(5.0)
    assert torch.equal(_rpn(linear, 0.01 * x, y), torch.zeros(3, dtype=torch.double))


def test_rpn_is_nonnegative_and_checks_levels():
    mu = [torch.randn(2, 3, 4, 4)]
    assert (rendering_path_normalization(mu, [torch.randn(2, 3, 4, 4)], [torch.randn(3)]) >= 0).all()
    with pytest.raises(ValueError, match="levels"):
        rendering_path_normalization(mu, [], [torch.randn(3)])


def test_reconstruction_loss_fits_the_noise_scale():
    x = torch.randn(4, 1, 5, 5)
    r = torch.randn(4, 1, 5, 5)
    assert torch.allclose(reconstruction_loss(3.0 * r, x), reconstruction_loss(r, x), atol=1e-6)
    assert torch.allclose(reconstruction_loss(0.25 * x, x), torch.zeros(4), atol=1e-6)
    assert torch.allclose(reconstruction_loss(r, x, fit_scale=False), (r - x).pow(2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="rendered"):
        reconstruction_loss(r, x[:2])
