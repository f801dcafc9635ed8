"""Rich tables that close a run: the final metrics and where the outputs went."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _format(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4f}"


def print_run_summary(
    trainer: Any,
    title: str = "trinity run",
    seconds: float | None = None,
    metrics: dict[str, Any] | None = None,
    log_dir: str | None = None,
) -> None:
    """Print the trainer's final logged metrics and output locations as a rich table.

    Args:
        trainer: a ``lightning.pytorch.Trainer`` after ``fit``/``validate``/``test``.
        title: table title.
        seconds: wall time to report, if known.
        metrics: the metrics to show (default: ``trainer.callback_metrics``).
        log_dir: the run's log folder. Under DDP ``trainer.log_dir`` is a collective (a broadcast), so a caller
            that prints on rank 0 only must read it on every rank first and pass it here.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    for name, value in sorted((metrics if metrics is not None else trainer.callback_metrics).items()):
        table.add_row(name, _format(value))
    table.add_row("epochs / steps", f"{trainer.current_epoch} / {trainer.global_step}")
    if seconds is not None:
        table.add_row("wall time", f"{seconds:.1f} s")
    log_dir = log_dir if log_dir is not None else trainer.log_dir
    if log_dir:
        table.add_row("logs", _shown(log_dir))
    checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or getattr(
        trainer.checkpoint_callback, "last_model_path", ""
    )
    if checkpoint:
        table.add_row("best checkpoint", _shown(checkpoint))
    Console().print(table)


def _shown(path: str | Path) -> str:
    """A path as a user would type it: relative to the working directory when under it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)
