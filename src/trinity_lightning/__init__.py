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
    "Classifier": "trinity_lightning.models",
    "SmallCNN": "trinity_lightning.models",
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


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
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
    from trinity_lightning.models import Classifier, SmallCNN
