"""trinity-lightning: PyTorch Lightning components for data, algorithms and compute.

Public names are importable from here directly; they are loaded lazily so that ``import
trinity_lightning`` (and ``trinity --help``) stays fast.

Example:
    >>> from trinity_lightning import DigitsDataModule, Classifier
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> subpackage that defines it
_EXPORTS: dict[str, str] = {
    # data
    "ArrayDataModule": "trinity_lightning.data",
    "ArrayDataset": "trinity_lightning.data",
    "DataFormatError": "trinity_lightning.data",
    "DigitsDataModule": "trinity_lightning.data",
    "SharedImageDataModule": "trinity_lightning.data",
    "TaggedSentence": "trinity_lightning.data",
    "load_tensors": "trinity_lightning.data",
    "read_conll": "trinity_lightning.data",
    "read_table": "trinity_lightning.data",
    "read_tagged_sentences": "trinity_lightning.data",
    # models
    "CNNCNNLSTM": "trinity_lightning.models",
    "Classifier": "trinity_lightning.models",
    "EntityF1": "trinity_lightning.models",
    "SmallCNN": "trinity_lightning.models",
    "Tagger": "trinity_lightning.models",
    "entity_spans": "trinity_lightning.models",
    # active.ner
    "ConllDataModule": "trinity_lightning.active.ner",
    # active.images
    "DigitsActiveDataModule": "trinity_lightning.active.images",
    # active
    "ActiveLearning": "trinity_lightning.active",
    "ActiveLearningDataModule": "trinity_lightning.active",
    "ActiveRelabelling": "trinity_lightning.active",
    "BALD": "trinity_lightning.active",
    "Entropy": "trinity_lightning.active",
    "FileOracle": "trinity_lightning.active",
    "LeastConfidence": "trinity_lightning.active",
    "MNLP": "trinity_lightning.active",
    "Margin": "trinity_lightning.active",
    "QueryStrategy": "trinity_lightning.active",
    "RandomStrategy": "trinity_lightning.active",
    "SimulatedOracle": "trinity_lightning.active",
    "get_strategy": "trinity_lightning.active",
    "register_strategy": "trinity_lightning.active",
    # active.partial_feedback
    "ClassHierarchy": "trinity_lightning.active.partial_feedback",
    "ImagePartialFeedbackDataModule": "trinity_lightning.active.partial_feedback",
    "PartialFeedback": "trinity_lightning.active.partial_feedback",
    "PartialFeedbackDataModule": "trinity_lightning.active.partial_feedback",
    "PartialLabelClassifier": "trinity_lightning.active.partial_feedback",
    "PartialLabelLoss": "trinity_lightning.active.partial_feedback",
    "PartialLabels": "trinity_lightning.active.partial_feedback",
    "cifar10_hierarchy": "trinity_lightning.active.partial_feedback",
    "fashion_mnist_hierarchy": "trinity_lightning.active.partial_feedback",
    "get_question_strategy": "trinity_lightning.active.partial_feedback",
    "partial_label_loss": "trinity_lightning.active.partial_feedback",
    # crowd
    "AnnotationTable": "trinity_lightning.crowd",
    "CrowdDataModule": "trinity_lightning.crowd",
    "CrowdEM": "trinity_lightning.crowd",
    "DawidSkene": "trinity_lightning.crowd",
    "MBEM": "trinity_lightning.crowd",
    "MajorityVote": "trinity_lightning.crowd",
    "OneCoinDawidSkene": "trinity_lightning.crowd",
    "SimulatedCrowdDataModule": "trinity_lightning.crowd",
    "simulate_annotations": "trinity_lightning.crowd",
    "soft_target_cross_entropy": "trinity_lightning.crowd",
    # nrm
    "NRM": "trinity_lightning.nrm",
    "RenderSamples": "trinity_lightning.nrm",
    "RenderingCNN": "trinity_lightning.nrm",
    "SemiSupervisedDataModule": "trinity_lightning.nrm",
    "render_grid": "trinity_lightning.nrm",
    # distributed
    "SignSGDState": "trinity_lightning.distributed",
    "SignSGDStrategy": "trinity_lightning.distributed",
    "Signum": "trinity_lightning.distributed",
    "WorkerFailureError": "trinity_lightning.distributed",
    "register_signsgd_hook": "trinity_lightning.distributed",
    "signsgd_hook": "trinity_lightning.distributed",
    # tensor
    "TensorContractionLayer": "trinity_lightning.tensor",
    "TensorHeadCNN": "trinity_lightning.tensor",
    "TensorRegressionLayer": "trinity_lightning.tensor",
    "Tensorize": "trinity_lightning.tensor",
    "TensorizeReport": "trinity_lightning.tensor",
    "TensorizedConv": "trinity_lightning.tensor",
    "TensorizedLinear": "trinity_lightning.tensor",
    "UnsupportedLayerError": "trinity_lightning.tensor",
    "detensorize": "trinity_lightning.tensor",
    "load_tensorized": "trinity_lightning.tensor",
    "tensorize": "trinity_lightning.tensor",
    # lander
    "FixedPointError": "trinity_lightning.lander",
    "FlyLandings": "trinity_lightning.lander",
    "LandingDataModule": "trinity_lightning.lander",
    "LipschitzMLP": "trinity_lightning.lander",
    "ResidualDynamicsModule": "trinity_lightning.lander",
    "SpectralNormalization": "trinity_lightning.lander",
    "TrackingController": "trinity_lightning.lander",
    # forecasting
    "Forecaster": "trinity_lightning.forecasting",
    "TLSTMCell": "trinity_lightning.forecasting",
    "TTRNNCell": "trinity_lightning.forecasting",
    "TimeSeriesDataModule": "trinity_lightning.forecasting",
    # topics
    "SpectralLDA": "trinity_lightning.topics",
    "TopicModel": "trinity_lightning.topics",
    "TopicModelDataModule": "trinity_lightning.topics",
    # equations
    "EquationDataModule": "trinity_lightning.equations",
    "EquationVerifier": "trinity_lightning.equations",
    "TreeLSTM": "trinity_lightning.equations",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trinity_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


# ``Trainer(strategy="ddp_signsgd")`` in any import order: register the signSGD strategies now if Lightning (or
# pytorch_lightning) is loaded, else right after it is imported (a post-import hook), so that importing this
# package stays fast and never imports Lightning itself.
importlib.import_module("trinity_lightning._registration").install()


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from trinity_lightning.active import (
        BALD,
        MNLP,
        ActiveLearning,
        ActiveLearningDataModule,
        Entropy,
        FileOracle,
        LeastConfidence,
        Margin,
        QueryStrategy,
        RandomStrategy,
        SimulatedOracle,
        get_strategy,
        register_strategy,
    )
    from trinity_lightning.active.images import (
        DigitsActiveDataModule,
    )
    from trinity_lightning.active.ner import (
        ConllDataModule,
    )
    from trinity_lightning.active.partial_feedback import (
        ClassHierarchy,
        ImagePartialFeedbackDataModule,
        PartialFeedback,
        PartialFeedbackDataModule,
        PartialLabelClassifier,
        PartialLabelLoss,
        PartialLabels,
        cifar10_hierarchy,
        fashion_mnist_hierarchy,
        get_question_strategy,
        partial_label_loss,
    )
    from trinity_lightning.crowd import (
        MBEM,
        AnnotationTable,
        CrowdDataModule,
        CrowdEM,
        DawidSkene,
        MajorityVote,
        OneCoinDawidSkene,
        SimulatedCrowdDataModule,
        simulate_annotations,
        soft_target_cross_entropy,
    )
    from trinity_lightning.data import (
        ArrayDataModule,
        ArrayDataset,
        DataFormatError,
        DigitsDataModule,
        SharedImageDataModule,
        TaggedSentence,
        load_tensors,
        read_conll,
        read_table,
        read_tagged_sentences,
    )
    from trinity_lightning.distributed import (
        SignSGDState,
        SignSGDStrategy,
        Signum,
        WorkerFailureError,
        register_signsgd_hook,
        signsgd_hook,
    )
    from trinity_lightning.equations import EquationDataModule, EquationVerifier, TreeLSTM
    from trinity_lightning.lander import (
        FixedPointError,
        FlyLandings,
        LandingDataModule,
        LipschitzMLP,
        ResidualDynamicsModule,
        SpectralNormalization,
        TrackingController,
    )
    from trinity_lightning.models import (
        CNNCNNLSTM,
        Classifier,
        EntityF1,
        SmallCNN,
        Tagger,
        entity_spans,
    )
    from trinity_lightning.nrm import (
        NRM,
        RenderingCNN,
        RenderSamples,
        SemiSupervisedDataModule,
        render_grid,
    )
    from trinity_lightning.tensor import (
        TensorContractionLayer,
        TensorHeadCNN,
        Tensorize,
        TensorizedConv,
        TensorizedLinear,
        TensorizeReport,
        TensorRegressionLayer,
        UnsupportedLayerError,
        detensorize,
        load_tensorized,
        tensorize,
    )
    from trinity_lightning.topics import SpectralLDA, TopicModel, TopicModelDataModule
