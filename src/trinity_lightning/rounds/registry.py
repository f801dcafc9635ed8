"""One name -> implementation registry, with Lightning-style errors that list the known names.

Used by the query strategies (``active``), the question strategies (``active.partial_feedback``) and, later,
the crowd aggregators. It imports neither Lightning nor torch, so a command-line tool can use it without the
start-up cost.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, Callable[..., T]], Generic[T]):
    """A ``name -> class or factory`` mapping for one kind of component (a ``dict`` with checks).

    Args:
        kind: what the names stand for, used in every message (e.g. ``"query strategy"``).
        base: when given, :meth:`build` returns an instance of it unchanged and registered classes must
            subclass it.
        argument: the argument name that errors point at (e.g. ``"heuristic"``).

    Example:
        >>> shapes = Registry("shape", argument="shape")
        >>> @shapes.register("square")
        ... class Square:
        ...     def __init__(self, side: int = 1) -> None:
        ...         self.side = side
        >>> shapes.build("square", side=3).side
        3
        >>> shapes.build("circle")
        Traceback (most recent call last):
        ...
        ValueError: shape: 'circle' is not a registered shape. Available names: ['square']. HINT: ...
    """

    def __init__(self, kind: str, base: type | None = None, argument: str | None = None) -> None:
        super().__init__()
        self.kind, self.base, self.argument = kind, base, argument or kind.replace(" ", "_")
        self.descriptions: dict[str, str] = {}

    def register(
        self, name: str, factory: Callable[..., T] | None = None, *, description: str = "", override: bool = False
    ) -> Any:
        """Register ``factory`` under ``name``; without ``factory``, return a class decorator.

        Raises:
            ValueError: ``name`` is taken by another implementation and ``override`` is False.
            TypeError: ``base`` is set and a class that does not subclass it is registered.
        """

        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if self.base is not None and inspect.isclass(obj) and not issubclass(obj, self.base):
                raise TypeError(f"{self.argument}: {obj!r} is not a {self.base.__name__} subclass")
            if name in self and self[name] is not obj and not override:
                taken = getattr(self[name], "__name__", repr(self[name]))
                raise ValueError(
                    f"{self.argument}: the {self.kind} name {name!r} is already registered to {taken}. "
                    "HINT: pass override=True"
                )
            self[name] = obj
            self.descriptions[name] = description or (inspect.getdoc(obj) or "").split("\n", 1)[0]
            return obj

        return add if factory is None else add(factory)

    def build(self, name: Any, /, _argument: str | None = None, **kwargs: Any) -> T:
        """An instance of ``base`` is returned as is; a registered name is built with ``kwargs``.

        ``_argument`` renames the argument that errors point at (e.g. a callback's own parameter name).

        Raises:
            ValueError: an unknown name (the message lists the registered ones), or ``kwargs`` given with an
                instance, or ``kwargs`` the implementation does not take.
        """
        argument = _argument or self.argument
        if self.base is not None and isinstance(name, self.base):
            if kwargs:
                raise ValueError(f"{argument}: got arguments {sorted(kwargs)} but {name!r} is already built")
            return name  # type: ignore[return-value]
        if not isinstance(name, str) or name not in self:
            raise ValueError(
                f"{argument}: {name!r} is not a registered {self.kind}. Available names: {sorted(self)}. "
                f"HINT: register your own with .register(name)"
                + (f" or pass a {self.base.__name__} instance" if self.base is not None else "")
            )
        factory = self[name]
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as err:
            raise ValueError(f"{argument}: the {self.kind} {name!r} does not take {sorted(kwargs)} ({err})") from None
        except ValueError:  # no signature (a builtin): let the call decide
            pass
        return factory(**kwargs)
