"""TensorLy backend handling: tltorch is imported and used without changing the caller's global backend.

tltorch calls ``tensorly.set_backend('pytorch')`` in nearly every module at import time. Importing it through
:func:`import_tltorch` restores whatever backend was active before, and every forward pass or decomposition of
this package runs inside :func:`pytorch_backend`, so a user's own TensorLy code (NumPy backend, say) is left alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import tensorly as tl


def import_tltorch() -> ModuleType:
    """Import ``tltorch`` while keeping the current global TensorLy backend.

    Example:
        >>> import tensorly as tl
        >>> before = tl.get_backend()
        >>> _ = import_tltorch()
        >>> tl.get_backend() == before
        True
    """
    before = tl.get_backend()
    try:
        return importlib.import_module("tltorch")
    finally:
        if tl.get_backend() != before:
            tl.set_backend(before)


@contextmanager
def pytorch_backend() -> Iterator[None]:
    """Run the block with TensorLy's PyTorch backend, then restore the previous one (no-op when already set).

    Example:
        >>> with pytorch_backend():
        ...     tl.get_backend()
        'pytorch'
    """
    if tl.get_backend() == "pytorch":
        yield
        return
    with tl.backend_context("pytorch"):
        yield
