"""Make ``Trainer(strategy="ddp_signsgd")`` work whatever the import order, without importing Lightning eagerly.

``import trinity_lightning`` calls :func:`install`: if ``lightning.pytorch`` (or ``pytorch_lightning``) is already
imported, the signSGD strategies are registered at once; otherwise a post-import hook on :data:`sys.meta_path`
registers them right after that package finishes importing. ``trinity --help`` therefore stays fast, and the
names resolve for ``import trinity_lightning`` (or ``.callbacks``/``.tensor``) before or after Lightning, for
``pytorch_lightning`` too, and in a user's own ``LightningCLI`` run.

Example:
    >>> import trinity_lightning._registration as registration
    >>> registration.install()  # idempotent; ``import trinity_lightning`` already did it
    >>> any(isinstance(f, registration.PostImportHook) for f in sys.meta_path) or "lightning.pytorch" in sys.modules
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["PostImportHook", "install", "register"]

LIGHTNING_PACKAGES = ("lightning.pytorch", "pytorch_lightning")


#: A checkpoint's original instantiator (``None``: none, the class is called) -> the one that also rebuilds the
#: factorized layers of a tensorized model (:mod:`trinity_lightning.tensor.checkpoint`). Lightning calls only the
#: instantiators in its ``_ALLOWED_INSTANTIATORS``; :func:`trust_instantiators` adds these. They build the
#: checkpoint's own class (Lightning checks it) and rebuild layers from the checkpoint's data, importing nothing
#: the checkpoint names.
TENSORIZED_INSTANTIATORS: dict[str | None, str] = {
    None: "trinity_lightning.tensor.checkpoint.load_tensorized_module",
    "lightning.pytorch.cli.instantiate_module": (
        "trinity_lightning.tensor.checkpoint.load_tensorized_module_lightning_cli"
    ),
    "pytorch_lightning.cli.instantiate_module": (
        "trinity_lightning.tensor.checkpoint.load_tensorized_module_pytorch_lightning_cli"
    ),
}


def trust_instantiators(package: str) -> None:
    """Add :data:`TENSORIZED_INSTANTIATORS` to ``package``'s instantiator allowlist (idempotent; cheap).

    A Lightning without the allowlist (older than 2.6) is left as it is: it calls any instantiator.
    """
    allowed = getattr(sys.modules.get(f"{package}.core.saving"), "_ALLOWED_INSTANTIATORS", None)
    if isinstance(allowed, set):
        allowed.update(TENSORIZED_INSTANTIATORS.values())


def register(package: str) -> None:
    """Register the signSGD strategy names once ``package`` (one of :data:`LIGHTNING_PACKAGES`) is imported.

    Also trusts the tensorized-checkpoint instantiators in every Lightning package imported. While
    ``trinity_lightning.distributed.strategy`` is itself being imported (it imported Lightning), the strategy
    names are left to that module, which registers them when it finishes.
    """
    for name in LIGHTNING_PACKAGES:
        if name in sys.modules:
            trust_instantiators(name)
    module = sys.modules.get("trinity_lightning.distributed.strategy")
    if module is not None and not hasattr(module, "register_strategies"):
        return  # being imported right now; it registers at its end
    try:
        strategy = importlib.import_module("trinity_lightning.distributed.strategy")
        strategy.register_strategies()
    except Exception as err:  # never break the user's `import lightning`
        warnings.warn(
            f"trinity_lightning: could not register the 'ddp_signsgd' strategies after importing {package}: {err!r}",
            RuntimeWarning,
            stacklevel=2,
        )


class PostImportHook(importlib.abc.MetaPathFinder):
    """A meta path finder that runs :func:`register` right after a Lightning package has been executed.

    It finds the package's real spec with the other finders and wraps only that loader instance's
    ``exec_module``, so the module, its loader class and its resources are Lightning's own.
    """

    def __init__(self, packages: Sequence[str] = LIGHTNING_PACKAGES) -> None:
        self.pending = set(packages)
        self._finding: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending or fullname in self._finding:
            return None
        self._finding.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._finding.discard(fullname)
        loader: Any = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        self.pending.discard(fullname)
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            register(fullname)

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register now for the Lightning packages already imported; hook the others (idempotent)."""
    waiting = [name for name in LIGHTNING_PACKAGES if name not in sys.modules]
    if len(waiting) < len(LIGHTNING_PACKAGES):
        register(next(name for name in LIGHTNING_PACKAGES if name in sys.modules))
    if waiting and not any(isinstance(finder, PostImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, PostImportHook(waiting))
