"""A local labelling web app over the round engine's query and answer files (see ``docs/labelling.md``).

``trinity label --web QUERIES`` or :func:`serve` starts it; :class:`LabelStore` and :func:`crowd_table` need
no web framework (the page needs the ``web`` extra: Starlette and uvicorn).

Example:
    >>> from trinity_lightning.rounds.web import serve
    >>> serve("outputs/queries", answers_per_item=2)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from trinity_lightning._lazy import lazy_exports

_LAZY = {
    "RejectedAnswerError": "store",
    "CrowdFileOracle": "store",
    "LabelStore": "store",
    "crowd_table": "store",
    "name_anonymous": "store",
    "read_worker_answers": "store",
    "create_app": "app",
    "serve": "app",
    "web_main": "app",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"trinity_lightning.rounds.web.{module}" for name, module in _LAZY.items()}
)
