"""The rendering path: a hand-checked one-layer case, exact reconstruction in the noise-free limit, the adjoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trinity_lightning.nrm import RenderingCNN, parse_layers, reconstruction_loss


def _one_layer(weight: torch.Tensor, head: torch.Tensor, pool: bool = True) -> RenderingCNN:
    """conv 1x1 (no BatchNorm, zero bias) -> ReLU -> [2x2 max-pool] -> flatten -> linear (zero bias)."""
    channels = weight.shape[0]
    net = RenderingCNN(
        weight.shape[1],
        head.shape[0],
        image_size=2 if pool else 1,
        layers=[channels, "M"] if pool else [channels],
        kernel_size=1,
        slope=0.0,
        batch_norm=False,
    )
    with torch.no_grad():
        net.blocks[0].conv.weight.copy_(weight.view(channels, -1, 1, 1))
        net.blocks[0].conv.bias.zero_()
        net.head.weight.copy_(head)
        net.head.bias.zero_()
    return net.double()


def test_one_layer_rendering_checked_by_hand():
    # x = [[1, -3], [0.5, 2]], w = 2: pre-activations [[2, -6], [1, 4]], ReLU switches [[1, 0], [1, 1]],
    # max-pool keeps 4 at (1, 1); class 0 has template +1, class 1 has -1, so the logits are (4, -4).
    net = _one_layer(torch.tensor([[2.0]]), torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[[[1.0, -3.0], [0.5, 2.0]]]], dtype=torch.double)
    path = net.infer(x)
    assert path.logits.tolist() == [[4.0, -4.0]]
    assert path.latents.switches[0].tolist() == [[[[1.0, 0.0], [1.0, 1.0]]]]
    assert path.latents.positions[0].tolist() == [[[[3]]]]
    # rendering class 0: template 1, placed at the argmax (1, 1), kept by its switch, times w = 2
    rendered, levels = net.render(torch.tensor([[1.0, 0.0]], dtype=torch.double), path)
    assert rendered.tolist() == [[[[0.0, 0.0], [0.0, 2.0]]]]
    assert levels[0].tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]
    # the class score is the inner product of the image with its rendered template
    assert (rendered * x).sum().item() == pytest.approx(path.logits[0, 0].item())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rendering_reconstructs_exactly_in_the_noise_free_limit(seed):
    """Orthonormal templates, non-negative class templates, an image rendered by the model with zero noise:
    bottom-up inference recovers the latents it was rendered with and top-down rendering returns it exactly."""
    g = torch.Generator().manual_seed(seed)
    channels, size, classes = 6, 8, 3
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.double))
    templates = torch.rand(classes, channels * (size // 2) ** 2, generator=g, dtype=torch.double) + 0.1
    templates[torch.rand(templates.shape, generator=g) < 0.3] = 0.0  # units of a class that render nothing
    net = RenderingCNN(
        channels, classes, image_size=size, layers=[channels, "M"], kernel_size=1, slope=0.0, batch_norm=False
    ).double()
    with torch.no_grad():
        net.blocks[0].conv.weight.copy_(q.view(channels, channels, 1, 1))
        net.blocks[0].conv.bias.zero_()
        net.head.weight.copy_(templates)
    # the generative process: class y, one position t* per pooling window, switches s* (a unit renders where its
    # template is positive; a window that renders nothing leaves its position undetermined, and floating-point
    # round-off would then pick one at random, so s* is on at every chosen position)
    n = 5
    y = torch.randint(0, classes, (n,), generator=g)
    code = templates[y].view(n, channels, size // 2, size // 2)
    rows = torch.arange(size // 2).view(1, 1, -1, 1) * 2 + torch.randint(0, 2, code.shape, generator=g)
    cols = torch.arange(size // 2).view(1, 1, 1, -1) * 2 + torch.randint(0, 2, code.shape, generator=g)
    positions = rows * size + cols
    placed = F.max_unpool2d(code, positions, 2, output_size=(size, size))
    switches = torch.where(placed > 0, 1.0, (torch.rand(placed.shape, generator=g) < 0.5).double())
    hidden = placed * switches
    x = torch.einsum("cd,nchw->ndhw", q, hidden)  # x = Q^T h: the orthonormal 1x1 templates
    path = net.infer(x)
    rendered, _ = net.render(F.one_hot(y, classes).double(), path)
    assert torch.allclose(rendered, x, atol=1e-10)
    assert reconstruction_loss(rendered, x, fit_scale=False).max().item() < 1e-20
    # the switches and positions were recovered wherever the model rendered something
    assert torch.equal(path.latents.switches[0][hidden > 0], switches[hidden > 0])
    assert torch.equal(path.latents.positions[0][code > 0], positions[code > 0])


@pytest.mark.parametrize("head", ["flatten", "avgpool"])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_rendering_is_the_adjoint_of_inference(head, mode):
    """render(e_y) along the inferred latents = d logit_y / d x (BatchNorm in eval mode, biases anywhere)."""
    torch.manual_seed(0)
    net = RenderingCNN(3, 5, image_size=12, layers=[6, "M", 8, 8, "M"], head=head).double()
    net.train()
    net.infer(torch.randn(16, 3, 12, 12, dtype=torch.double), mode)  # non-trivial running statistics
    net.eval()
    x = torch.randn(4, 3, 12, 12, dtype=torch.double, requires_grad=True)
    y = torch.tensor([0, 1, 2, 4])
    path = net.infer(x, mode)
    (gradient,) = torch.autograd.grad(path.logits.gather(1, y[:, None]).sum(), x)
    rendered, _ = net.render(F.one_hot(y, 5).double(), path)
    assert torch.allclose(rendered, gradient, atol=1e-12)


def test_min_path_uses_min_activation_and_min_pool():
    net = _one_layer(torch.tensor([[1.0]]), torch.tensor([[1.0], [-1.0]]))
    net.slope = 0.5
    x = torch.tensor([[[[1.0, -3.0], [0.5, 2.0]]]], dtype=torch.double)
    # min(a, 0) + 0.5 * max(a, 0) = [[0.5, -3], [0.25, 1]], min-pool keeps -3 at index 1
    path = net.infer(x, "min")
    assert path.logits.tolist() == [[-3.0, 3.0]]
    assert path.latents.positions[0].tolist() == [[[[1]]]]
    assert path.latents.switches[0].tolist() == [[[[0.5, 1.0], [0.5, 0.5]]]]


def test_random_latents_render_valid_images():
    net = RenderingCNN(1, 10, image_size=7, layers=[4, "M", 4])
    latents = net.random_latents(3, generator=torch.Generator().manual_seed(0))
    assert latents.positions[0].max() < 49 and latents.positions[1] is None
    images, _ = net.render(torch.eye(10)[:3], latents, net.running_scales())
    assert images.shape == (3, 1, 7, 7) and torch.isfinite(images).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="layers"):
        parse_layers(["M", 4])
    with pytest.raises(ValueError, match="layers"):
        parse_layers([4, -1])
    with pytest.raises(ValueError, match="layers"):
        RenderingCNN(1, 10, image_size=4, layers=[4, "M", 4, "M", 4, "M"])
    with pytest.raises(ValueError, match="slope"):
        RenderingCNN(slope=1.5)
    with pytest.raises(ValueError, match="head"):
        RenderingCNN(head="mlp")
    net = RenderingCNN(1, 10, image_size=8, layers=[4, "M"])
    with pytest.raises(ValueError, match="mode"):
        net.infer(torch.zeros(1, 1, 8, 8), "median")
    with pytest.raises(ValueError, match="x: expected"):
        net.infer(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="image_size=8"):
        net.infer(torch.zeros(1, 1, 10, 10))
    with pytest.raises(ValueError, match="top"):
        net.render(torch.zeros(1, 4), net.infer(torch.zeros(1, 1, 8, 8)))


def test_rendering_runs_under_deterministic_algorithms_and_matches_max_unpool():
    """``Trainer(deterministic=True)`` turns on deterministic mode; rendering must not depend on max_unpool2d."""
    torch.manual_seed(0)
    net = RenderingCNN(1, 4, image_size=7, layers=[3, "M", 5])
    x = torch.randn(2, 1, 7, 7)
    path = net.infer(x, "max")
    torch.use_deterministic_algorithms(True)
    images, rendered = net.render(torch.eye(4)[:2], path)
    torch.use_deterministic_algorithms(False)
    top = rendered[1] * path.scales[1].view(1, -1, 1, 1)
    above = F.conv_transpose2d(top, net.block_list[1].conv.weight, padding=net.block_list[1].conv.padding)
    expected = F.max_unpool2d(above, path.latents.positions[0], (2, 2), output_size=path.latents.sizes[0])
    assert torch.allclose(rendered[0], expected * path.latents.switches[0])
    assert images.shape == (2, 1, 7, 7)
