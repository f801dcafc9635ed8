"""The ``trinity`` command: LightningCLI (``fit/validate/test/predict``) plus the library's own tools.

``trinity fit --config recipes/quickstart.yaml`` runs a recipe: any LightningModule, DataModule,
callback or strategy is chosen in YAML by ``class_path``. Tool subcommands (``trinity crowd ...``,
``trinity label ...``) are dispatched before Lightning is imported, so ``trinity --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence
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

Options:
  -h, --help     show this help (`trinity fit --help` shows every recipe option)
  --version      show the version
"""


def _help() -> str:
    tools = "\n".join(f"  {name:<10} {spec[2]}" for name, spec in TOOLS.items())
    return _HELP.format(tools=tools)


def _build_cli_class() -> Any:
    """Define TrinityCLI lazily so that importing this module does not import Lightning."""
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar, RichModelSummary, RichProgressBar
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    # registers "ddp_signsgd", "ddp_signsgd_spawn" and "ddp_signsgd_ef": a recipe may name them with any optimizer
    importlib.import_module("trinity_lightning.distributed")

    class TrinityCLI(LightningCLI):
        """LightningCLI in subclass mode with rich progress and summaries.

        Extra options: ``--test_after_fit true`` tests the best checkpoint when ``fit`` ends, and
        ``--summary true`` (default) prints a table of the final metrics and where outputs went.
        """

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--test_after_fit", type=bool, default=False, help="after fit, run the test set on the best checkpoint"
            )
            parser.add_argument(
                "--summary", type=bool, default=True, help="print a table of the final metrics and output paths"
            )

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            config = self._get(self.config_init, "trainer", default={})
            chosen = list(config.get("callbacks") or [])
            extra: list[Any] = []
            if config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in chosen
            ):
                extra.append(RichProgressBar())
            if config.get("enable_model_summary", True) is not False and not any(
                isinstance(c, ModelSummary) for c in chosen
            ):
                extra.append(RichModelSummary(max_depth=2))
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
            self._print_summary()

        def after_test(self) -> None:
            self._print_summary()

        def _print_summary(self) -> None:
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
            )

    return TrinityCLI


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
    return TrinityCLI(args=list(args) if args is not None else None, **options)


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
