"""The ``trinity`` command: LightningCLI (``fit/validate/test/predict``) plus the library's own tools.

``trinity fit --config recipes/quickstart.yaml`` runs a recipe: any LightningModule, DataModule,
callback or strategy is chosen in YAML by ``class_path`` (ours also by short name, e.g. ``--model Classifier``).
``--trainer.callbacks.<Class or index>.<argument> VALUE`` changes one argument of one recipe callback, and
``trinity predict`` writes ``<log_dir>/predictions.pt`` (and ``.csv``). Tool subcommands (``trinity crowd ...``,
``trinity label ...``) are dispatched before Lightning is imported, so ``trinity --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# name -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
TOOLS: dict[str, tuple[str, str, str]] = {
    "crowd": ("trinity_lightning.crowd.cli", "main", "aggregate crowd labels (majority vote, Dawid-Skene, ...)"),
    "label": ("trinity_lightning.active.cli", "label_main", "answer a round's queries: class, tags or yes/no"),
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

_HELP = """usage: trinity <command> [options]

Lightning commands (a recipe is a LightningCLI YAML; see recipes/):
  fit        train:              trinity fit --config recipes/quickstart.yaml
  validate   run validation:     trinity validate --config RECIPE --ckpt_path CKPT
  test       run the test set:   trinity test --config RECIPE --ckpt_path CKPT
  predict    predict:            trinity predict --config RECIPE --ckpt_path CKPT

Tools:
{tools}

Short forms (fit/validate/test/predict):
  --model Classifier --data DigitsDataModule      our classes by their short names
  --trainer.callbacks.Tensorize.epoch 4           one argument of one recipe callback (by class name or
  --trainer.callbacks.1.epoch 4                   0-based index), the other callbacks unchanged
  trinity predict ...                             writes <log_dir>/predictions.pt (and .csv for tensors)

Options:
  -h, --help     show this help (`trinity fit --help` shows every recipe option)
  --version      show the version
"""

# packages whose LightningModules, DataModules, callbacks and optimizers `--model NAME`, `--data NAME` and
# `trinity fit --help` should know by short name (jsonargparse finds imported subclasses)
REGISTRABLE = (
    "trinity_lightning.models",
    "trinity_lightning.data",
    "trinity_lightning.nrm",
    "trinity_lightning.crowd",
    "trinity_lightning.active",
    "trinity_lightning.active.images",
    "trinity_lightning.active.ner",
    "trinity_lightning.active.partial_feedback",
    "trinity_lightning.tensor",
    "trinity_lightning.distributed",
)
_CALLBACK_OPTION = "--trainer.callbacks."
PREDICTIONS = "predictions"


def _help() -> str:
    tools = "\n".join(f"  {name:<10} {spec[2]}" for name, spec in TOOLS.items())
    return _HELP.format(tools=tools)


def import_registrable() -> list[str]:
    """Import our packages so their classes are known by short name (``--model Classifier``) and in ``--help``.

    Returns the packages that could not be imported (an optional dependency missing), each with the reason.

    Example:
        >>> import_registrable()
        []
    """
    missing = []
    for name in REGISTRABLE:
        try:
            module = importlib.import_module(name)
            for public in getattr(module, "__all__", ()):  # names a package loads lazily (crowd, data) too
                getattr(module, public)
        except ImportError as err:  # an optional extra is not installed: its classes need a full class_path
            missing.append(f"{name} ({err})")
    return missing


def split_callback_overrides(args: Sequence[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Take ``--trainer.callbacks.<Class or index>.<argument> VALUE`` options out of ``args``.

    Returns the other arguments and ``(selector, argument, value)`` triples. ``--trainer.callbacks.<argument>``
    (lower case, jsonargparse's own form: the last callback) and ``...callbacks.init_args...`` are left alone.

    Example:
        >>> split_callback_overrides(["fit", "--trainer.callbacks.Tensorize.epoch", "4", "--trainer.max_epochs=2"])
        (['fit', '--trainer.max_epochs=2'], [('Tensorize', 'epoch', '4')])
    """
    rest: list[str] = []
    overrides: list[tuple[str, str, str]] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        key, eq, value = item.partition("=")
        selector, _, argument = key[len(_CALLBACK_OPTION) :].partition(".")
        if (
            key.startswith(_CALLBACK_OPTION)
            and argument
            and "." not in argument
            and (selector.isdigit() or selector[:1].isupper())
        ):
            if not eq:
                if i + 1 >= len(items):
                    raise ValueError(f"{key}: expected a value after the option")
                i += 1
                value = items[i]
            overrides.append((selector, argument, value))
        else:
            rest.append(item)
        i += 1
    return rest, overrides


