"""Where the real datasets live: ``TRINITY_DATA`` (default ``../shared/data`` beside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "TRINITY_DATA"


def _repository_root() -> Path:
    # src/trinity_lightning/data/paths.py -> repository root (an editable install keeps this layout)
    return Path(__file__).resolve().parents[3]


def data_root() -> Path:
    """The folder that holds the shared real datasets.

    Looked up in this order: the ``TRINITY_DATA`` environment variable, ``../shared/data`` beside the
    repository root, ``../shared/data`` beside the current directory. The path is returned even if it
    does not exist; use :func:`dataset_dir` to require one dataset.

    Example:
        >>> isinstance(data_root(), Path)
        True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    for base in (_repository_root(), Path.cwd()):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return (_repository_root() / ".." / "shared" / "data").resolve()


def dataset_dir(name: str) -> Path:
    """The folder of one shared dataset (e.g. ``"mnist"``, ``"crowd_rte"``).

    Raises:
        FileNotFoundError: naming the folder looked in and how to point ``TRINITY_DATA`` elsewhere.
    """
    root = data_root()
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} not found at {path}. Set the {ENV_VAR} environment variable to the folder "
            f"that holds the shared datasets (default: ../shared/data beside the repository)."
        )
    return path


def has_dataset(name: str) -> bool:
    """Whether a shared dataset is present (tests use this to skip with a clear reason)."""
    return (data_root() / name).is_dir()
