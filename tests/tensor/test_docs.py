"""Every public constructor/function argument of the tensor package is documented (baal's documentation test)."""

from __future__ import annotations

import inspect

import pytest

import trinity_lightning.tensor as tensor

PUBLIC = [
    tensor.TensorRegressionLayer,
    tensor.TensorContractionLayer,
    tensor.TensorHeadCNN,
    tensor.Tensorize,
    tensor.tensorize,
    tensor.detensorize,
    tensor.resolve_rank,
    tensor.TensorizedConv.from_dense,
    tensor.TensorizedLinear.from_dense,
    tensor.TensorRegressionLayer.from_linear,
    tensor.load_tensorized,
    tensor.restore_tensorized,
    tensor.tensorized_checkpoints,
    tensor.RankLasso,
    tensor.fold_rank_lasso,
]


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__qualname__)
def test_arguments_are_documented(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    doc = inspect.getdoc(obj) or ""
    names = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    missing = [name for name in names if f"{name}" not in doc]
    assert not missing, f"{obj.__qualname__}: undocumented arguments {missing}"
    assert "Example" in doc or obj in (tensor.TensorizedConv.from_dense, tensor.TensorizedLinear.from_dense)
