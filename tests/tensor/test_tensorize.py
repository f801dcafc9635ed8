from __future__ import annotations

import pytest
import tensorly as tl
import torch
from torch import nn

from tests.tensor._digits import accuracy, trained_cnn
from trinity_lightning.models import SmallCNN
from trinity_lightning.tensor import (
    TensorizedConv,
    TensorizedLinear,
    TensorRegressionLayer,
    UnsupportedLayerError,
    detensorize,
    load_tensorized,
    tensorize,
    tensorized_spec,
)
from trinity_lightning.tensor.tensorize import SPEC_KEY


@pytest.mark.parametrize("factorization", ["tucker", "tt"])
def test_full_rank_tensorization_keeps_accuracy_and_outputs(factorization):
    model = trained_cnn()
    dense_acc = accuracy(model)
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    report = tensorize(model, factorization, "full")
    assert [r.name for r in report.layers] == ["features.0", "features.4", "head.2"]
    assert all(r.reconstruction_error < 1e-5 for r in report.layers)
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-4)
    assert accuracy(model) == dense_acc > 0.9


def test_decomposed_init_beats_random_init_before_fine_tuning():
    decomposed = trained_cnn()
    tensorize(decomposed, "tucker", 0.9, exclude=["features.0"])
    random_init = trained_cnn()
    tensorize(random_init, "tucker", 0.9, exclude=["features.0"])
    for module in random_init.modules():
        if isinstance(module, (TensorizedConv, TensorizedLinear)):
            module.weight.normal_(0, 0.05)
    assert accuracy(decomposed) > accuracy(random_init) + 0.2


def test_report_counts_parameters_and_prints_a_table():
    model = trained_cnn()
    before = sum(p.numel() for p in model.parameters())
    report = tensorize(model, "cp", 0.25, min_params=200)
    assert report.skipped == {"features.0": "144 weight parameters < min_params=200"}
    assert [r.name for r in report.layers] == ["features.4", "head.2"]
    assert report.model_params_before == before
    assert report.model_params_after == sum(p.numel() for p in model.parameters())
    row = report.layers[0]
    assert (row.layer_type, row.shape, row.factorization, row.params_before) == ("Conv2d", (32, 16, 3, 3), "cp", 4640)
    assert row.params_after <= 0.25 * 4608 + 32 and 0.0 < row.reconstruction_error < 1.0
    text = str(report)
    for needle in ("features.4", "head.2", "Conv2d", "4,640", "total (model)"):
        assert needle in text
    assert report.to_dict()["layers"][1]["name"] == "head.2"


def test_include_exclude_by_pattern_and_type():
    model = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    assert [r.name for r in tensorize(model, "tt", 0.5, include=["features.*"], exclude=["features.0"]).layers] == [
        "features.4"
    ]
    model = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    assert [r.name for r in tensorize(model, "tt", 0.5, include=[nn.Linear]).layers] == ["head.2"]
    assert [r.name for r in tensorize(model, "tt", 0.5, exclude=["head"]).layers] == ["features.0", "features.4"]


def test_unsupported_layer_is_named_with_the_exclude_hint():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    message = r"(?s)1 layer cannot be tensorized:\n  '0': Embedding.*exclude=\['0'\]"
    with pytest.raises(UnsupportedLayerError, match=message):
        tensorize(model)
    report = tensorize(model, exclude=["0"])
    assert [r.name for r in report.layers] == ["2"]
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(UnsupportedLayerError, match=r"'0'.*groups=4"):
        tensorize(grouped)


def test_rank_above_full_rank_names_the_layer():
    model = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    with pytest.raises(ValueError, match=r"layer 'features.0'.*larger than the full rank"):
        tensorize(model, "tucker", 12)


def test_detensorize_round_trip_for_export():
    model = trained_cnn()
    tensorize(model, "tt", 0.5)
    model.head = nn.Sequential(TensorRegressionLayer.from_linear(nn.Linear(128, 10), (32, 2, 2), "tucker", 0.5))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    changed = detensorize(model)
    assert changed == ["features.0", "features.4", "head.0"]
    assert not any(isinstance(m, (TensorizedConv, TensorizedLinear, TensorRegressionLayer)) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-4)
    torch.jit.trace(model, x)  # plain layers export


def test_spec_rebuilds_structure_in_a_fresh_dense_model():
    model = trained_cnn()
    tensorize(model, "tt", 0.5)
    checkpoint = {"state_dict": model.state_dict(), SPEC_KEY: tensorized_spec(model)}
    fresh = load_tensorized(SmallCNN(1, 10, channels=(16, 32), image_size=8), checkpoint)
    x = torch.randn(3, 1, 8, 8)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert tensorized_spec(fresh) == tensorized_spec(model)


def test_global_backend_untouched():
    tl.set_backend("numpy")
    model = SmallCNN(1, 10, channels=(8,), image_size=8)
    tensorize(model, "tucker", 0.5)
    model(torch.zeros(1, 1, 8, 8))
    assert tl.get_backend() == "numpy"


def test_cp_rank_above_a_mode_size_decomposes_without_tensorly_svd_warnings():
    """CP rank 40 on a 3x3 kernel: TensorLy pads the SVD start and would warn once per mode; we keep that quiet."""
    import warnings

    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = tensorize(model, "cp", rank=0.75)
    assert report.layers[0].rank > 9  # CP rank, above the spatial modes' size (3): the case TensorLy warns about
    assert not [w for w in caught if "n_eigenvecs" in str(w.message)]