def apply_callback_overrides(callbacks: list[dict[str, Any]], overrides: Sequence[tuple[str, str, str]]) -> None:
    """Set ``init_args[argument] = yaml(value)`` on the callback each override selects (in place).

    A selector is a 0-based index or a class name (the last part of ``class_path``); an ambiguous or unknown
    selector raises ``ValueError`` listing the callbacks.

    Example:
        >>> cbs = [{"class_path": "a.Tensorize", "init_args": {"epoch": 8}}, {"class_path": "b.Other"}]
        >>> apply_callback_overrides(cbs, [("Tensorize", "epoch", "4"), ("1", "flag", "true")])
        >>> cbs[0]["init_args"]["epoch"], cbs[1]["init_args"]["flag"]
        (4, True)
    """
    import yaml

    names = [str(c.get("class_path", "")).rsplit(".", 1)[-1] for c in callbacks]
    listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) or "none"
    for selector, argument, value in overrides:
        option = f"{_CALLBACK_OPTION}{selector}.{argument}"
        if selector.isdigit():
            index = int(selector)
            if index >= len(callbacks):
                raise ValueError(f"{option}: no callback {index}; the recipe's callbacks are [{listing}]")
        else:
            matches = [i for i, n in enumerate(names) if n == selector]
            if len(matches) != 1:
                problem = "several callbacks are" if matches else "no callback is"
                raise ValueError(
                    f"{option}: {problem} named {selector!r}; the recipe's callbacks are [{listing}] "
                    f"(select one by index: {_CALLBACK_OPTION}<index>.{argument})"
                )
            index = matches[0]
        entry = callbacks[index]
        entry["init_args"] = dict(entry.get("init_args") or {})
        entry["init_args"][argument] = yaml.safe_load(value)


def _build_cli_class() -> Any:
    """Define TrinityCLI lazily so that importing this module does not import Lightning."""
    import json

    from lightning.pytorch.callbacks import BasePredictionWriter, ProgressBar, RichProgressBar
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    # our classes by short name in recipes and `--help`; also registers "ddp_signsgd" and its siblings
    import_registrable()

    class PredictionWriter(BasePredictionWriter):
        """Write ``trainer.predict``'s outputs to ``<log_dir>/predictions.pt`` (and ``.csv`` for a tensor).

        Under DDP each rank writes ``predictions.rank<R>.pt``. The CSV has a ``row`` column (the dataset index
        when Lightning tracked it) and one column per output (``output_0``, ...).
        """

        def __init__(self) -> None:
            super().__init__(write_interval="epoch")
            self.paths: list[str] = []

        def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: Any, batch_indices: Any) -> None:
            import torch

            from trinity_lightning.data import atomic_open

            folder = Path(trainer.log_dir or trainer.default_root_dir)
            stem = PREDICTIONS if trainer.world_size == 1 else f"{PREDICTIONS}.rank{trainer.global_rank}"
            batches = list(predictions or [])
            merged: Any = batches
            if batches and all(isinstance(b, torch.Tensor) for b in batches):
                try:
                    merged = torch.cat([b.detach().cpu() for b in batches])
                except RuntimeError:  # batches of different trailing shapes: keep the list
                    merged = [b.detach().cpu() for b in batches]
            pt = folder / f"{stem}.pt"
            with atomic_open(pt, "wb") as handle:
                torch.save(merged, handle)
            self.paths = [str(pt)]
            if isinstance(merged, torch.Tensor) and merged.ndim in (1, 2):
                self.paths.append(str(_write_csv(folder / f"{stem}.csv", merged, batch_indices)))

    class TrinityCLI(LightningCLI):
        """LightningCLI in subclass mode with rich progress, summaries and a prediction writer.

        Extra options: ``--test_after_fit true`` tests the best checkpoint when ``fit`` ends, and
        ``--summary true`` (default) prints a table of the final metrics and where outputs went.
        ``--trainer.callbacks.<Class or index>.<argument> VALUE`` sets one argument of one recipe callback.
        """

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--test_after_fit", type=bool, default=False, help="after fit, run the test set on the best checkpoint"
            )
            parser.add_argument(
                "--summary", type=bool, default=True, help="print a table of the final metrics and output paths"
            )

        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            # run_lightning always passes the arguments (from sys.argv when not given): no "args and command
            # line" warning; callback overrides by class name or index are applied through a second parse so
            # that jsonargparse still type-checks every value
            argv = list(sys.argv[1:] if args is None else args)
            argv, overrides = split_callback_overrides(argv)
            if not overrides:
                self.config = parser.parse_args(argv)
                return
            # the first parse only reads the callback list (an override may supply a required argument, so the
            # first parse skips validation where jsonargparse offers it; the second parse validates everything)
            first = [a for a in argv if not a.startswith("--print_config")]  # print once, after the overrides
            try:
                self.config = parser.parse_args(first, _skip_validation=True)
            except (TypeError, ValueError):  # a jsonargparse without the private option
                self.config = parser.parse_args(first)
            subcommand = self.config.get("subcommand")
            config = self.config[subcommand] if subcommand else self.config
            callbacks = [c.as_dict() if hasattr(c, "as_dict") else dict(c) for c in config.trainer.callbacks or []]
            try:
                apply_callback_overrides(callbacks, overrides)
            except ValueError as err:
                parser.error(str(err))
            self.config = parser.parse_args([*argv, f"--trainer.callbacks={json.dumps(callbacks, default=str)}"])

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            config = self._get(self.config_init, "trainer", default={})
            chosen = list(config.get("callbacks") or [])
            extra: list[Any] = []
            if config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in chosen
            ):
                extra.append(RichProgressBar())
            # no model summary here: Lightning adds RichModelSummary itself when rich is installed (ours made it
            # print "Trainer already configured with model summary callbacks")
            self._writer: PredictionWriter | None = None
            if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in chosen):
                self._writer = PredictionWriter()
                extra.append(self._writer)
            if extra:
                kwargs["callbacks"] = chosen + extra
            self._started = time.perf_counter()
            return super().instantiate_trainer(**kwargs)

        def _option(self, name: str, default: Any) -> Any:
            config = self.config.get(str(self.subcommand), self.config)
            return config.get(name, default)

        def after_fit(self) -> None:
            self._fit_metrics = dict(self.trainer.callback_metrics)
            if self._option("test_after_fit", False) and self.datamodule is not None:
                ckpt = "best" if getattr(self.trainer.checkpoint_callback, "best_model_path", "") else None
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
            self._print_summary()

        def after_validate(self) -> None:
            self._print_summary(checkpoint=self.trainer.ckpt_path)

        def after_test(self) -> None:
            self._print_summary(checkpoint=self.trainer.ckpt_path)

        def after_predict(self) -> None:
            from trinity_lightning.reporting import shown_path

            written = self._writer.paths if self._writer is not None else []
            extra = {"predictions": ", ".join(shown_path(p) for p in written)}
            self._print_summary(checkpoint=self.trainer.ckpt_path, extra=extra)

        def _print_summary(self, checkpoint: str | Path | None = None, extra: dict[str, str] | None = None) -> None:
            if not self._option("summary", True):
                return
            log_dir = self.trainer.log_dir  # a collective under DDP: every rank reads it, rank 0 prints
            if not self.trainer.is_global_zero:
                return
            from trinity_lightning.reporting import print_run_summary

            print_run_summary(
                self.trainer,
                title=f"trinity {self.subcommand}",
                metrics={**getattr(self, "_fit_metrics", {}), **self.trainer.callback_metrics},
                seconds=time.perf_counter() - getattr(self, "_started", time.perf_counter()),
                log_dir=log_dir,
                checkpoint=checkpoint,
                extra=extra,
            )

    return TrinityCLI


