"""Aggregators by name: the one registry behind ``trinity crowd aggregate --method``, ``CrowdDataModule(init=...)``
and :func:`get_aggregator`.

Names resolve to their class only when used, so listing them (``--help``) imports neither torch nor pandas.
Register your own aggregator (any :class:`~trinity_lightning.crowd.base.Aggregator` subclass) with
``AGGREGATORS.register("name", lambda: MyAggregator)``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trinity_lightning.rounds.registry import Registry

if TYPE_CHECKING:
    from trinity_lightning.crowd.base import Aggregator

__all__ = ["AGGREGATORS", "ANNOTATION_ONLY", "NEEDS_GOLD", "get_aggregator"]

AGGREGATORS: Registry[type] = Registry("aggregator", argument="method")

# aggregators that need nothing but the annotations (MBEM also needs a model's predictions)
ANNOTATION_ONLY = (
    "majority_vote",
    "mv",
    "dawid_skene",
    "ds",
    "one_coin",
    "wawa",
    "zero_based_skill",
    "zbs",
    "mace",
    "glad",
    "mmsr",
    "kos",
)
# aggregators that need gold labels for some items (``--gold`` on the command line)
NEEDS_GOLD = ("gold_majority_vote", "gold_mv")


def _loader(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        return getattr(importlib.import_module(f"trinity_lightning.crowd.{module}"), name)  # type: ignore[no-any-return]

    load.__doc__ = f"trinity_lightning.crowd.{name}"
    return load


for _names, _module, _class in (
    (("majority_vote", "mv"), "majority_vote", "MajorityVote"),
    (("dawid_skene", "ds"), "dawid_skene", "DawidSkene"),
    (("one_coin",), "dawid_skene", "OneCoinDawidSkene"),
    (("mbem",), "mbem", "MBEM"),
    (("wawa",), "skills", "Wawa"),
    (("mace",), "mace", "MACE"),
    (("glad",), "glad", "GLAD"),
    (("mmsr",), "mmsr", "MMSR"),
    (("kos",), "kos", "KOS"),
    (("zero_based_skill", "zbs"), "skills", "ZeroBasedSkill"),
    (("gold_majority_vote", "gold_mv"), "skills", "GoldMajorityVote"),
):
    for _name in _names:
        AGGREGATORS.register(_name, _loader(_module, _class))


def get_aggregator(name: str, _argument: str = "method", **kwargs: Any) -> Aggregator:
    """Build the aggregator registered as ``name`` with ``kwargs``; errors name the argument and list the names.

    Example:
        >>> get_aggregator("ds", n_iter=10).n_iter
        10
        >>> get_aggregator("dawid", n_iter=10)
        Traceback (most recent call last):
        ...
        ValueError: method: 'dawid' is not a registered aggregator. Available names: [...]. HINT: ...
    """
    cls = AGGREGATORS.build(name, _argument=_argument)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"{_argument}: the aggregator {name!r} does not take {sorted(kwargs)} ({err})") from None
    return cls(**kwargs)  # type: ignore[no-any-return]
