"""Rich tables that close a run: the final metrics and where the outputs went."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _format(value: Any) -> str:
    """A metric as a person reads it: integers (counts logged as floats too) without decimals, else 4 decimals.

    Example:
        >>> _format(100.0), _format(0.93125), _format("n/a")
        ('100', '0.9313', 'n/a')
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4f}"


def print_run_summary(
    trainer: Any,
    title: str = "trinity run",
    seconds: float | None = None,
    metrics: dict[str, Any] | None = None,
    log_dir: str | None = None,
    checkpoint: str | Path | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Print the trainer's final logged metrics and output locations as a rich table.

    Args:
        trainer: a ``lightning.pytorch.Trainer`` after ``fit``/``validate``/``test``.
        title: table title.
        seconds: wall time to report, if known.
        metrics: the metrics to show (default: ``trainer.callback_metrics``).
        log_dir: the run's log folder. Under DDP ``trainer.log_dir`` is a collective (a broadcast), so a caller
            that prints on rank 0 only must read it on every rank first and pass it here.
        checkpoint: the checkpoint the run used (``trinity test --ckpt_path X`` shows X); default: the
            checkpoint callback's best (else last) checkpoint, shown as "best checkpoint".
        extra: more ``what -> value`` rows (e.g. the predictions file).
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
        table.add_row("logs", shown_path(log_dir))
    if checkpoint:
        table.add_row("checkpoint", shown_path(checkpoint))
    else:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or getattr(
            trainer.checkpoint_callback, "last_model_path", ""
        )
        if best:
            table.add_row("best checkpoint", shown_path(best))
    for name, value in (extra or {}).items():
        if value:
            table.add_row(name, value)
    Console().print(table)


def shown_path(path: str | Path) -> str:
    """A path as a user would type it: relative to the working directory when under it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)