def _write_csv(path: Path, values: Any, batch_indices: Any) -> Path:
    """A ``row, output_0, ...`` CSV of a 1-D or 2-D tensor; ``row`` is the dataset index when it is known."""
    import csv

    from trinity_lightning.data import atomic_open

    rows = values.reshape(len(values), -1).tolist()
    flat: list[int] = []
    for batch in batch_indices or []:
        flat.extend(batch if isinstance(batch, list) and all(isinstance(i, int) for i in batch) else [])
    index = flat if len(flat) == len(rows) else list(range(len(rows)))
    columns = ["output"] if values.ndim == 1 else [f"output_{k}" for k in range(values.shape[1])]
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["row", *columns])
        writer.writerows([i, *row] for i, row in zip(index, rows, strict=True))
    return path


def run_lightning(args: Sequence[str] | None = None, **cli_kwargs: Any) -> Any:
    """Run the Lightning part of the CLI (``fit/validate/test/predict``) and return the CLI object."""
    TrinityCLI = _build_cli_class()
    options: dict[str, Any] = {
        "subclass_mode_model": True,
        "subclass_mode_data": True,
        "save_config_kwargs": {"overwrite": True},
        "parser_kwargs": {"description": "trinity-lightning: run a recipe"},
    }
    options.update(cli_kwargs)
    return TrinityCLI(args=list(sys.argv[1:] if args is None else args), **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trinity`` console script and ``python -m trinity_lightning``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    if args[0] == "--version":
        from trinity_lightning import __version__

        print(f"trinity-lightning {__version__}")
        return 0
    if args[0] in TOOLS:
        module, function, _ = TOOLS[args[0]]
        try:
            tool = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as err:
            print(f"trinity {args[0]}: not available in this installation ({err})", file=sys.stderr)
            return 2
        return int(tool(args[1:]) or 0)
    if args[0] not in LIGHTNING_SUBCOMMANDS:
        print(f"trinity: unknown command {args[0]!r}\n", file=sys.stderr)
        print(_help(), file=sys.stderr)
        return 2
    run_lightning(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
