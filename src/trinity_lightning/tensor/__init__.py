"""Tensor layers and model tensorization on tensorly-torch (see docs/tensor.md).

Importing this package does not change TensorLy's global backend.

Example:
    >>> import torch
    >>> from trinity_lightning.models import SmallCNN
    >>> from trinity_lightning.tensor import tensorize
    >>> net = SmallCNN(1, 10, channels=(8, 16), image_size=8)
    >>> report = tensorize(net, factorization="tucker", rank=0.5)
    >>> report.params_after < report.params_before
    True
"""

from trinity_lightning.tensor.attention import TensorizedMultiheadAttention
from trinity_lightning.tensor.callback import Tensorize
from trinity_lightning.tensor.checkpoint import load_tensorized, restore_tensorized, tensorized_checkpoints
from trinity_lightning.tensor.heads import TensorContractionLayer, TensorHeadCNN, TensorRegressionLayer
from trinity_lightning.tensor.layers import TensorizedConv, TensorizedLinear, UnsupportedLayerError
from trinity_lightning.tensor.ranks import resolve_rank
from trinity_lightning.tensor.regularization import RankLasso, fold_rank_lasso
from trinity_lightning.tensor.tensorize import (
    LayerReport,
    TensorizeReport,
    apply_tensorized_spec,
    detensorize,
    tensorize,
    tensorized_spec,
)

__all__ = [
    "LayerReport",
    "RankLasso",
    "TensorContractionLayer",
    "TensorHeadCNN",
    "TensorRegressionLayer",
    "Tensorize",
    "TensorizeReport",
    "TensorizedConv",
    "TensorizedLinear",
    "TensorizedMultiheadAttention",
    "UnsupportedLayerError",
    "apply_tensorized_spec",
    "detensorize",
    "fold_rank_lasso",
    "load_tensorized",
    "resolve_rank",
    "restore_tensorized",
    "tensorize",
    "tensorized_checkpoints",
    "tensorized_spec",
]
