"""``trinity crowd``: aggregate crowd labels and score their quality from the command line.

``trinity crowd aggregate annotations.csv --method dawid_skene --out labels.csv`` writes one row per item
(``item, label, confidence, p_<class>...``) and prints a table of the least reliable annotators.

``trinity crowd quality annotations.csv --pred-probs probs.npy --out quality.csv`` writes CROWDLAB's tables
(:func:`~trinity_lightning.crowd.quality.label_quality`): one row per item (``item, consensus_label,
consensus_quality_score, annotator_agreement, num_annotations``) and, beside it (``quality.annotators.csv``), one
row per annotator (``worker, annotator_quality, agreement_with_consensus, worst_class, num_examples_labeled``),
and prints the items to review and the annotators to check first.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only once the arguments are parsed (``--help`` stays instant)
    import pandas as pd

    from trinity_lightning.crowd.base import Aggregator

from trinity_lightning.crowd.registry import ANNOTATION_ONLY, NEEDS_GOLD, get_aggregator

METHODS = ANNOTATION_ONLY + NEEDS_GOLD  # the registered aggregators that need no model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trinity crowd", description="Crowd-label aggregation.")
    commands = parser.add_subparsers(dest="command", required=True)
    agg = commands.add_parser(
        "aggregate",
        help="aggregate a long (item, worker, label) table into one label per item",
        description="Aggregate a long (item, worker, label) table into one label per item.",
    )
    agg.add_argument("annotations", help="CSV/TSV/JSONL/Parquet file with one row per (item, worker, label)")
    agg.add_argument(
        "--method", default="dawid_skene", choices=sorted(METHODS), help="aggregator (default: dawid_skene)"
    )
    agg.add_argument("--out", required=True, help="output CSV: item, label, confidence, p_<class>...")
    agg.add_argument("--item", default="task", help="item column (default: task)")
    agg.add_argument("--worker", default="worker", help="worker column (default: worker)")
    agg.add_argument("--label", default="label", help="label column (default: label)")
    agg.add_argument(
        "--classes",
        default=None,
        help="every class, comma-separated (e.g. no,yes): declares classes nobody used and fixes the order of "
        "the p_<class> columns; labels outside it are an error (default: the labels found)",
    )
    agg.add_argument(
        "--duplicates",
        default="error",
        choices=["error", "keep_last", "keep_all"],
        help="repeated (item, worker) pairs (default: error)",
    )
    agg.add_argument(
        "--gold",
        default=None,
        help="CSV of gold labels for some items (columns: the item column and the label column): teaches "
        "Dawid-Skene (true_labels) and gives gold_majority_vote its skills",
    )
    agg.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads during the fit (default: all cores, cut to the idle ones by the load average)",
    )
    agg.add_argument("--n-iter", type=int, default=100, help="EM iterations at most (default: 100)")
    agg.add_argument("--max-iter", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: --n-iter
    agg.add_argument("--tol", type=float, default=1e-5, help="EM stops below this gain per annotation")
    agg.add_argument("--smoothing", type=float, default=0.0, help="Laplace pseudo-count (default: 0)")
    agg.add_argument(
        "--crowdkit-compat",
        action="store_true",
        help="EM methods: reproduce crowd-kit 1.4.2 (its clipping and stopping rule, float64; glad: crowd-kit's "
        "GLAD replayed bit for bit)",
    )
    agg.add_argument(
        "--tie-break",
        default="random",
        choices=["random", "smallest"],
        help="majority-vote tie rule (default: random, seeded)",
    )
    agg.add_argument("--seed", type=int, default=0, help="seed of the random tie rule")
    agg.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    agg.add_argument("--show", type=int, default=10, help="annotators to list, least reliable first (0: none)")
    agg.add_argument(
        "--min-annotations",
        type=int,
        default=5,
        help="list only annotators with at least this many annotations (default: 5)",
    )
    agg.add_argument("--no-probabilities", action="store_true", help="omit the p_<class> columns")
    _quality_parser(commands)
    return parser


ITEM_COLUMNS = ("consensus_label", "consensus_quality_score", "annotator_agreement", "num_annotations")
ANNOTATOR_COLUMNS = ("annotator_quality", "agreement_with_consensus", "worst_class", "num_examples_labeled")


def _quality_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    quality = commands.add_parser(
        "quality",
        help="CROWDLAB consensus, per-item consensus quality and per-annotator quality (cleanlab's tables)",
        description="CROWDLAB's consensus label and quality score per item and quality per annotator, with a "
        "model's predicted probabilities or, without one, an aggregator's posterior in the model's place.",
    )
    quality.add_argument("annotations", help="CSV/TSV/JSONL/Parquet file with one row per (item, worker, label)")
    quality.add_argument(
        "--pred-probs",
        default=None,
        help="the model's probabilities: a .npy (num_items, K) array, rows in sorted item order, columns in class "
        "order; or a CSV whose first column is the item id and the others the classes' probabilities",
    )
    quality.add_argument("--out", default=None, help="item table CSV (and <stem>.annotators.csv beside it)")
    quality.add_argument("--annotators-out", default=None, help="annotator table CSV (default: beside --out)")
    quality.add_argument(
        "--sort",
        default=None,
        choices=ITEM_COLUMNS + ANNOTATOR_COLUMNS,
        help="sort the table that has this column by it (default: consensus_quality_score and annotator_quality, "
        "lowest first)",
    )
    quality.add_argument("--descending", action="store_true", help="sort by --sort highest first")
    quality.add_argument(
        "--aggregator",
        default="dawid_skene",
        help="without --pred-probs: the aggregator whose posterior plays the model (default: dawid_skene), or "
        "'frequencies' for each item's label frequencies",
    )
    quality.add_argument("--calibrate", action="store_true", help="temperature-scale the probabilities first")
    quality.add_argument("--item", default="task", help="item column (default: task)")
    quality.add_argument("--worker", default="worker", help="worker column (default: worker)")
    quality.add_argument("--label", default="label", help="label column (default: label)")
    quality.add_argument("--classes", default=None, help="every class, comma-separated (default: the labels found)")
    quality.add_argument(
        "--duplicates", default="error", choices=["error", "keep_last", "keep_all"], help="repeated (item, worker)"
    )
    quality.add_argument("--show", type=int, default=10, help="rows of each table to print (0: none)")


def _classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    classes = [c.strip() for c in text.split(",")]
    if any(not c for c in classes):
        raise ValueError(f"--classes: expected comma-separated class names such as no,yes; got {text!r}")
    return classes


def _gold(args: argparse.Namespace) -> object:
    """The ``--gold`` CSV as a Series from item to label (``None`` without ``--gold``)."""
    if args.gold is None:
        return None
    if args.method not in (*NEEDS_GOLD, "dawid_skene", "ds"):
        raise ValueError(f"--gold: --method {args.method} does not use gold labels (dawid_skene and gold_mv do)")
    import pandas as pd

    frame = pd.read_csv(args.gold)
    for column in (args.item, args.label):
        if column not in frame.columns:
            raise ValueError(f"--gold: {args.gold} has no column {column!r} (columns: {list(frame.columns)})")
    return frame.set_index(args.item)[args.label]


def _build(args: argparse.Namespace) -> Aggregator:
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.method in ("majority_vote", "mv", "wawa", "zero_based_skill", "zbs"):
        return get_aggregator(args.method, tie_break=args.tie_break, seed=args.seed, device=args.device)
    if args.method == "glad":  # crowd-kit's GLAD replayed bit for bit with --crowdkit-compat
        return get_aggregator(args.method, crowdkit_compat=args.crowdkit_compat, device=args.device)
    if args.method in ("mace", "mmsr", "kos"):
        return get_aggregator(args.method, device=args.device)
    if args.method in NEEDS_GOLD:
        if args.gold is None:
            raise ValueError(f"--gold: --method {args.method} needs gold labels for some items (a CSV file)")
        return get_aggregator(args.method, tie_break=args.tie_break, seed=args.seed, device=args.device)
    if args.max_iter is not None:
        print("trinity crowd aggregate: --max-iter is deprecated; use --n-iter (crowd-kit's name)", file=sys.stderr)
        args.n_iter = args.max_iter
    if args.crowdkit_compat and args.smoothing:
        raise ValueError("--crowdkit-compat: crowd-kit does not smooth; drop --smoothing")
    return get_aggregator(
        args.method,
        n_iter=args.n_iter,
        tol=args.tol,
        smoothing=args.smoothing,
        crowdkit_compat=args.crowdkit_compat,
        device=args.device,
    )


def _report(model: Aggregator, args: argparse.Namespace, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = model.table_
    console = Console()
    facts = [
        f"{len(table):,} annotations",
        f"{table.num_items:,} items",
        f"{table.num_workers:,} annotators",
        f"{table.num_classes} classes",
        f"{seconds:.2f} s",
    ]
    if hasattr(model, "n_iter_"):
        facts.append(f"{model.n_iter_} EM iterations")
    if hasattr(model, "ties_"):
        facts.append(f"{model.ties_} ties ({model.tie_break})")  # type: ignore[attr-defined]
    if table.dropped_duplicates:
        facts.append(f"{table.dropped_duplicates} duplicate rows dropped")
    console.print(f"[bold]{type(model).__name__}[/bold]: " + ", ".join(facts) + f" -> {args.out}")
    if args.show <= 0:
        return
    frame = model.worker_frame()
    frame = frame[frame["annotations"] >= args.min_annotations]
    workers = frame.head(args.show)
    view = Table(
        title=f"Least reliable annotators ({len(workers)} of the {len(frame)} with at least "
        f"{args.min_annotations} annotations)"
    )
    view.add_column("annotator")
    view.add_column("annotations", justify="right")
    view.add_column("est. accuracy", justify="right")
    errors = getattr(model, "errors_", None)  # (workers, observed, true)
    confusion = errors.transpose(1, 2) if errors is not None else None
    if confusion is not None:
        view.add_column("most likely error (true -> said)")
    index = {w: k for k, w in enumerate(table.worker_ids)}
    for row in workers.itertuples(index=False):
        cells = [str(row.worker), f"{row.annotations:,}", f"{row.accuracy:.3f}"]
        if confusion is not None:
            matrix = confusion[index[row.worker]].detach().cpu().clone()
            matrix.fill_diagonal_(-1.0)
            true, said = divmod(int(matrix.argmax()), table.num_classes)
            cells.append(f"{table.classes[true]} -> {table.classes[said]} ({float(matrix[true, said]):.2f})")
        view.add_row(*cells)
    console.print(view)


def _read_probabilities(path: str) -> object:
    """``--pred-probs``: a ``.npy`` array (rows in the table's item order) or a CSV indexed by item id."""
    import numpy as np
    import pandas as pd

    if path.endswith(".npy"):
        return np.load(path)
    return pd.read_csv(path, index_col=0)


def _print_quality(tables: Sequence[tuple[pd.DataFrame, str, str]], show: int) -> None:
    """Print the first ``show`` rows of each ``(frame, title, sorted by)``."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for frame, title, by in tables:
        head = frame.head(show)
        view = Table(title=f"{title} ({len(head)} of {len(frame)}, by {by})")
        view.add_column(str(frame.index.name))
        for column in head.columns:
            view.add_column(column, justify="right")
        for key, *row in head.itertuples(name=None):
            view.add_row(str(key), *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        console.print(view)


def quality(args: argparse.Namespace) -> int:
    """``trinity crowd quality``: CROWDLAB's tables of an annotation file (exit code 0 ok, 2 bad input)."""
    from trinity_lightning.crowd.quality import annotators_path, label_quality
    from trinity_lightning.data import DataFormatError, atomic_open

    try:
        if args.show < 0:
            raise ValueError(f"--show: expected a number >= 0, got {args.show}")
        if args.annotators_out is not None and args.out is None:
            raise ValueError("--annotators-out: give --out too (the item table)")
        try:
            probs = _read_probabilities(args.pred_probs) if args.pred_probs is not None else None
        except (OSError, ValueError) as err:
            raise ValueError(f"--pred-probs: cannot read {args.pred_probs} ({err})") from None
        tables = label_quality(
            args.annotations,
            probs,
            aggregator=None if args.aggregator == "frequencies" else args.aggregator,
            calibrate=args.calibrate,
            item=args.item,
            worker=args.worker,
            label=args.label,
            classes=_classes(args.classes),
            duplicates=args.duplicates,
        )
    except (DataFormatError, FileNotFoundError, ValueError, FloatingPointError, OSError) as err:
        message = str(err).replace("pred_probs:", "--pred-probs:").replace("aggregator:", "--aggregator:")
        print(f"trinity crowd quality: {message}", file=sys.stderr)
        return 2
    items_by = args.sort if args.sort in ITEM_COLUMNS else "consensus_quality_score"
    workers_by = args.sort if args.sort in ANNOTATOR_COLUMNS else "annotator_quality"
    down = {args.sort} if args.descending else set()
    items = tables.label_quality.sort_values(items_by, ascending=items_by not in down, kind="stable")
    workers = tables.annotator_stats.sort_values(workers_by, ascending=workers_by not in down, kind="stable")
    if args.out is not None:
        for frame, path in ((items, args.out), (workers, args.annotators_out or annotators_path(args.out))):
            with atomic_open(path, "w") as handle:
                frame.to_csv(handle)
    if args.show:
        first = {True: "highest first", False: "lowest first"}
        _print_quality(
            [
                (items, f"Items, {first[items_by in down]}", items_by),
                (workers, f"Annotators, {first[workers_by in down]}", workers_by),
            ],
            args.show,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trinity crowd ...``; returns the exit code (0 ok, 2 bad input).

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "quality":
        return quality(args)
    from trinity_lightning.crowd.table import AnnotationTable
    from trinity_lightning.data import DataFormatError, atomic_open

    try:
        model = _build(args)
        start = time.perf_counter()
        annotations = AnnotationTable.read(
            args.annotations,
            item=args.item,
            worker=args.worker,
            label=args.label,
            classes=_classes(args.classes),
            duplicates=args.duplicates,
            keep_source_rows=bool(args.crowdkit_compat),  # compat GLAD replays crowd-kit in the file's row order
        )
        gold = _gold(args)
        if gold is not None:
            model.fit(annotations, gold)  # type: ignore[call-arg]
        else:
            model.fit(annotations)
        seconds = time.perf_counter() - start
    except (DataFormatError, FileNotFoundError, ValueError, FloatingPointError) as err:
        print(f"trinity crowd aggregate: {err}", file=sys.stderr)
        return 2
    frame = model.to_frame(probabilities=not args.no_probabilities)
    with atomic_open(args.out, "w") as handle:
        frame.to_csv(handle, index=False)
    _report(model, args, seconds)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
