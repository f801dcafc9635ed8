"""The learning curve: one row per round, written as CSV atomically and logged as ``<namespace>/<name>``.

Naming convention: every round callback logs its own numbers as ``<namespace>/<name>`` (``active/labelled``,
``alpf/questions``, ``crowd/label_acc``), and copies the validation metrics the user's module logged into
its curve under their own names. Which metrics: ``monitor`` (a name or a list of names) when given, else
every metric whose name starts with ``val``/``valid``/``validation`` followed by ``_``, ``/`` or ``.``
(``val_acc``, ``val/acc``, ``valid_loss``). At the first round that follows a validation, a ``monitor`` that
was not logged is refused with an error that lists what was logged.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trinity_lightning.data.atomic import atomic_write_text

__all__ = ["VALIDATION_METRIC", "log_round", "round_metrics", "write_curve"]

VALIDATION_METRIC = re.compile(r"^(val|valid|validation)[_/.]", re.IGNORECASE)


def write_curve(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as CSV (columns in order of first appearance) atomically: temp file, fsync, rename.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "curve.csv"
        >>> write_curve(path, [{"round": 0, "val_acc": 0.5}, {"round": 1, "labelled": 20}])
        >>> path.read_text().splitlines()
        ['round,val_acc,labelled', '0,0.5,', '1,,20']
    """
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.as_tensor(v).numel() == 1}


def round_metrics(
    trainer: Any, monitor: str | Sequence[str] | None, owner: str, check: bool = True
) -> dict[str, float]:
    """The metrics a round records: ``monitor`` (refused when not logged and ``check``), else every ``val*``.

    Args:
        trainer: the Lightning trainer (its ``callback_metrics``).
        monitor: a metric name, a list of names, or ``None`` (every validation metric).
        owner: the callback's name, for the error.
        check: refuse a missing ``monitor`` (pass ``False`` for a round before any validation ran).

    Raises:
        ValueError: ``monitor`` was not logged; the message lists the logged metrics and how to set it.
    """
    logged = _scalars(dict(trainer.callback_metrics))
    if monitor is None:
        return {k: v for k, v in logged.items() if VALIDATION_METRIC.match(k)}
    names = [monitor] if isinstance(monitor, str) else list(monitor)
    missing = [n for n in names if n not in logged]
    if missing and check:
        raise ValueError(
            f"monitor: {owner} records {missing} but the module logged {sorted(logged) or 'no metric'}; "
            f"set {owner}(monitor=...) to one of those names (or None for every val* metric), or log it with "
            f"self.log({missing[0]!r}, ...) in validation_step"
        )
    return {n: logged.get(n, float("nan")) for n in names}


def log_round(trainer: Any, pl_module: Any, namespace: str, values: dict[str, Any]) -> None:
    """Log ``values`` as ``<namespace>/<name>``: through ``pl_module.log`` where Lightning allows it (so they
    reach ``callback_metrics`` and every logger), else straight to the loggers (e.g. from ``on_fit_start``)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    metrics = {f"{namespace}/{k}": float(v) for k, v in values.items()}
    try:
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=False)
    except MisconfigurationException:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
