"""Symbolic + numeric TreeLSTM (issue 16): equation verification accuracy of every baseline, and TreeLSTM throughput.

Accuracy (``--only accuracy``): one generated data set (algebra + trigonometry identities, depths 1-6, half true;
function evaluations), two protocols, ``--seeds`` model seeds:

- *same depths*: symbolic equations of depths 1-4 split at random 80/20;
- *depth extrapolation*: train on depths 1-3 (80 %; the other 20 % is an in-distribution test), test on depth 4
  (the claim) and on depths 5-6 (the curve in docs/img/equations.png).

Models: majority class, a depth/size-only probe (logistic regression on side heights and sizes), the numeric
check (random points into both sides: Davis, arXiv 2105.11479), sympy ``simplify(lhs - rhs) == 0`` (on a
subsample, with a time limit per equation), BiLSTM on the prefix form, TreeNN, TreeLSTM trained on symbolic data,
TreeLSTM trained on symbolic data + function evaluations (numbers as decimal trees). Every network is an
``EquationVerifier`` trained through a Lightning ``Trainer`` with the same hidden size, epochs and batch size; with
several ``--hidden`` sizes (a capacity selection), every network trains at each and the size of best mean
validation accuracy is the one reported (``details.capacity_selection``).

Throughput (``--only throughput``): trees per second, forward + backward, child-sum cell, same sizes, a mix of
random expression trees of 3-63 nodes: our level-batched TreeLSTM vs the same model evaluated node by node, and vs
the ``pytorch-tree-lstm`` package (``treelstm.TreeLSTM``). Data preparation (collate / evaluation orders) is done
before timing for all three.

    python benchmarks/equations.py                      # everything (~35 min on a loaded 2-core machine)
    python benchmarks/equations.py --only throughput    # the timing claims alone (~2 min idle)
    python benchmarks/equations.py --summarize --keep-previous-as accuracy_4710_train   # tables + plots, no training
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from _harness import quiet, trainer
from _results import RESULTS_DIR, claim, command_line, machine, median, read_results, write_json, write_results
from trinity_lightning.equations.generator import (
    EquationGenerator,
    read_jsonl,
    restricted_domain_equations,
    write_jsonl,
)
from trinity_lightning.equations.grammar import Equation, numeric_check, to_sympy
from trinity_lightning.equations.module import EquationVerifier
from trinity_lightning.equations.treelstm import TreeLSTM
from trinity_lightning.equations.trees import Tree, collate_trees

ROOT = Path(__file__).resolve().parents[1]
NAME = "equations"
PAPER = {  # the paper's poster (ICLR 2018): same depths 1-4 / train 1-3, test 4
    "majority": (50.24, 55.22),
    "sympy_simplify": (81.74, None),
    "bilstm": (81.71, 76.40),
    "treenn": (92.06, 88.36),
    "treelstm_sym": (95.18, 93.27),
    "treelstm_symnum": (97.11, 96.17),
}
NEURAL: dict[str, dict[str, Any]] = {
    "bilstm": {"encoder": "bilstm"},
    "treenn": {"encoder": "treenn"},
    "treelstm_sym": {"encoder": "treelstm"},
    "treelstm_symnum": {"encoder": "treelstm"},
}
VALUE_WEIGHT = 0.0  # the symbolic + numeric TreeLSTM's recipe, set on validation runs at depths 1-3 (docs/equations.md)
OWN_NUMBER_SYMBOLS = 1
SYMNUM_VARIANTS: dict[str, tuple[dict[str, Any], int | None]] = {
    # symbolic + numeric TreeLSTM variants (--symnum-variants): model keywords, function evaluations (None: --functions).
    # With validation (--patience > 0), "treelstm_symnum" is the variant of best mean validation accuracy.
    "decimal_tree": ({"own_number_symbols": True, "value_weight": 0.0}, None),
    "value_leaf": ({"number_encoding": "value_leaf", "value_weight": 0.0}, None),
    "value_leaf_f4000": ({"number_encoding": "value_leaf", "value_weight": 0.0}, 4000),
    "decimal_tree_f4000": ({"own_number_symbols": True, "value_weight": 0.0}, 4000),
    # value leaves with the value-regression head trained (weight 0.1): benchmarks/results/equations_value_head/rule.md
    "value_leaf_vw01": ({"number_encoding": "value_leaf", "value_weight": 0.1}, None),
}
WEAK = {"tan", "cot", "sec", "csc", "log"}  # poles or restricted domains


# -- data -------------------------------------------------------------------------------------------------------
def make_data(
    per_depth: int,
    deep: int,
    functions: int,
    seed: int = 0,
    depth4: int | None = None,
    max_tries: int = 200_000,
    arg_decimals: int | None = None,
) -> tuple[list[Equation], dict[str, int]]:
    """Generate the data set: ``per_depth`` symbolic equations of each depth 1-3 and ``depth4`` (``None``:
    ``per_depth``) of depth 4, ``deep`` of depths 5 and 6, ``functions`` function evaluations (arguments rounded to
    ``arg_decimals``, ``None``: the generator's 2), at most ``max_tries`` symbolic candidates. The defaults give the
    data set of the runs before the data-scale study."""
    gen = EquationGenerator(seed=seed, max_depth=6, arg_decimals=arg_decimals)
    four = per_depth if depth4 is None else depth4
    eqs = gen.generate(
        per_depth={1: per_depth, 2: per_depth, 3: per_depth, 4: four, 5: deep, 6: deep},
        functions=functions,
        max_tries=max_tries,
    )
    return eqs, dict(gen.report)


def load_data(path: Path, functions: int) -> tuple[list[Equation], dict[str, int]]:
    """Equations written by ``--write-data`` (generation takes ~15 CPU-minutes at the default sizes): every symbolic
    one, and the first ``functions // 2`` true and ``functions - functions // 2`` false function evaluations in
    file order."""
    eqs = read_jsonl(path)
    want = {True: functions - functions // 2, False: functions // 2}
    out = []
    for e in eqs:
        if e.kind == "function":
            if want[e.label] <= 0:
                continue
            want[e.label] -= 1
        out.append(e)
    if any(want.values()):
        raise ValueError(f"{path}: fewer function evaluations than --functions {functions} asks for")
    report = {
        "read_from_file": 1,
        "symbolic": sum(e.kind == "symbolic" for e in out),
        "function_true": sum(e.kind == "function" and e.label for e in out),
        "function_false": sum(e.kind == "function" and not e.label for e in out),
    }
    return out, report


def protocols(eqs: list[Equation], seed: int = 0) -> dict[str, dict[str, list[Equation]]]:
    rng = random.Random(seed)
    sym = [e for e in eqs if e.kind == "symbolic"]
    fun = [e for e in eqs if e.kind == "function"]
    same = [e for e in sym if e.depth <= 4]
    rng.shuffle(same)
    cut = int(0.8 * len(same))
    shallow = [e for e in sym if e.depth <= 3]
    rng.shuffle(shallow)
    cut3 = int(0.8 * len(shallow))
    return {
        "same_depth": {"train": same[:cut], "test": same[cut:], "functions": fun},
        "extrapolation": {
            "train": shallow[:cut3],
            "test": shallow[cut3:] + [e for e in sym if e.depth >= 4],
            "functions": fun,
        },
    }


def subsample_train(train: list[Equation], per_depth: int) -> list[Equation]:
    """A training set of a data-scale study: per depth, the first ``k`` true and the first ``k`` false equations of
    ``train`` in its order, ``k = min(per_depth // 2, true ones, false ones)`` of that depth (balanced: at depth 1
    the generator runs out of true identities, about 900, long before false ones), in ``train``'s order. The sets
    of two sizes are nested and the test set is unchanged.

    >>> from trinity_lightning.equations.grammar import parse_equation
    >>> eqs = [parse_equation(t) for t in ("x + 0 = x", "x*1 = x", "x*0 = x", "x*0 = 1", "x + 1 = x")]
    >>> for e in eqs[2:]:
    ...     e.label = False
    >>> [e.text() for e in subsample_train(eqs, 4)]
    ['x + 0 = x', 'x*1 = x', 'x*0 = x', 'x*0 = 1']
    """
    if per_depth < 2:
        raise ValueError(f"--train-per-depth: expected a count >= 2 (half true, half false), got {per_depth}")
    available = Counter((e.depth, bool(e.label)) for e in train)
    depths = {e.depth for e in train}
    want = {d: min(per_depth // 2, available[d, True], available[d, False]) for d in depths}
    taken: dict[tuple[int, bool], int] = defaultdict(int)
    out = []
    for e in train:
        key = (e.depth, bool(e.label))
        if taken[key] < want[e.depth]:
            taken[key] += 1
            out.append(e)
    return out


# -- baselines --------------------------------------------------------------------------------------------------
def features(eqs: list[Equation]) -> np.ndarray:
    rows = []
    for e in eqs:
        hl, hr, sl, sr = e.lhs.height(), e.rhs.height(), e.lhs.size(), e.rhs.size()
        rows.append([hl, hr, sl, sr, abs(hl - hr), abs(sl - sr), min(sl, sr), max(sl, sr)])
    return np.asarray(rows, dtype=float)


def probe(train: list[Equation], test: list[Equation]) -> np.ndarray:
    from sklearn.ensemble import GradientBoostingClassifier

    y = np.array([e.label for e in train])
    clf = GradientBoostingClassifier(random_state=0, n_estimators=100, max_depth=3).fit(features(train), y)
    return clf.predict(features(test)).astype(bool)


def numeric_baseline(test: list[Equation], seed: int, points: int = 8) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return np.array([bool(numeric_check(e.lhs, e.rhs, rng, points=points)) for e in test])


class _SimplifyTimeoutError(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _SimplifyTimeoutError


def simplify_baseline(test: list[Equation], limit: float) -> tuple[np.ndarray, int]:
    import sympy

    out, timeouts = [], 0
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for e in test:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                verdict = sympy.simplify(to_sympy(e.lhs) - to_sympy(e.rhs)) == 0
            except _SimplifyTimeoutError:
                verdict, timeouts = False, timeouts + 1
            except Exception:
                verdict = False
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            out.append(bool(verdict))
    finally:
        signal.signal(signal.SIGALRM, old)
    return np.array(out), timeouts


class BestValidation(Callback):
    """Record ``val_acc`` after every epoch and keep a copy of the weights of the best epoch (the first of ties);
    :meth:`restore` loads them back (early stopping's "restore best")."""

    def __init__(self) -> None:
        self.history: list[float] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        acc = float(trainer.callback_metrics["val_acc"]) * 100.0
        if not self.history or acc > max(self.history):
            self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.history.append(round(acc, 2))

    def restore(self, model: torch.nn.Module) -> dict[str, Any]:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        best = int(np.argmax(self.history)) if self.history else -1
        return {
            "val": self.history[best] if self.history else None,
            "best_epoch": best + 1,
            "epochs_run": len(self.history),
            "val_history": self.history,
        }


def split_validation(train: list[Equation], fraction: float) -> tuple[list[Equation], list[Equation]]:
    """``(fit, val)``: ``fraction`` of the training equations held out (``random.Random(123)``, the same for every
    model and seed)."""
    shuffled = list(train)
    random.Random(123).shuffle(shuffled)
    k = round(fraction * len(shuffled))
    return shuffled[k:], shuffled[:k]


def symnum_kwargs(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "treelstm_symnum":
        return {"value_weight": args.value_weight, "own_number_symbols": bool(args.own_number_symbols)}
    if name.startswith("treelstm_symnum_"):
        return dict(SYMNUM_VARIANTS[name.removeprefix("treelstm_symnum_")][0])
    return {}


def hidden_sizes(args: argparse.Namespace) -> list[int]:
    """``--hidden`` as a list (one size, or the candidates of a capacity selection)."""
    return list(args.hidden) if isinstance(args.hidden, (list, tuple)) else [int(args.hidden)]


def train_network(
    name: str,
    train: list[Equation],
    seed: int,
    args: argparse.Namespace,
    val: list[Equation] | None = None,
    hidden: int | None = None,
) -> tuple[EquationVerifier, dict[str, Any]]:
    """Train one network of hidden size ``hidden`` (``None``: the first ``--hidden``). Without ``val``:
    ``args.epochs`` epochs. With ``val`` (the early-stopping rule, the same for every model): up to
    ``args.max_epochs`` epochs, stopped after ``args.patience`` epochs without a better validation accuracy, the best
    epoch's weights restored."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping
    from torch.utils.data import DataLoader

    pl.seed_everything(seed, verbose=False)
    base = "treelstm_symnum" if name.startswith("treelstm_symnum") else name
    size = hidden if hidden is not None else hidden_sizes(args)[0]
    comparator = getattr(args, "comparator", "mlp")
    model = EquationVerifier(
        **NEURAL[base], **symnum_kwargs(name, args), hidden_size=size, lr=args.lr, comparator=comparator
    )
    loader: DataLoader[Any] = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=list)  # type: ignore[arg-type]
    if val is None:
        trainer(max_epochs=args.epochs, accelerator="cpu", devices=1).fit(model, loader)
        return model, {}
    val_loader: DataLoader[Any] = DataLoader(val, batch_size=256, collate_fn=list)  # type: ignore[arg-type]
    best = BestValidation()
    stop = EarlyStopping(monitor="val_acc", mode="max", patience=args.patience, min_delta=0.0)
    trainer(max_epochs=args.max_epochs, accelerator="cpu", devices=1, callbacks=[stop, best]).fit(
        model, loader, val_loader
    )
    return model, best.restore(model)


@dataclass
class NeuralJob:
    """One network training of an accuracy run: ``name`` (a :func:`neural_models` entry) with model seed ``seed``
    on ``fit`` (+ ``functions``), early stopping on ``val`` (``None``: ``--epochs`` epochs), scored on ``test`` and,
    when not empty, on the restricted-domain split ``restricted``. ``hidden``: a candidate hidden size of a capacity
    selection (``--hidden`` with several sizes; recorded as :attr:`record_name`), ``None`` for the one ``--hidden``.
    """

    name: str
    seed: int
    fit: list[Equation]
    val: list[Equation] | None
    test: list[Equation]
    restricted: list[Equation]
    functions: list[Equation]
    hidden: int | None = None

    @property
    def record_name(self) -> str:
        """The model's name in the records: ``name``, or ``name_h<hidden>`` for a capacity-selection candidate."""
        return self.name if self.hidden is None else candidate_name(self.name, self.hidden)


def candidate_name(name: str, hidden: int) -> str:
    """The records' name of network ``name`` at candidate hidden size ``hidden`` (see :func:`choose_hidden`).

    >>> candidate_name("bilstm", 64)
    'bilstm_h64'
    """
    return f"{name}_h{hidden}"


def neural_functions(name: str, split: dict[str, list[Equation]], args: argparse.Namespace) -> list[Equation]:
    """The function evaluations a network trains on: none for the symbolic models, ``--functions`` (or the
    variant's own count) for the symbolic + numeric TreeLSTM."""
    if not name.startswith("treelstm_symnum"):
        return []
    variant = SYMNUM_VARIANTS.get(name.removeprefix("treelstm_symnum_"), ({}, None))
    return take_functions(split["functions"], variant[1] or args.functions)


def train_job(job: NeuralJob, args: argparse.Namespace) -> dict[str, Any]:
    """Train and score one :class:`NeuralJob`: test predictions (``pred``), restricted-domain predictions
    (``restricted_pred``, ``None`` without that split), the validation record of :meth:`BestValidation.restore`
    with the budget (``max_epochs``, ``patience``), training wall and CPU seconds (this process), and for the
    symbolic + numeric TreeLSTM the number of function evaluations and the value error on 200 true ones."""
    torch.set_num_threads(args.threads)
    w, c = time.time(), time.process_time()
    model, validation = train_network(job.name, job.fit + job.functions, job.seed, args, job.val, job.hidden)
    out: dict[str, Any] = {"pred": (model.predict_proba(job.test) > 0.5).numpy(), **validation}
    if job.val is not None:
        out.update(max_epochs=args.max_epochs, patience=args.patience)
    out["train_wall_s"] = round(time.time() - w, 1)
    out["train_cpu_s"] = round(time.process_time() - c, 1)
    out["restricted_pred"] = (model.predict_proba(job.restricted) > 0.5).numpy() if job.restricted else None
    if job.name.startswith("treelstm_symnum"):
        out["functions"] = len(job.functions)
        fun = [e for e in job.functions if e.label][:200]
        values = model.predict_value([e.lhs for e in fun]).numpy()
        truth = np.array([float(e.rhs.label) for e in fun])
        out["value_mae_train_functions"] = float(np.abs(values - truth).mean())
    return out


def _train_job_quietly(job: NeuralJob, args: argparse.Namespace) -> dict[str, Any]:
    quiet()
    return train_job(job, args)


def run_jobs(jobs: list[NeuralJob], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Results of :func:`train_job` for every job, in job order: in this process (``--workers 1``) or in
    ``--workers`` forked processes, one job each at a time (``--threads`` threads each). Every training seeds its
    own generators (``seed_everything``), so the records do not depend on the number of workers (tested)."""
    workers = max(1, min(args.workers, len(jobs)))
    if workers == 1:
        results = []
        for job in jobs:
            results.append(train_job(job, args))
            _log_job(job, results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_train_job_quietly, job, args) for job in jobs]
        results = []
        for job, future in zip(jobs, futures, strict=True):
            results.append(future.result())
            _log_job(job, results[-1])
        return results


def _log_job(job: NeuralJob, result: dict[str, Any]) -> None:
    best = f", best epoch {result['best_epoch']}/{result['epochs_run']}" if "best_epoch" in result else ""
    print(f"trained {job.record_name} seed {job.seed}: {result['train_cpu_s']} CPU-s{best}", flush=True)


def neural_models(args: argparse.Namespace) -> list[str]:
    """The networks a run trains: the symbolic + numeric TreeLSTM once per ``--symnum-variants`` entry (else once,
    from ``--value-weight`` / ``--own-number-symbols``)."""
    names = [n for n in NEURAL if n != "treelstm_symnum"]
    names += [f"treelstm_symnum_{v}" for v in args.symnum_variants] if args.symnum_variants else ["treelstm_symnum"]
    if args.networks is not None:  # one process per group of networks (pooled with --merge)
        names = [
            n
            for n in names
            if n in args.networks or (n.startswith("treelstm_symnum") and "treelstm_symnum" in args.networks)
        ]
    return names


def take_functions(functions: list[Equation], n: int) -> list[Equation]:
    """The first ``n // 2`` false and ``n - n // 2`` true function evaluations, in order (as :func:`load_data`)."""
    want = {True: n - n // 2, False: n // 2}
    out = []
    for e in functions:
        if want[e.label] > 0:
            want[e.label] -= 1
            out.append(e)
    return out


def choose_symnum(per_seed: dict[str, dict[str, dict[int, Any]]]) -> dict[str, Any]:
    """Per protocol, the symbolic + numeric variant of best mean validation accuracy (over its seeds) becomes
    ``treelstm_symnum`` (its records copied, ``"variant"`` added). Only validation accuracy chooses; test accuracy
    is never read. Returns the choice and every variant's validation mean."""
    out: dict[str, Any] = {}
    for pname, models in per_seed.items():
        variants = {
            m.removeprefix("treelstm_symnum_"): seeds
            for m, seeds in models.items()
            if m.startswith("treelstm_symnum_")
            and not CANDIDATE.match(m)  # a hidden-size candidate (choose_hidden chose among them first)
            and seeds
            and all(s.get("val") is not None for s in seeds.values())
        }
        if not variants:
            continue
        common = set.intersection(*(set(seeds) for seeds in variants.values()))  # compare on the same seeds
        means = {v: float(np.mean([seeds[k]["val"] for k in sorted(common)])) for v, seeds in variants.items()}
        chosen = max(means, key=lambda v: (means[v], -list(means).index(v)))
        models["treelstm_symnum"] = {k: {**r, "variant": chosen} for k, r in variants[chosen].items()}
        out[pname] = {
            "chosen": chosen,
            "val_mean": {v: round(m, 2) for v, m in means.items()},
            "seeds_compared": sorted(common),
        }
    return out


CANDIDATE = re.compile(r"^(?P<network>.+)_h(?P<hidden>[0-9]+)$")
HIDDEN_RULE = (
    "per network, the candidate hidden size of best mean validation accuracy over the seeds every candidate has "
    "(ties: the smaller size); test accuracy is recorded for every candidate but never read by the choice"
)


def choose_hidden(per_seed: dict[str, dict[str, dict[int, Any]]]) -> dict[str, Any]:
    """Capacity selection: per protocol and network, the candidate records ``<network>_h<size>`` (see
    :func:`candidate_name`) of best mean validation accuracy become ``<network>`` (records copied, ``"hidden"``
    added); the candidates stay. Means are over the seeds every candidate of the network has; ties go to the smaller
    size. Only validation accuracy chooses. Returns, per protocol and network, the chosen size, the seeds compared
    and every candidate's validation and test accuracy (mean and per seed), epochs run and training CPU seconds.

    >>> per_seed = {"extrapolation": {"bilstm_h32": {0: {"acc": 70.0, "val": 88.0}},
    ...                               "bilstm_h64": {0: {"acc": 60.0, "val": 89.0}}}}
    >>> choose_hidden(per_seed)["extrapolation"]["bilstm"]["chosen_hidden"]
    64
    >>> per_seed["extrapolation"]["bilstm"][0]
    {'acc': 60.0, 'val': 89.0, 'hidden': 64}
    """
    out: dict[str, Any] = {}
    for pname, models in per_seed.items():
        networks: dict[str, dict[int, dict[int, Any]]] = defaultdict(dict)
        for model, seeds in list(models.items()):
            match = CANDIDATE.match(model)
            if match and seeds and all(s.get("val") is not None for s in seeds.values()):
                networks[match["network"]][int(match["hidden"])] = seeds
        for network, candidates in networks.items():
            common = sorted(set.intersection(*(set(seeds) for seeds in candidates.values())))
            if not common:
                raise ValueError(f"capacity selection of {network!r} ({pname}): the candidates share no seed")
            means = {h: float(np.mean([seeds[k]["val"] for k in common])) for h, seeds in candidates.items()}
            chosen = max(sorted(means), key=lambda h: (means[h], -h))
            models[network] = {k: {**r, "hidden": chosen} for k, r in candidates[chosen].items()}
            out.setdefault(pname, {})[network] = {
                "chosen_hidden": chosen,
                "seeds_compared": common,
                "candidates": {
                    h: {
                        "val_mean": round(means[h], 4),
                        "val_per_seed": [candidates[h][k]["val"] for k in common],
                        "test_mean": float(np.mean([candidates[h][k]["acc"] for k in common])),
                        "test_per_seed": [candidates[h][k]["acc"] for k in common],
                        "epochs_run": [candidates[h][k].get("epochs_run") for k in common],
                        "best_epoch": [candidates[h][k].get("best_epoch") for k in common],
                        "train_cpu_s": round(sum(candidates[h][k].get("train_cpu_s", 0.0) for k in common), 1),
                    }
                    for h in sorted(candidates)
                },
            }
    return out


def restricted_split(train: list[Equation], args: argparse.Namespace) -> tuple[list[Equation], dict[str, Any]]:
    """The restricted-domain split (depths 2-4, half true), minus anything in the training set (keys)."""
    eqs, report = restricted_domain_equations(
        per_depth=args.restricted, seed=args.restricted_seed, max_depth=4, exclude={e.key() for e in train}
    )
    return eqs, dict(report)


def restricted_scores(pred: np.ndarray, eqs: list[Equation]) -> dict[str, Any]:
    depths = np.array([e.depth for e in eqs])
    return {
        "acc": accuracy(pred, eqs),
        "by_depth": {int(d): accuracy(pred, eqs, depths == d) for d in sorted(set(depths.tolist()))},
    }


def accuracy(pred: np.ndarray, test: list[Equation], mask: np.ndarray | None = None) -> float:
    labels = np.array([e.label for e in test])
    if mask is not None:
        pred, labels = pred[mask], labels[mask]
    return float(100.0 * (pred == labels).mean()) if len(labels) else float("nan")


def run_accuracy(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    t0 = time.process_time()
    w0 = time.time()
    worker_cpu_s = 0.0
    most = max([args.functions] + [SYMNUM_VARIANTS[v][1] or 0 for v in args.symnum_variants or []])
    if args.data is not None:
        eqs, report = load_data(args.data, most)
    else:
        eqs, report = make_data(args.per_depth, args.deep, args.functions)
    gen_time = time.time() - w0
    print(f"generated {len(eqs)} equations in {gen_time:.0f} s: {report}", flush=True)
    splits = {k: v for k, v in protocols(eqs).items() if k in args.protocols}
    if args.train_per_depth is not None:  # a data-scale study: a nested subset of the training part
        if set(splits) != {"extrapolation"}:
            raise SystemExit("--train-per-depth: only with --protocols extrapolation")
        splits["extrapolation"]["train"] = subsample_train(splits["extrapolation"]["train"], args.train_per_depth)
    per_seed: dict[str, dict[str, dict[int, Any]]] = {p: defaultdict(dict) for p in splits}
    simplify_info: dict[str, Any] = {}
    restricted: list[Equation] = []
    restricted_report: dict[str, Any] = {}
    for pname, split in splits.items():
        train, test = split["train"], split["test"]
        fit, val = split_validation(train, args.val_fraction) if args.patience > 0 else (train, None)
        if pname == "extrapolation" and args.restricted > 0:
            w = time.time()
            restricted, restricted_report = restricted_split(train, args)
            restricted_report["wall_s"] = round(time.time() - w, 1)
            print(f"restricted-domain split: {len(restricted)} equations, {restricted_report}", flush=True)
        on_restricted = pname == "extrapolation" and bool(restricted)
        depths = np.array([e.depth for e in test])
        weak = np.array([any(n.label in WEAK for _, n in (*e.lhs.subtrees(), *e.rhs.subtrees())) for e in test])
        main_mask = depths <= 4 if pname == "same_depth" else depths == 4

        def record(
            model: str,
            seed: int,
            pred: np.ndarray,
            pname: str = pname,
            depths: np.ndarray = depths,
            weak: np.ndarray = weak,
            main_mask: np.ndarray = main_mask,
            test: list[Equation] = test,
        ) -> None:
            per_seed[pname][model][seed] = {
                "acc": accuracy(pred, test, main_mask),
                "by_depth": {int(d): accuracy(pred, test, depths == d) for d in sorted(set(depths.tolist()))},
                "weak_domain": accuracy(pred, test, main_mask & weak),
            }
            print(f"{pname:14s} {model:16s} seed {seed}: {per_seed[pname][model][seed]['acc']:.2f}", flush=True)

        majority = np.mean([e.label for e in train]) >= 0.5
        probe_pred = probe(train, test)
        idx = np.flatnonzero(main_mask)[: args.simplify_n]
        w = time.time()
        simp, timeouts = simplify_baseline([test[i] for i in idx], args.simplify_limit)
        simplify_info[pname] = {
            "n": len(idx),
            "timeouts": timeouts,
            "limit_s": args.simplify_limit,
            "wall_s": round(time.time() - w, 1),
            "acc": accuracy(simp, [test[i] for i in idx]),
        }
        print(f"{pname} sympy simplify: {simplify_info[pname]}", flush=True)
        for seed in args.seeds:
            record("majority", seed, np.full(len(test), majority))
            record("depth_size_probe", seed, probe_pred)
            record("numeric_check", seed, numeric_baseline(test, seed))
            if on_restricted:
                per_seed[pname]["majority"][seed]["restricted_domain"] = restricted_scores(
                    np.full(len(restricted), majority), restricted
                )
                per_seed[pname]["numeric_check"][seed]["restricted_domain"] = restricted_scores(
                    numeric_baseline(restricted, seed), restricted
                )
                record("numeric_check_64", seed, numeric_baseline(test, seed, points=64))
                per_seed[pname]["numeric_check_64"][seed]["restricted_domain"] = restricted_scores(
                    numeric_baseline(restricted, seed, points=64), restricted
                )
        sizes: list[int | None] = [*hidden_sizes(args)] if len(hidden_sizes(args)) > 1 else [None]
        jobs = [
            NeuralJob(
                name,
                seed,
                fit,
                val,
                test,
                restricted if on_restricted else [],
                neural_functions(name, split, args),
                hidden,
            )
            for seed in args.seeds
            for name in neural_models(args)
            for hidden in sizes
        ]
        results = run_jobs(jobs, args)
        if args.workers > 1:  # the workers' CPU time is not this process's
            worker_cpu_s += sum(r["train_cpu_s"] for r in results)
        for job, result in zip(jobs, results, strict=True):
            record(job.record_name, job.seed, result.pop("pred"))
            restricted_pred = result.pop("restricted_pred")
            per_seed[pname][job.record_name][job.seed].update(result)
            if restricted_pred is not None:
                per_seed[pname][job.record_name][job.seed]["restricted_domain"] = restricted_scores(
                    restricted_pred, restricted
                )
    capacity = choose_hidden(per_seed)
    choice = choose_symnum(per_seed)
    summary = summarise(per_seed)
    for pname in summary:
        summary[pname]["sympy_simplify"] = {"mean": simplify_info[pname]["acc"], "subsample": simplify_info[pname]}
    tag = "_".join(args.protocols)
    n = {
        p: {
            "train": len(s["train"]),
            "test": len(s["test"]),
            "functions": len(s["functions"]),
            "train_by_depth": dict(sorted(Counter(e.depth for e in s["train"]).items())),
            "test_by_depth": dict(sorted(Counter(e.depth for e in s["test"]).items())),
        }
        for p, s in splits.items()
    }
    details = {
        "accuracy": summary,
        "per_seed": {p: {m: dict(s) for m, s in models.items()} for p, models in per_seed.items()},
        **({"symnum_choice": choice} if choice else {}),
        **({"capacity_selection": {"rule": HIDDEN_RULE, **capacity}} if capacity else {}),
        "paper": {k: {"same_depth": v[0], "extrapolation": v[1]} for k, v in PAPER.items()},
        "sizes": n,
        "generator_report": report,
        **(
            {
                "restricted_domain_split": {
                    "n": len(restricted),
                    "true": sum(e.label for e in restricted),
                    "by_depth": {int(d): sum(e.depth == d for e in restricted) for d in (2, 3, 4)},
                    "recipe": (
                        f"restricted_domain_equations(per_depth={args.restricted}, seed={args.restricted_seed}, "
                        "max_depth=4, max_domain_fraction=0.5, points=64, exclude=<keys of the training set>)"
                    ),
                    "report": restricted_report,
                }
            }
            if restricted
            else {}
        ),
        "generation_wall_s": round(gen_time, 1),
        "settings": {
            "seeds": list(args.seeds),
            "per_depth": args.per_depth,
            "deep_per_depth": args.deep,
            "functions": args.functions,
            "hidden": hidden_sizes(args)[0] if len(hidden_sizes(args)) == 1 else hidden_sizes(args),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "symnum_value_weight": args.value_weight,
            "symnum_own_number_symbols": args.own_number_symbols,
            "comparator": getattr(args, "comparator", "mlp"),
            "data": (
                f"{os.path.relpath(args.data, ROOT)} (written by --write-data; see load_data)"
                if args.data is not None
                else "generated in the run (make_data)"
            ),
            "restricted_per_depth": args.restricted,
            "train_per_depth": args.train_per_depth,
            "threads": torch.get_num_threads(),
        },
        f"settings_{tag}": {
            "seeds": list(args.seeds),
            "per_depth": args.per_depth,
            **(
                {
                    "epochs_rule": f"early stopping on validation accuracy: max {args.max_epochs} epochs, patience "
                    f"{args.patience}, best epoch restored; validation = {args.val_fraction:.0%} of the training "
                    "equations (random.Random(123)), the same for every model and seed",
                    "max_epochs": args.max_epochs,
                    "patience": args.patience,
                    "val_fraction": args.val_fraction,
                    "symnum_variants": {v: SYMNUM_VARIANTS[v] for v in args.symnum_variants or []},
                    **(
                        {"hidden_candidates": hidden_sizes(args), "hidden_rule": HIDDEN_RULE}
                        if len(hidden_sizes(args)) > 1
                        else {"hidden": hidden_sizes(args)[0]}
                    ),
                }
                if args.patience > 0
                else {"epochs": args.epochs}
            ),
        },
        f"accuracy_cpu_s_{tag}": round(time.process_time() - t0 + worker_cpu_s, 1),
        f"accuracy_wall_s_{tag}": round(time.time() - w0, 1),
        f"load_average_after_{tag}": machine().get("load_average"),
        "plot": os.path.relpath(args.plot, ROOT),
    }
    if not has_claim_models(summary):  # a run of some networks only (--networks): pooled later with --merge
        return [], details
    plot(summary, args.plot)
    return accuracy_claims(summary["extrapolation"], len(args.seeds)), details


def has_claim_models(summary: dict[str, Any]) -> bool:
    """Whether the extrapolation summary holds the models the claims read."""
    return {"bilstm", "treelstm_sym", "treelstm_symnum"} <= set(summary.get("extrapolation", {}))


ABLATION: dict[
    str, dict[str, Any] | None
] = {  # symbolic + numeric variants compared on validation equations of the training depths (never depth 4)
    "symbolic": None,
    "numeric_shared_value0.5": {"own_number_symbols": False, "value_weight": 0.5},
    "numeric_shared_value0": {"own_number_symbols": False, "value_weight": 0.0},
    "numeric_own_value0.5": {"own_number_symbols": True, "value_weight": 0.5},
    "numeric_own_value0": {"own_number_symbols": True, "value_weight": 0.0},
}


def run_numeric_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """Why function evaluations hurt, measured at the training depths only: the symbolic equations of depths 1-3 are
    shuffled (``random.Random(0)``), 80 % kept as in the accuracy protocol's training part, 10 % of those held out as
    validation (``random.Random(123)``); each variant of :data:`ABLATION` trains a TreeLSTM (same settings as the
    accuracy runs) on the rest (+ the function evaluations), scored on the validation equations and, where the data
    file holds more function evaluations than ``--functions``, on up to 600 unseen ones."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    if args.data is None:
        raise SystemExit("--only numeric_ablation needs --data (see --write-data)")
    every = read_jsonl(args.data)
    eqs, _ = load_data(args.data, args.functions)
    shallow = [e for e in eqs if e.kind == "symbolic" and e.depth <= 3]
    random.Random(0).shuffle(shallow)
    train = shallow[: int(0.8 * len(shallow))]
    random.Random(123).shuffle(train)
    val, train = train[: len(train) // 10], train[len(train) // 10 :]
    functions = [e for e in eqs if e.kind == "function"]
    ids = {e.key() for e in functions}
    unseen = [e for e in every if e.kind == "function" and e.key() not in ids][:600]
    out: dict[str, Any] = {"n_train": len(train), "n_val": len(val), "n_functions": len(functions)}
    for name, numeric in ABLATION.items():
        for seed in args.seeds:
            pl.seed_everything(seed, verbose=False)
            variant: dict[str, Any] = numeric or {}
            model = EquationVerifier(**variant, hidden_size=hidden_sizes(args)[0], lr=args.lr)
            data = train + (functions if numeric else [])
            loader: DataLoader[Any] = DataLoader(data, batch_size=args.batch_size, shuffle=True, collate_fn=list)  # type: ignore[arg-type]
            trainer(max_epochs=args.epochs, accelerator="cpu", devices=1).fit(model, loader)
            pred = (model.predict_proba(val) > 0.5).numpy()
            depths = np.array([e.depth for e in val])
            record: dict[str, Any] = {
                "val": accuracy(pred, val),
                "val_by_depth": {d: accuracy(pred, val, depths == d) for d in (1, 2, 3)},
            }
            if unseen:
                record["unseen_functions_acc"] = accuracy((model.predict_proba(unseen) > 0.5).numpy(), unseen)
            out.setdefault(name, {})[seed] = record
            print(f"ablation {name} seed {seed}: {record}", flush=True)
    return out


def summarise(per_seed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mean, spread and per-depth accuracy over seeds of every (protocol, model)."""
    summary: dict[str, dict[str, Any]] = {}
    for pname, models in per_seed.items():
        summary[pname] = {}
        for model, seeds in models.items():
            accs = [s["acc"] for s in seeds.values()]
            depth_keys = sorted({d for s in seeds.values() for d in s["by_depth"]})
            summary[pname][model] = {
                "mean": float(np.mean(accs)),
                "std": float(np.std(accs)),
                "per_seed": accs,
                "by_depth": {d: float(np.mean([s["by_depth"][d] for s in seeds.values()])) for d in depth_keys},
                "weak_domain": float(np.mean([s["weak_domain"] for s in seeds.values()])),
            }
            if all("restricted_domain" in s for s in seeds.values()):
                rd = [s["restricted_domain"] for s in seeds.values()]
                summary[pname][model]["restricted_domain"] = {
                    "mean": float(np.mean([r["acc"] for r in rd])),
                    "std": float(np.std([r["acc"] for r in rd])),
                    "by_depth": {d: float(np.mean([r["by_depth"][d] for r in rd])) for d in rd[0]["by_depth"]},
                }
    return summary


def accuracy_claims(ext: dict[str, Any], n_seeds: int, trained_on: str = "depths 1-3") -> list[dict[str, Any]]:
    """The two accuracy claims from an extrapolation summary; ``trained_on`` names the training set."""
    return [
        claim(
            "treelstm_vs_lstm_depth_extrapolation",
            f"verification accuracy on depth-4 equations after training on {trained_on}, TreeLSTM (symbolic data) vs "
            f"BiLSTM on the prefix form, mean of {n_seeds} seeds (percentage points)",
            ours=ext["treelstm_sym"]["mean"],
            anchor=ext["bilstm"]["mean"],
            unit="%",
            better="higher",
            target_delta=12.0,
        ),
        claim(
            "numeric_data_gain_depth_extrapolation",
            f"verification accuracy on depth-4 equations after training on {trained_on}, TreeLSTM trained on "
            f"symbolic + function-evaluation data vs symbolic data only, mean of {n_seeds} seeds (percentage points)",
            ours=ext["treelstm_symnum"]["mean"],
            anchor=ext["treelstm_sym"]["mean"],
            unit="%",
            better="higher",
            target_delta=2.0,
        ),
    ]


def _int_keys(record: Any) -> Any:
    """JSON turned the integer keys (seeds, depths) into strings: turn them back."""
    if isinstance(record, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in record.items()}
    return record


def merge_seed_runs(dirs: list[Path], args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Combine accuracy runs made as separate processes (one per seed, ``--results-dir`` each; same data settings)
    into one: per-seed records pooled, summary and claims recomputed; sympy's subsample from the run that has one;
    CPU seconds summed, wall seconds the longest."""
    runs = [read_results(NAME, d)["details"] for d in dirs]
    per_seed: dict[str, dict[str, dict[int, Any]]] = {}
    for run in runs:
        for pname, models in _int_keys(run["per_seed"]).items():
            for model, seeds in models.items():
                per_seed.setdefault(pname, {}).setdefault(model, {}).update(seeds)
    capacity = choose_hidden(per_seed)
    choice = choose_symnum(per_seed)
    summary = summarise(per_seed)
    details: dict[str, Any] = {**runs[0], "accuracy": summary, "per_seed": per_seed}
    for run in runs[1:]:  # keys only another run has (another protocol's settings, sizes, CPU time)
        for key, value in run.items():
            details.setdefault(key, value)
        details["sizes"] = {**run.get("sizes", {}), **details.get("sizes", {})}
    for pname in summary:
        mine = [r["accuracy"][pname]["sympy_simplify"] for r in runs if pname in r["accuracy"]]
        done = [m for m in mine if m["subsample"]["n"]]
        summary[pname]["sympy_simplify"] = done[0] if done else mine[0]
        for key in ("accuracy_cpu_s", "accuracy_wall_s"):
            values = [r[f"{key}_{pname}"] for r in runs if f"{key}_{pname}" in r]
            details[f"{key}_{pname}"] = round(sum(values) if "cpu" in key else max(values), 1)
    seeds = sorted({s for models in per_seed.values() for m in models.values() for s in m})
    for key in [k for k in details if k.startswith("settings")]:
        details[key] = {**details[key], "seeds": seeds}
    if choice:
        details["symnum_choice"] = choice
    if capacity:
        details["capacity_selection"] = {"rule": HIDDEN_RULE, **capacity}
    details["merged_from"] = [d.name for d in dirs]  # names only: the run directories are often temporary
    if not has_claim_models(summary):
        return [], details
    plot(summary, args.plot)
    details["plot"] = os.path.relpath(args.plot, ROOT)  # not the first seed run's own plot
    return accuracy_claims(summary["extrapolation"], len(seeds)), details


SCALE_NETWORKS = ("bilstm", "treelstm_sym", "treelstm_symnum")
SCALE_BASELINES = ("majority", "depth_size_probe", "numeric_check")
SCALE_RULE = (
    "data-scale study (fixed before any of its test accuracies was read): one data file (seed 0; 16000 symbolic "
    "equations asked per depth 1-3, 2000 of depth 4, 300 of depths 5 and 6, 20000 function evaluations with "
    "3-decimal arguments); the extrapolation split as before (80 % of depths 1-3 for training, random.Random(0); "
    "the other 20 % and depths 4-6 for test, the same test set for every size); a size of N per depth trains on "
    "the first k true and k false equations of each depth of the training part, k = min(N/2, true ones, false "
    "ones) (subsample_train: nested, balanced sets; depth 1 has fewer) and on 2000 x N/1600 function evaluations "
    "(the first half true, half false in file order); at every size the three claim networks (bilstm, "
    "treelstm_sym, treelstm_symnum = value leaves) train at hidden 64, batch 32, Adam 3e-3, one thread, max 40 "
    "epochs, patience 3, best validation epoch restored, validation = 10 % of the size's training equations "
    "(random.Random(123)), seeds 0, 1, 2; depth 4 chooses nothing. The claims read the LARGEST size at which all "
    "three networks finished all three seeds; the previous claims (4710 training equations, the earlier data file) "
    "are kept as accuracy_4710_train"
)


def _pool_runs(runs: list[dict[str, Any]]) -> dict[str, dict[int, Any]]:
    """The extrapolation per-seed records of several runs of one size, pooled (later runs win a repeated seed)."""
    pooled: dict[str, dict[int, Any]] = {}
    for run in runs:
        for model, seeds in _int_keys(run["per_seed"]).get("extrapolation", {}).items():
            pooled.setdefault(model, {}).update(seeds)
    return pooled


def scale_size_record(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """One size of a data-scale study from the ``details`` of its runs (same ``train_per_depth``): split sizes, per
    network the depth-4 accuracy (mean, std, per seed), accuracy by depth (mean and per seed), validation accuracy,
    best epoch / epochs run and training CPU seconds per seed, the baselines' means, both claim gaps (mean and per
    seed, over the seeds all three networks have) and whether every network has every seed of ``seeds``.

    >>> rec = lambda acc: {"acc": acc, "by_depth": {4: acc}, "val": 90.0, "best_epoch": 2, "epochs_run": 5,
    ...                    "train_cpu_s": 10.0}
    >>> per_seed = {"bilstm": {0: rec(70.0)}, "treelstm_sym": {0: rec(80.0)},
    ...             "treelstm_symnum_value_leaf": {0: rec(81.0)}}
    >>> run = {"per_seed": {"extrapolation": per_seed}, "settings": {"train_per_depth": 8},
    ...        "sizes": {"extrapolation": {"train": 20, "test": 9, "functions": 10}}}
    >>> out = scale_size_record([run], seeds=[0])
    >>> out["complete"], out["gap_treelstm_vs_lstm"]["mean"], out["gap_numeric"]["per_seed"]
    (True, 10.0, [1.0])
    """
    per_seed = _pool_runs(runs)
    choose_symnum({"extrapolation": per_seed})  # type: ignore[dict-item]
    first = runs[0]
    sizes = first["sizes"]["extrapolation"]
    out: dict[str, Any] = {
        "train_per_depth": first["settings"]["train_per_depth"],
        "train": sizes["train"],
        **{k: sizes[k] for k in ("train_by_depth", "test", "test_by_depth") if k in sizes},
        "fit": sizes["train"]
        - round(first.get("settings_extrapolation", {}).get("val_fraction", 0.1) * sizes["train"]),
        "functions": None,
        "networks": {},
        "baselines": {},
    }
    for name in SCALE_BASELINES:
        if per_seed.get(name):
            out["baselines"][name] = float(np.mean([r["acc"] for r in per_seed[name].values()]))
            depths = sorted({d for r in per_seed[name].values() for d in r["by_depth"]})
            out.setdefault("baselines_by_depth", {})[name] = {
                d: float(np.mean([r["by_depth"][d] for r in per_seed[name].values()])) for d in depths
            }
    for name in SCALE_NETWORKS:
        records = per_seed.get(name, {})
        if not records:
            continue
        ks = sorted(records)
        depths = sorted({d for r in records.values() for d in r["by_depth"]})
        out["networks"][name] = {
            "seeds": ks,
            "mean": float(np.mean([records[k]["acc"] for k in ks])),
            "std": float(np.std([records[k]["acc"] for k in ks])),
            "per_seed": [records[k]["acc"] for k in ks],
            "by_depth": {d: float(np.mean([records[k]["by_depth"][d] for k in ks])) for d in depths},
            "by_depth_per_seed": {d: [records[k]["by_depth"][d] for k in ks] for d in depths},
            "val_per_seed": [records[k].get("val") for k in ks],
            "val_mean": float(np.mean([records[k]["val"] for k in ks]))
            if all("val" in records[k] for k in ks)
            else None,
            "best_epoch": [records[k].get("best_epoch") for k in ks],
            "epochs_run": [records[k].get("epochs_run") for k in ks],
            "train_cpu_s": [records[k].get("train_cpu_s") for k in ks],
            "train_cpu_s_total": round(sum(records[k].get("train_cpu_s", 0.0) for k in ks), 1),
            **({"variant": records[ks[0]]["variant"]} if "variant" in records[ks[0]] else {}),
        }
        if name == "treelstm_symnum":
            out["functions"] = records[ks[0]].get("functions")
    nets = out["networks"]
    out["complete"] = all(set(seeds) <= set(nets.get(n, {}).get("seeds", [])) for n in SCALE_NETWORKS)
    if all(n in nets for n in SCALE_NETWORKS):
        common = sorted(set.intersection(*(set(nets[n]["seeds"]) for n in SCALE_NETWORKS)))

        def acc(n: str) -> list[float]:
            return [nets[n]["per_seed"][nets[n]["seeds"].index(k)] for k in common]

        for key, (a, b) in {
            "gap_treelstm_vs_lstm": ("treelstm_sym", "bilstm"),
            "gap_numeric": ("treelstm_symnum", "treelstm_sym"),
        }.items():
            diff = [x - y for x, y in zip(acc(a), acc(b), strict=True)]
            out[key] = {"seeds": common, "mean": float(np.mean(diff)), "per_seed": [round(d, 4) for d in diff]}
    out["cpu_s"] = round(sum(r.get("accuracy_cpu_s_extrapolation", 0.0) for r in runs), 1)
    out["wall_s"] = round(sum(r.get("accuracy_wall_s_extrapolation", 0.0) for r in runs), 1)
    out["load_average_after"] = [r.get("load_average_after_extrapolation") for r in runs]
    return out


def runs_by_size(dirs: list[Path], option: str) -> dict[int, list[dict[str, Any]]]:
    """The ``details`` of the accuracy runs in ``dirs`` (their ``--results-dir``), grouped by their
    ``settings.train_per_depth``; a run without one is an error naming ``option``."""
    by_size: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in dirs:
        run = read_results(NAME, d)["details"]
        size = run.get("settings", {}).get("train_per_depth")
        if size is None:
            raise SystemExit(f"{option}: {d} is not a --train-per-depth run (settings.train_per_depth missing)")
        by_size[int(size)].append(run)
    return by_size


def run_scale_study(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``--scale-study DIR ...``: the runs' sizes (their ``settings.train_per_depth``; several runs of one size, e.g.
    one per network or seed, are pooled), the learning curve, and the claims of the largest complete size
    (:data:`SCALE_RULE`); without a complete size, no claims."""
    by_size = runs_by_size(args.scale_study, "--scale-study")
    sizes = {k: scale_size_record(runs, list(args.seeds)) for k, runs in sorted(by_size.items())}
    complete = [k for k, rec in sizes.items() if rec["complete"]]
    details: dict[str, Any] = {
        "data_scale": {
            "rule": SCALE_RULE,
            "seeds": list(args.seeds),
            "sizes": sizes,
            "curve": scale_curve(sizes),
            "claims_read": max(complete) if complete else None,
            "runs": [d.name for d in args.scale_study],
        }
    }
    if args.scale_plot is not None:
        scale_plot(sizes, args.scale_plot)
        details["data_scale"]["plot"] = os.path.relpath(args.scale_plot, ROOT)
    if not complete:
        return [], details
    return scale_claims(details["data_scale"]), details


def scale_curve(sizes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The learning curve of a data-scale study: per size (ascending) its training equations, whether it is
    complete, each claim network's depth-4 mean and both gaps' means."""
    return [
        {
            "train_per_depth": k,
            "train": rec["train"],
            "complete": rec["complete"],
            **{n: rec["networks"][n]["mean"] for n in SCALE_NETWORKS if n in rec["networks"]},
            **{g: rec[g]["mean"] for g in ("gap_treelstm_vs_lstm", "gap_numeric") if g in rec},
        }
        for k, rec in sorted(sizes.items())
    ]


def stored_size_run(rec: dict[str, Any]) -> dict[str, Any]:
    """A stored data-scale size (``details.data_scale.sizes[N]``, :func:`scale_size_record`'s output) as the
    ``details`` of one accuracy run, so that :func:`scale_size_record` can pool it with new runs of that size
    (``--scale-add``) when the study's run folders are gone: each network's per-seed records (the symbolic + numeric
    one under its variant's name, as a run stores it), the split sizes, CPU and wall seconds. The study stored its
    baselines as means only, so a pooled size takes its baselines from the new runs.

    >>> net = {"seeds": [0], "per_seed": [80.0], "by_depth_per_seed": {"4": [80.0]}, "val_per_seed": [95.0],
    ...        "best_epoch": [3], "epochs_run": [6], "train_cpu_s": [9.5]}
    >>> rec = {"train_per_depth": 8, "train": 20, "fit": 18, "test": 9, "functions": 10, "cpu_s": 12.0,
    ...        "wall_s": 13.0, "networks": {"bilstm": net, "treelstm_sym": net,
    ...                                     "treelstm_symnum": {**net, "variant": "value_leaf"}}}
    >>> run = stored_size_run(rec)
    >>> sorted(run["per_seed"]["extrapolation"]), run["per_seed"]["extrapolation"]["bilstm"][0]["by_depth"]
    (['bilstm', 'treelstm_sym', 'treelstm_symnum_value_leaf'], {4: 80.0})
    >>> scale_size_record([run], seeds=[0])["networks"]["treelstm_symnum"]["per_seed"]
    [80.0]
    """
    per_seed: dict[str, dict[int, Any]] = {}
    for name, net in rec["networks"].items():
        records: dict[int, Any] = {}
        for i, seed in enumerate(net["seeds"]):
            records[int(seed)] = {
                "acc": net["per_seed"][i],
                "by_depth": {int(d): v[i] for d, v in net["by_depth_per_seed"].items()},
                "val": net["val_per_seed"][i],
                "best_epoch": net["best_epoch"][i],
                "epochs_run": net["epochs_run"][i],
                "train_cpu_s": net["train_cpu_s"][i],
                **({"functions": rec["functions"]} if name == "treelstm_symnum" and rec.get("functions") else {}),
            }
        per_seed[f"{name}_{net['variant']}" if "variant" in net else name] = records
    train = int(rec["train"])
    return {
        "per_seed": {"extrapolation": per_seed},
        "settings": {"train_per_depth": rec["train_per_depth"]},
        "settings_extrapolation": {"val_fraction": (train - int(rec.get("fit", train))) / train},
        "sizes": {
            "extrapolation": {k: rec[k] for k in ("train", "train_by_depth", "test", "test_by_depth") if k in rec}
        },
        "accuracy_cpu_s_extrapolation": rec.get("cpu_s", 0.0),
        "accuracy_wall_s_extrapolation": rec.get("wall_s", 0.0),
    }


def _split_signature(sizes: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between runs pooled into one size: the training and test split sizes, by depth."""
    return tuple(
        {str(k): v for k, v in sizes[key].items()} if isinstance(sizes.get(key), dict) else sizes.get(key)
        for key in ("train", "train_by_depth", "test", "test_by_depth")
    )


def scale_status(sizes: dict[int, dict[str, Any]], claims_read: int | None, seeds: list[int]) -> str:
    """One line on where a data-scale study stands: the complete sizes, the incomplete ones (with their seeds) and
    the size the claims read.

    >>> sizes = {8: {"complete": True, "networks": {}}, 20: {"complete": False, "networks": {"bilstm": {"seeds": [0]}}}}
    >>> scale_status(sizes, 8, [0, 1, 2])
    'done: sizes 8 per depth complete (seeds 0, 1, 2, all three networks); 20 per depth incomplete (bilstm seeds 0); the claims read 8'
    """
    done = [str(k) for k, r in sorted(sizes.items()) if r["complete"]]
    part = [
        f"{k} per depth incomplete ("
        + "; ".join(f"{n} seeds {', '.join(map(str, net['seeds']))}" for n, net in r["networks"].items())
        + ")"
        for k, r in sorted(sizes.items())
        if not r["complete"]
    ]
    text = f"done: sizes {', '.join(done) or 'none'} per depth complete (seeds {', '.join(map(str, seeds))}, all "
    text += "three networks)" + "".join(f"; {p}" for p in part)
    return text + (f"; the claims read {claims_read}" if claims_read is not None else "; no claims (no complete size)")


def scale_add(args: argparse.Namespace) -> dict[str, Any]:
    """``--scale-add DIR ...``: accuracy runs of the claim networks (their ``--results-dir``, ``--train-per-depth``
    runs on the study's data file) added to the results file's stored data-scale study, whose own run folders need
    not exist. A size the study has is pooled with its stored per-seed records (:func:`stored_size_run`; a new run
    wins a repeated seed) and must have the same split sizes (else the data file differs: an error); a new size is
    added. Then the complete sizes, the curve and the size the claims read (:data:`SCALE_RULE`: the largest complete
    one) are recomputed, and the tables, claims and plots rebuilt as ``--summarize`` does."""
    path = args.results_dir / f"{NAME}.json"
    previous = read_results(NAME, args.results_dir)
    study = previous["details"].get("data_scale", {})
    if "sizes" not in study:
        raise SystemExit(f"--scale-add: {path} has no data-scale study (details.data_scale.sizes); run --scale-study")
    sizes = _int_keys(study["sizes"])
    seeds = [int(k) for k in study["seeds"]]
    by_size = runs_by_size(args.scale_add, "--scale-add")
    for size, runs in sorted(by_size.items()):
        stored = sizes.get(size)
        pooled = runs
        if stored is not None:
            want = _split_signature(stored)
            for run in runs:
                got = _split_signature(run["sizes"]["extrapolation"])
                if got != want:
                    raise SystemExit(
                        f"--scale-add: size {size}: a run's split (train, train_by_depth, test, test_by_depth) "
                        f"{got} differs from the stored size's {want}: not the study's data file"
                    )
            pooled = [stored_size_run(stored), *runs]
        rec = scale_size_record(pooled, seeds)
        if stored is not None:
            rec["load_average_after"] = [*stored.get("load_average_after", []), *rec["load_average_after"][1:]]
            if "baselines" in stored and not stored.get("baselines_by_depth"):
                rec["baselines_stored_before"] = stored["baselines"]
        sizes[size] = rec
    complete = [k for k, rec in sizes.items() if rec["complete"]]
    claims_read = max(complete) if complete else None
    added = {
        "runs": [d.name for d in args.scale_add],
        "sizes": sorted(by_size),
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d"),
        "claims_read_before": study.get("claims_read"),
        "claims_read_after": claims_read,
    }
    study = {
        **study,
        "sizes": sizes,
        "curve": scale_curve(sizes),
        "claims_read": claims_read,
        "runs": [*study.get("runs", []), *added["runs"]],
        "added": [*study.get("added", []), added],
        "status": scale_status(sizes, claims_read, seeds),
    }
    write_json(path, {**previous, "details": {**previous["details"], "data_scale": study}}, inline_number_lists=True)
    return summarize(args)


def scale_claims(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The two accuracy claims of a data-scale study (``details.data_scale``): its size ``claims_read``."""
    size = int(study["claims_read"])
    chosen = _int_keys(study["sizes"])[size]
    summary = {n: {"mean": chosen["networks"][n]["mean"]} for n in SCALE_NETWORKS}
    trained_on = f"{chosen['train']} equations of depths 1-3 (data-scale study, {size} per depth)"
    return accuracy_claims(summary, len(study["seeds"]), trained_on)


# The earlier accuracy run's records: when the claims move to a data-scale study, these top-level details keys move
# under --keep-previous-as (adopt_scale_run), so that details.accuracy, per_seed, sizes and the plot are one run.
EARLIER_RUN_KEYS = (
    "accuracy",
    "per_seed",
    "sizes",
    "settings",
    "settings_extrapolation",
    "settings_same_depth",
    "capacity_selection",
    "symnum_choice",
    "generator_report",
    "generation_wall_s",
    "plot",
    "results_file_note",
    *(f"{k}_{p}" for p in ("extrapolation", "same_depth") for k in ("accuracy_cpu_s", "accuracy_wall_s")),
    *(f"load_average_after_{p}" for p in ("extrapolation", "same_depth")),
)
KEEP_DEFAULT = "accuracy_before_data_scale"


def scale_accuracy(study: dict[str, Any]) -> dict[str, Any]:
    """``details.accuracy``, ``per_seed``, ``sizes`` and ``accuracy_source`` rebuilt from the size a data-scale study's
    claims read (``study["claims_read"]``), in the accuracy run's formats: per network the stored depth-4 accuracy
    (mean, std, per seed), accuracy by depth (mean, per seed) and validation accuracy; per baseline its depth-4 mean,
    and its accuracy by depth only where the study stored it (``baselines_by_depth``; older studies did not).

    >>> net = {"seeds": [0], "mean": 80.0, "std": 0.0, "per_seed": [80.0], "by_depth": {"4": 80.0, "5": 60.0},
    ...        "by_depth_per_seed": {"4": [80.0], "5": [60.0]}, "val_per_seed": [95.0], "val_mean": 95.0,
    ...        "best_epoch": [3], "epochs_run": [6], "train_cpu_s": [9.5]}
    >>> size = {"train_per_depth": 8, "train": 20, "test": 9, "functions": 10, "baselines": {"majority": 50.0},
    ...         "networks": {"bilstm": net, "treelstm_sym": net, "treelstm_symnum": {**net, "variant": "value_leaf"}}}
    >>> out = scale_accuracy({"claims_read": 8, "sizes": {"8": size}})
    >>> ext = out["accuracy"]["extrapolation"]
    >>> ext["treelstm_sym"]["by_depth"], ext["majority"]["by_depth"], out["per_seed"]["extrapolation"]["bilstm"][0]
    ({4: 80.0, 5: 60.0}, {4: 50.0}, {'acc': 80.0, 'by_depth': {4: 80.0, 5: 60.0}, 'val': 95.0, 'best_epoch': 3, \
'epochs_run': 6, 'train_cpu_s': 9.5})
    >>> out["per_seed"]["extrapolation"]["treelstm_symnum"][0]["variant"], out["sizes"]["extrapolation"]["train"]
    ('value_leaf', 20)
    """
    if study.get("claims_read") is None:
        raise SystemExit("details.data_scale.claims_read: no complete size (no claims to rebuild the tables from)")
    size = int(study["claims_read"])
    rec = _int_keys(study["sizes"])[size]
    ext: dict[str, Any] = {}
    per_seed: dict[str, dict[int, Any]] = {}
    for name, mean in rec["baselines"].items():
        by_depth = rec.get("baselines_by_depth", {}).get(name)
        ext[name] = {"mean": mean, "by_depth": by_depth if by_depth else {4: mean}}
        if not by_depth:
            ext[name]["stored"] = "depth-4 mean only (the data-scale study did not store this baseline by depth)"
    for name, net in rec["networks"].items():
        ext[name] = {
            k: net[k] for k in ("mean", "std", "per_seed", "seeds", "by_depth", "by_depth_per_seed", "val_mean")
        }
        if "variant" in net:
            ext[name]["variant"] = net["variant"]
        per_seed[name] = {}
        for i, seed in enumerate(net["seeds"]):
            per_seed[name][seed] = {
                "acc": net["per_seed"][i],
                "by_depth": {d: v[i] for d, v in net["by_depth_per_seed"].items()},
                **{k: net[f"{k}_per_seed" if k == "val" else k][i] for k in ("val", "best_epoch", "epochs_run")},
                "train_cpu_s": net["train_cpu_s"][i],
                **({"variant": net["variant"]} if "variant" in net else {}),
            }
    sizes = {k: rec[k] for k in ("train_per_depth", "train", "train_by_depth", "fit", "functions", "test") if k in rec}
    sizes.update({k: rec[k] for k in ("test_by_depth",) if k in rec})
    return {
        "accuracy": {"extrapolation": ext},
        "per_seed": {"extrapolation": per_seed},
        "sizes": {"extrapolation": sizes},
        "accuracy_source": {"data_scale_size": size, "train": rec["train"]},
    }


def adopt_scale_run(details: dict[str, Any], keep_as: str) -> dict[str, Any]:
    """``details`` with ``accuracy``, ``per_seed`` and ``sizes`` set to the data-scale size the claims read
    (:func:`scale_accuracy`). The first time (no ``accuracy_source`` yet) the earlier run's keys
    (:data:`EARLIER_RUN_KEYS`) move under ``keep_as``, merged with what ``keep_as`` already holds (its previous
    claims); a copy there of the earlier ``accuracy.extrapolation`` entries is dropped when it equals them (one copy
    kept), else kept as ``extrapolation_as_kept``. Adopting again changes nothing."""
    out = dict(details)
    new = scale_accuracy(details.get("data_scale", {}))
    if "accuracy_source" not in details and "accuracy" in details:
        kept = dict(details.get(keep_as, {}))
        earlier = {k: out.pop(k) for k in EARLIER_RUN_KEYS if k in out}
        if "results_file_note" in earlier:  # it described the file before the tables moved
            earlier["results_file_note_before_summarize"] = earlier.pop("results_file_note")
        copy = kept.pop("extrapolation", None)
        ext = earlier["accuracy"].get("extrapolation", {})
        if copy is not None and any(ext.get(m) != v for m, v in copy.items()):
            kept["extrapolation_as_kept"] = copy
        out[keep_as] = {**kept, **earlier}
    note = new["accuracy_source"]
    note["note"] = (
        f"details.accuracy, per_seed, sizes and plot are the run the accuracy claims read: details.data_scale.sizes"
        f"[{note['data_scale_size']}] ({note['train']} training equations of depths 1-3, the study's own data file "
        "and test set), rebuilt from details.data_scale by --summarize (no training): per network (bilstm, "
        "treelstm_sym, treelstm_symnum) the depth-4 accuracy per seed, accuracy by depth 1-6 (mean and per seed) "
        "and validation accuracy; per baseline what the study stored ('stored' says when it is the depth-4 mean "
        "only). The study trained no TreeNN, decimal-tree, sympy or same-depth run. "
        + (
            f"The earlier data file's tables (every model, both protocols) are under {keep_as}."
            if keep_as in out
            else ""
        )
    )
    out.update(new)
    return out


def draw_accuracy_plots(details: dict[str, Any], args: argparse.Namespace, keep_as: str) -> None:
    """``--plot`` from ``details.accuracy`` (titled with the data-scale size when it is one) and, when ``keep_as``
    holds the earlier table, its plot beside (``<plot stem>_<keep_as minus 'accuracy_'>.png``); the paths are
    recorded as ``plot`` in ``details`` and in ``details[keep_as]``."""
    source = details.get("accuracy_source")
    title = None
    if source:
        title = f"Data-scale study: trained on {source['train']:,} equations of depths 1-3"
    plot(_int_keys(details["accuracy"]), args.plot, title=title)
    details["plot"] = os.path.relpath(args.plot, ROOT)
    kept = details.get(keep_as)
    if isinstance(kept, dict) and "extrapolation" in kept.get("accuracy", {}):
        path = args.plot.with_name(f"{args.plot.stem}_{keep_as.removeprefix('accuracy_')}{args.plot.suffix}")
        train = kept.get("sizes", {}).get("extrapolation", {}).get("train")
        trained = f"{train:,} equations" if isinstance(train, int) else "equations"
        plot(_int_keys(kept["accuracy"]), path, title=f"Earlier data file: trained on {trained} of depths 1-3")
        kept["plot"] = os.path.relpath(path, ROOT)


def attach_record(runs: list[dict[str, Any]], study: dict[str, Any] | None) -> dict[str, Any]:
    """An experiment reported beside the claims (``--attach``): its accuracy runs' networks pooled over seeds (depth-4
    test accuracy mean / per seed, accuracy by depth, validation accuracy, best epoch, epochs run, training CPU-s),
    and, when the claims read a data-scale study (``study``) of the same training-set size, a validation comparison
    per seed with the stored networks of that size: for each network run, ``val_minus_stored[<stored net>]`` per
    seed and mean, over the seeds both have (validation only). The variant copied to ``treelstm_symnum`` by the
    run's validation choice is left out (its ``treelstm_symnum_<variant>`` record is there).

    >>> rec = lambda acc, val: {"acc": acc, "by_depth": {4: acc}, "val": val, "best_epoch": 2, "epochs_run": 5,
    ...                          "train_cpu_s": 10.0, "weak_domain": acc}
    >>> run = {"per_seed": {"extrapolation": {"treelstm_symnum_x": {0: rec(80.0, 96.0)}}},
    ...        "settings": {"train_per_depth": 8}, "sizes": {"extrapolation": {"train": 20}}}
    >>> stored = {"seeds": [0, 1], "per_seed": [81.0, 82.0], "val_per_seed": [97.0, 98.0]}
    >>> study = {"claims_read": 8, "sizes": {"8": {"networks": {"treelstm_sym": stored}}}}
    >>> out = attach_record([{"details": run, "command": "c"}], study)
    >>> out["networks"]["treelstm_symnum_x"]["val_minus_stored"]["treelstm_sym"]
    {'seeds': [0], 'per_seed': [-1.0], 'mean': -1.0}
    """
    per_seed = _pool_runs([r["details"] for r in runs])
    first = runs[0]["details"]
    size = first.get("settings", {}).get("train_per_depth")
    stored: dict[str, Any] = {}
    if study and study.get("claims_read") is not None and size is not None and int(size) == int(study["claims_read"]):
        stored = _int_keys(study["sizes"])[int(size)]["networks"]
    networks: dict[str, Any] = {}
    for name, records in per_seed.items():
        if not all("val" in r for r in records.values()):
            continue  # the baselines: not part of the experiment
        if name == "treelstm_symnum" and any(n.startswith("treelstm_symnum_") for n in per_seed):
            continue  # the variant chosen on validation: a copy of a treelstm_symnum_<variant> record
        ks = sorted(records)
        net: dict[str, Any] = {
            "seeds": ks,
            "mean": float(np.mean([records[k]["acc"] for k in ks])),
            "per_seed": [records[k]["acc"] for k in ks],
            "by_depth": {
                d: float(np.mean([records[k]["by_depth"][d] for k in ks])) for d in records[ks[0]]["by_depth"]
            },
            "val_per_seed": [records[k]["val"] for k in ks],
            "val_mean": float(np.mean([records[k]["val"] for k in ks])),
            **{key: [records[k].get(key) for k in ks] for key in ("best_epoch", "epochs_run", "train_cpu_s")},
        }
        for key in ("variant", "hidden", "functions"):
            if key in records[ks[0]]:
                net[key] = records[ks[0]][key]
        net["val_minus_stored"] = {}
        for other, rec in stored.items():
            common = [k for k in ks if k in rec["seeds"]]
            diff = [round(records[k]["val"] - rec["val_per_seed"][rec["seeds"].index(k)], 4) for k in common]
            net["val_minus_stored"][other] = {
                "seeds": common,
                "per_seed": diff,
                "mean": float(np.mean(diff)) if diff else None,
            }
        networks[name] = net
    return {
        "runs": [r.get("command") for r in runs],
        "train_per_depth": size,
        "sizes": first.get("sizes", {}).get("extrapolation"),
        "settings": first.get("settings_extrapolation"),
        "comparator": first.get("settings", {}).get("comparator", "mlp"),
        "networks": networks,
        "cpu_s": round(sum(r["details"].get("accuracy_cpu_s_extrapolation", 0.0) for r in runs), 1),
        "wall_s": round(sum(r["details"].get("accuracy_wall_s_extrapolation", 0.0) for r in runs), 1),
        "load_average_after": [r["details"].get("load_average_after_extrapolation") for r in runs],
        "machine": [r.get("machine", {}).get("cpu") for r in runs],
        **({"stored_size": int(size)} if stored else {}),
    }


def attach(args: argparse.Namespace) -> dict[str, Any]:
    """``--attach DIR ... --attach-as KEY``: an experiment's accuracy runs (their ``--results-dir``) recorded as
    ``details[KEY]`` of the results file (:func:`attach_record`), beside the claims: claims, tables, date, machine and
    command unchanged; notes already under KEY (a rule, a decision) are kept."""
    if not args.attach_as:
        raise SystemExit("--attach needs --attach-as KEY (the details key the experiment is recorded under)")
    previous = read_results(NAME, args.results_dir)
    details = previous["details"]
    runs = [read_results(NAME, d) for d in args.attach]
    record = attach_record(runs, details.get("data_scale"))
    record["run_dirs"] = [os.path.relpath(Path(d).resolve(), ROOT) for d in args.attach]
    if args.attach_rule is not None:
        if not args.attach_rule.is_file():
            raise SystemExit(f"--attach-rule: no file {args.attach_rule}")
        record["rule"] = os.path.relpath(args.attach_rule.resolve(), ROOT)
    details[args.attach_as] = {**details.get(args.attach_as, {}), **record}
    claims = previous["claims"]
    if getattr(args, "attach_claims_move", False):  # the rule said so before the runs (--attach-rule)
        if args.attach_rule is None:
            raise SystemExit(
                "--attach-claims-move needs --attach-rule (the rule, written before the runs, that says so)"
            )
        attached_claims(details[args.attach_as])  # an error if the experiment is not complete
        details[args.attach_as]["claims_move"] = True
        details["claims_moved_to"] = args.attach_as
        claims = _claims_from_attached(claims, details)
    if getattr(args, "attach_plot", None) is not None:
        rec = details[args.attach_as]
        nets = {SCALE_NAME.get(n, n): {"by_depth": _int_keys(v["by_depth"])} for n, v in rec["networks"].items()}
        train = (rec.get("sizes") or {}).get("train")
        title = f"{args.attach_as}: trained on {train:,} equations of depths 1-3" if train else args.attach_as
        if rec.get("comparator"):
            title += f", comparator {rec['comparator']}"
        plot({"extrapolation": nets}, args.attach_plot, title=title)
        rec["plot"] = os.path.relpath(args.attach_plot.resolve(), ROOT)
    path = args.results_dir / f"{NAME}.json"
    write_json(path, {**previous, "claims": claims, "details": details}, inline_number_lists=True)
    print(f"wrote {path}: details.{args.attach_as}")
    return {"claims": claims, "details": details}


COMPARATORS = {"dot": "the official code's Equality node (l . r + b)", "mlp": "an MLP on [l * r, |l - r|]"}
# the claim networks under the names an attached run records them (the symbolic + numeric one by its variant)
SCALE_NAME = {"treelstm_symnum_value_leaf": "treelstm_symnum"}


def attached_claims(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The two accuracy claims read from an attached experiment (:func:`attach_record`) whose rule moved them there
    (``--attach-claims-move``): every claim network must have the same seeds, at least three.

    >>> net = lambda m: {"seeds": [0, 1, 2], "mean": m}
    >>> rec = {"train_per_depth": 8, "sizes": {"train": 20}, "settings": {}, "comparator": "dot",
    ...        "networks": {"bilstm": net(70.0), "treelstm_sym": net(80.0), "treelstm_symnum_value_leaf": net(83.0)}}
    >>> [round(c["delta"], 1) for c in attached_claims(rec)]
    [10.0, 3.0]
    """
    nets = {SCALE_NAME.get(n, n): v for n, v in record["networks"].items()}
    missing = [n for n in SCALE_NETWORKS if n not in nets]
    seeds = {tuple(nets[n]["seeds"]) for n in SCALE_NETWORKS if n in nets}
    if missing or len(seeds) != 1 or len(next(iter(seeds))) < 3:
        raise SystemExit(
            f"the attached experiment cannot carry the claims: networks missing {missing}, seeds per network "
            f"{sorted(seeds)} (every claim network needs the same seeds, at least three)"
        )
    ext = {n: {"mean": nets[n]["mean"]} for n in SCALE_NETWORKS}
    comparator = record.get("comparator") or (record.get("settings") or {}).get("comparator")
    trained_on = f"{record['sizes']['train']} equations of depths 1-3 ({record['train_per_depth']} per depth)"
    if comparator:
        described = COMPARATORS.get(comparator, repr(comparator))
        trained_on += f", every network comparing the two sides with {described}"
    return accuracy_claims(ext, len(next(iter(seeds))), trained_on)


def _claims_from_attached(claims: list[dict[str, Any]], details: dict[str, Any]) -> list[dict[str, Any]]:
    """``claims`` with the two accuracy claims read from ``details[details["claims_moved_to"]]`` when a rule moved
    them to an attached experiment; unchanged otherwise."""
    key = details.get("claims_moved_to")
    if not key:
        return claims
    fresh = {c["id"]: c for c in attached_claims(details[key])}
    return [fresh.get(c["id"], c) for c in claims]


def summarize(args: argparse.Namespace) -> dict[str, Any]:
    """``--summarize``: rebuild the results file from its stored records, no training: with a data-scale study,
    ``details.accuracy``/``per_seed``/``sizes`` and ``--plot`` become the size the claims read (the earlier table
    moves under ``--keep-previous-as`` once, and its plot is redrawn beside, ``<plot>_<key minus 'accuracy_'>.png``),
    the study's plot (``--scale-plot``) is redrawn and the two accuracy claims recomputed from it. Date, machine and
    command stay the run's; running it again writes the same file."""
    previous = read_results(NAME, args.results_dir)
    details = previous["details"]
    claims = previous["claims"]
    keep_as = args.keep_previous_as or KEEP_DEFAULT
    if details.get("data_scale", {}).get("claims_read") is not None:
        details = adopt_scale_run(details, keep_as)
        fresh = {c["id"]: c for c in scale_claims(details["data_scale"])}
        claims = [fresh.get(c["id"], c) for c in claims]
        scale_plot(_int_keys(details["data_scale"]["sizes"]), args.scale_plot)
        details["data_scale"]["plot"] = os.path.relpath(args.scale_plot, ROOT)
    claims = _claims_from_attached(claims, details)  # a rule moved them to an attached experiment
    draw_accuracy_plots(details, args, keep_as)
    details["summarize_command"] = command_line()
    path = args.results_dir / f"{NAME}.json"
    write_json(path, {**previous, "claims": claims, "details": details}, inline_number_lists=True)
    print(f"wrote {path}")
    return {"claims": claims, "details": details}


def scale_plot(sizes: dict[int, dict[str, Any]], path: Path) -> None:
    """Depth-4 accuracy of the three claim networks and both gaps against the training-set size: means joined over
    the complete sizes, an incomplete size's mean as an open marker, every seed as a small dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.0))
    labels = {"bilstm": "BiLSTM", "treelstm_sym": "TreeLSTM symbolic", "treelstm_symnum": "TreeLSTM + evaluations"}
    series: list[tuple[Any, str, list[tuple[int, bool, float, list[float]]], float | None]] = []
    for name, label in labels.items():
        pts = [(r["train"], r["complete"], r["networks"][name]) for r in sizes.values() if name in r["networks"]]
        series.append((left, label, [(x, c, n["mean"], n["per_seed"]) for x, c, n in pts], None))
    for key, label, target in (
        ("gap_treelstm_vs_lstm", "TreeLSTM - BiLSTM", 12.0),
        ("gap_numeric", "+ evaluations - symbolic", 2.0),
    ):
        pts = [(r["train"], r["complete"], r[key]) for r in sizes.values() if key in r]
        series.append((right, label, [(x, c, g["mean"], g["per_seed"]) for x, c, g in pts], target))
    for ax, label, points, target in series:
        if not points:
            continue
        done = [(x, m) for x, c, m, _ in points if c]
        line = ax.plot([x for x, _ in done], [m for _, m in done], marker="o", label=label)[0]
        color = line.get_color()
        for x, c, m, seeds in points:
            ax.scatter([x] * len(seeds), seeds, s=8, color=color, alpha=0.5)
            if not c:
                ax.scatter([x], [m], s=40, facecolors="none", edgecolors=color)
        if target is not None:
            ax.axhline(target, color=color, linestyle=":", linewidth=1)
    right.axhline(0.0, color="grey", linewidth=0.5)
    xs = sorted({rec["train"] for rec in sizes.values()})
    for ax in (left, right):  # the sizes themselves as ticks
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("training equations (depths 1-3; open marker: not every seed)")
        ax.legend(fontsize=8)
    left.set_ylabel("accuracy at depth 4 (%)")
    right.set_ylabel("gap at depth 4 (points; dotted: target)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(summary: dict[str, Any], path: Path, title: str | None = None) -> None:
    """Accuracy against equation depth, extrapolation protocol (mean of seeds); a model stored at one depth only
    (a baseline of the data-scale study) is one marker, labelled so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    ext = summary["extrapolation"]
    models = ("numeric_check", "treelstm_symnum", "treelstm_sym", "treenn", "bilstm", "depth_size_probe", "majority")
    for i, model in enumerate(models):  # one colour per model, whichever models a plot has
        by_depth = ext.get(model, {}).get("by_depth")
        if not by_depth:  # not in this summary, or a mean without depths (nothing to draw)
            continue
        depths = sorted(by_depth)
        label = model if len(depths) > 1 else f"{model} (depth {depths[0]} only)"
        ax.plot(depths, [by_depth[d] for d in depths], marker="o", label=label, color=f"C{i}")
    ax.axvspan(0.5, 3.5, color="0.92", zorder=0)
    ax.text(2.0, 45, "training depths", ha="center", color="0.4")
    ax.set_xlabel("equation depth")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title(f"{title or 'Trained on depths 1-3'} (mean of seeds)", fontsize=10)
    ax.set_ylim(40, 101)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the axes: no line hidden
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- throughput -------------------------------------------------------------------------------------------------
def random_trees(n: int, seed: int) -> list[Tree]:
    rng = random.Random(seed)

    def grow(depth: int) -> Tree:
        if depth == 0 or rng.random() < 0.3:
            return Tree("leaf")
        k = rng.choice((1, 2, 2))
        return Tree("node", [grow(depth - 1) for _ in range(k)])

    out: list[Tree] = []
    while len(out) < n:
        t = grow(rng.randint(2, 8))
        if 3 <= t.size() <= 63:
            out.append(t)
    return out


def anchor_inputs(trees: list[Tree], x: torch.Tensor, order: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch in pytorch-tree-lstm's format (features, node_order, adjacency_list, edge_order)."""
    from treelstm import batch_tree_input, calculate_evaluation_orders

    items, offset = [], 0
    for tree in trees:
        nodes = tree.nodes()[::-1]  # pre-order-ish: parents before children, root first
        index = {id(nd): i for i, nd in enumerate(nodes)}
        adjacency = [[index[id(nd)], index[id(c)]] for nd in nodes for c in nd.children]
        node_order, edge_order = calculate_evaluation_orders(adjacency, len(nodes))
        feats = x[order[offset : offset + len(nodes)]]
        items.append(
            {
                "features": feats,
                "node_order": torch.tensor(node_order),
                "adjacency_list": torch.tensor(adjacency, dtype=torch.long),
                "edge_order": torch.tensor(edge_order),
            }
        )
        offset += len(nodes)
    return batch_tree_input(items)


def time_it(fn: Any, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run_throughput(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    torch.manual_seed(0)
    H, B = args.throughput_hidden, args.throughput_batch
    trees = random_trees(B, seed=0)
    vocab = {"leaf": 0, "node": 1}
    batch = collate_trees(trees, vocab)
    ours = TreeLSTM(H, H, cell="childsum")
    x = torch.randn(batch.num_nodes, H)

    def step_ours(schedule: str = "level") -> None:
        ours.zero_grad()
        h, _ = ours(batch, x, schedule=schedule)
        h[batch.roots].sum().backward()

    times: dict[str, list[float]] = {}
    times["ours_batched"] = time_it(step_ours, args.repeats)
    times["ours_node_by_node"] = time_it(lambda: step_ours("node"), max(2, args.repeats // 4))
    anchor_version = None
    try:
        import importlib.metadata

        import treelstm

        anchor_version = importlib.metadata.version("pytorch-tree-lstm")
        anchor = treelstm.TreeLSTM(H, H)
        order = torch.arange(batch.num_nodes)  # features are random: any order gives the same work
        inputs = anchor_inputs(trees, x, order)

        def step_anchor() -> None:
            anchor.zero_grad()
            h, _ = anchor(inputs["features"], inputs["node_order"], inputs["adjacency_list"], inputs["edge_order"])
            h.sum().backward()

        times["pytorch_tree_lstm"] = time_it(step_anchor, args.repeats)
    except ImportError as err:
        print(f"pytorch-tree-lstm not importable ({err}); its claim is skipped", flush=True)
    tps = {k: B / median(v) for k, v in times.items()}
    print({k: round(v, 1) for k, v in tps.items()}, flush=True)
    claims = [
        claim(
            "treelstm_batching_speedup",
            f"trees/s, forward + backward, child-sum TreeLSTM hidden {H}, {B} random expression trees of 3-63 nodes "
            f"(median of {args.repeats} / {max(2, args.repeats // 4)} runs): level-batched vs the same model node by node",
            ours=tps["ours_batched"],
            anchor=tps["ours_node_by_node"],
            unit="trees/s",
            better="higher",
            target=10.0,
        )
    ]
    if "pytorch_tree_lstm" in tps:
        claims.append(
            claim(
                "treelstm_throughput_vs_pytorch_tree_lstm",
                f"trees/s, forward + backward, child-sum TreeLSTM hidden {H}, {B} random expression trees of 3-63 "
                f"nodes, median of {args.repeats}: ours vs pytorch-tree-lstm {anchor_version} (its batching, "
                "evaluation orders precomputed)",
                ours=tps["ours_batched"],
                anchor=tps["pytorch_tree_lstm"],
                unit="trees/s",
                better="higher",
                target=2.0,
            )
        )
    details = {
        "throughput": {
            "trees_per_s": tps,
            "seconds": {k: [round(t, 5) for t in v] for k, v in times.items()},
            "trees": B,
            "nodes": batch.num_nodes,
            "levels": len(batch.levels),
            "hidden": H,
            "anchor": f"pytorch-tree-lstm {anchor_version}" if anchor_version else None,
            "load_average": machine().get("load_average"),
            "command": "OMP_NUM_THREADS=1 python benchmarks/equations.py --only throughput",
        }
    }
    return claims, details


def previous_run(previous: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """What a ``--networks`` run replaces in the results file, kept beside the previous summaries
    (``--keep-previous-as KEY`` writes it as ``KEY_details``): the replaced models' per-seed records, the previous
    claims, settings, model choice, CPU/wall seconds, load and the runs it was merged from."""
    old = previous["details"]
    out: dict[str, Any] = {"claims": previous["claims"], "command": previous.get("command")}
    out["per_seed"] = {
        p: {m: old["per_seed"][p][m] for m in models if m in old.get("per_seed", {}).get(p, {})}
        for p, models in details["per_seed"].items()
    }
    for p in details["per_seed"]:
        for key in ("settings", "accuracy_cpu_s", "accuracy_wall_s", "load_average_after"):
            if f"{key}_{p}" in old:
                out[f"{key}_{p}"] = old[f"{key}_{p}"]
    for key in ("symnum_choice", "merged_from"):
        if key in old:
            out[key] = old[key]
    return out


def merge_models(old: dict[str, Any], details: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A ``--networks`` run into an existing results file, model by model: in each protocol it ran, the models it
    trained or scored replace the previous ones (every seed), the others are kept (listed in the protocol's
    settings as ``models_kept_from_previous_run``); the plot is redrawn from the merged summary when this run gave
    the claims."""
    out = dict(details)
    per_seed = _int_keys(old.get("per_seed", {}))
    accuracy = _int_keys(old.get("accuracy", {}))
    for p, models in details["per_seed"].items():
        kept = [m for m in per_seed.get(p, {}) if m not in models]
        per_seed[p] = {**per_seed.get(p, {}), **models}
        accuracy[p] = {**accuracy.get(p, {}), **details["accuracy"].get(p, {})}
        if kept:
            out[f"settings_{p}"] = {**details[f"settings_{p}"], "models_kept_from_previous_run": kept}
    out["per_seed"], out["accuracy"] = per_seed, accuracy
    out["sizes"] = {**old.get("sizes", {}), **details.get("sizes", {})}
    if has_claim_models(details["accuracy"]) and "extrapolation" in accuracy:
        plot(accuracy, args.plot)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("all", "accuracy", "throughput", "numeric_ablation"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--protocols", nargs="+", choices=("same_depth", "extrapolation"), default=["same_depth", "extrapolation"]
    )
    parser.add_argument("--per-depth", type=int, default=2000, help="symbolic equations per depth 1-4 (half true)")
    parser.add_argument("--deep", type=int, default=300, help="symbolic equations per depth 5 and 6 (test only)")
    parser.add_argument("--depth4", type=int, help="symbolic equations of depth 4 (default: --per-depth)")
    parser.add_argument("--max-tries", type=int, default=200_000, help="generator: most symbolic candidates drawn")
    parser.add_argument(
        "--arg-decimals", type=int, help="generator: decimals of function-evaluation arguments (default: 2)"
    )
    parser.add_argument("--functions", type=int, default=2000, help="function evaluations (half true)")
    parser.add_argument("--restricted", type=int, default=150, help="restricted-domain split: equations per depth 2-4")
    parser.add_argument("--restricted-seed", type=int, default=1)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[32],
        help="hidden size of every network; several sizes: each network trains at each (records <network>_h<size>) "
        "and the size of best mean validation accuracy becomes <network> (needs --patience; details: "
        "capacity_selection)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--comparator",
        choices=("mlp", "dot"),
        default="mlp",
        help="how every network compares the two sides: mlp ([l*r, |l-r|] -> MLP) or dot (the official code's l.r + b)",
    )
    parser.add_argument(
        "--value-weight", type=float, default=VALUE_WEIGHT, help="symbolic + numeric TreeLSTM: value-regression weight"
    )
    parser.add_argument(
        "--own-number-symbols",
        type=int,
        choices=(0, 1),
        default=OWN_NUMBER_SYMBOLS,
        help="symbolic + numeric TreeLSTM: decimal trees with their own operator cells and digit leaves",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="> 0: every network trains with early stopping on a validation split (--val-fraction of the training "
        "equations), up to --max-epochs, this many epochs without improvement; 0: --epochs epochs",
    )
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=list(NEURAL),
        help="train only these networks (treelstm_symnum: every --symnum-variants entry); the runs of one seed made "
        "as several processes pool with --merge",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="train the networks of this run in this many forked processes (--threads threads each); the records "
        "are the same as with 1",
    )
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument(
        "--train-per-depth",
        type=int,
        help="data-scale study: train on the first N equations per depth (half true) of the extrapolation training "
        "part (see subsample_train); the test set is unchanged",
    )
    parser.add_argument(
        "--scale-study",
        type=Path,
        nargs="+",
        help="combine accuracy runs of the claim networks at several --train-per-depth sizes (their --results-dir) "
        "into details.data_scale; the claims read the largest complete size (SCALE_RULE)",
    )
    parser.add_argument(
        "--scale-add",
        type=Path,
        nargs="+",
        help="no training: add accuracy runs of --train-per-depth sizes (their --results-dir) to the results file's "
        "stored data-scale study (pooled per size with its stored seeds; the study's own run folders need not exist), "
        "then rebuild claims, tables and plots as --summarize does (see scale_add)",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="no training: rebuild the results file's tables and plots from its stored records; with a data-scale "
        "study, details.accuracy / per_seed / sizes and --plot become the size the claims read and the earlier "
        "table moves under --keep-previous-as (see summarize)",
    )
    parser.add_argument(
        "--attach",
        type=Path,
        nargs="+",
        help="no training: record these accuracy runs (their --results-dir) beside the claims as details[--attach-as] "
        "(see attach)",
    )
    parser.add_argument("--attach-as", help="--attach: the details key")
    parser.add_argument(
        "--attach-claims-move",
        action="store_true",
        help="--attach: the two accuracy claims read the attached experiment from now on (its --attach-rule says so)",
    )
    parser.add_argument("--attach-plot", type=Path, help="--attach: draw its accuracy by depth to this file")
    parser.add_argument(
        "--attach-rule", type=Path, help="--attach: the experiment's rule, written before its runs (recorded as 'rule')"
    )
    parser.add_argument(
        "--symnum-variants",
        nargs="+",
        choices=sorted(SYMNUM_VARIANTS),
        help="train the symbolic + numeric TreeLSTM once per variant; with --patience, the best on validation is "
        "treelstm_symnum",
    )
    parser.add_argument("--data", type=Path, help="read the equations from this JSONL file (see --write-data)")
    parser.add_argument(
        "--write-data",
        type=Path,
        help="generate the data set (--per-depth, --deep, --functions), write it to this JSONL file, and stop",
    )
    parser.add_argument("--simplify-n", type=int, default=80, help="sympy simplify: equations per protocol")
    parser.add_argument("--simplify-limit", type=float, default=2.0, help="sympy simplify: seconds per equation")
    parser.add_argument("--throughput-hidden", type=int, default=64)
    parser.add_argument("--throughput-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="combine accuracy runs made as one process per seed (their --results-dir) instead of running",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--keep-previous-as",
        help="when a run replaces protocols of an existing results file, keep their previous summaries under this key",
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "equations.png")
    parser.add_argument(
        "--scale-plot", type=Path, default=ROOT / "docs" / "img" / "equations_scale.png", help="--scale-study's plot"
    )
    args = parser.parse_args(argv)
    if len(args.hidden) > 1 and (args.patience <= 0 or args.only not in ("all", "accuracy") or args.merge):
        parser.error("--hidden: several sizes (a capacity selection) need --patience > 0 and an accuracy run")
    if len(set(args.hidden)) != len(args.hidden):
        parser.error(f"--hidden: repeated size in {args.hidden}")
    torch.set_num_threads(args.threads)
    quiet()
    if args.write_data is not None:
        w, c = time.time(), time.process_time()
        eqs, report = make_data(
            args.per_depth,
            args.deep,
            args.functions,
            depth4=args.depth4,
            max_tries=args.max_tries,
            arg_decimals=args.arg_decimals,
        )
        report = {**report, "wall_s": round(time.time() - w, 1), "cpu_s": round(time.process_time() - c, 1)}
        write_jsonl(eqs, args.write_data)
        print(f"wrote {len(eqs)} equations to {args.write_data}: {report}")
        return {"claims": [], "details": {"generator_report": report}}
    if args.scale_add:
        return scale_add(args)
    if args.summarize:
        return summarize(args)
    if args.attach:
        return attach(args)
    claims: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    if args.scale_study:
        c, d = run_scale_study(args)
        claims += c
        details.update(d)
    elif args.merge:
        c, d = merge_seed_runs(args.merge, args)
        claims += c
        details.update(d)
    elif args.only == "numeric_ablation":
        details["numeric_ablation_validation"] = run_numeric_ablation(args)
    elif args.only in ("all", "accuracy"):
        c, d = run_accuracy(args)
        claims += c
        details.update(d)
    if args.only in ("all", "throughput") and not args.merge and not args.scale_study:
        c, d = run_throughput(args)
        claims += c
        details.update(d)
    partial = (
        bool(args.merge or args.scale_study)
        or args.only != "all"
        or set(args.protocols) != {"same_depth", "extrapolation"}
    )
    if partial and (args.results_dir / f"{NAME}.json").is_file():  # keep the rest of the results file
        previous = read_results(NAME, args.results_dir)
        ids = {c["id"] for c in claims}
        claims = [c for c in previous["claims"] if c["id"] not in ids] + claims
        old = previous["details"]
        if args.scale_study and claims and "accuracy_source" not in old:  # the claims the study's claims replace
            details[args.keep_previous_as or KEEP_DEFAULT] = {
                "claims": [c for c in previous["claims"] if c["id"] in ids],
                "command": previous.get("command"),
            }  # the earlier tables join them below (adopt_scale_run)
        if args.keep_previous_as and "accuracy" in details:  # the replaced protocols' summaries, for comparison
            if args.networks is not None and not args.merge and "per_seed" in details:
                details[f"{args.keep_previous_as}_details"] = previous_run(previous, details)
            details[args.keep_previous_as] = {
                p: old["accuracy"][p] for p in details["accuracy"] if p in old.get("accuracy", {})
            }
        for pname, summary in details.get("accuracy", {}).items():
            simplify = summary.get("sympy_simplify")
            before = old.get("accuracy", {}).get(pname, {}).get("sympy_simplify")
            if simplify and not simplify["subsample"]["n"] and before and before["subsample"]["n"]:
                # sympy does not depend on training: with the same data file and split, the previous subsample stands
                summary["sympy_simplify"] = {
                    **before,
                    "note": "kept from the previous results (no run of the merge had a subsample)",
                }
        if args.networks is not None and not args.merge and "per_seed" in details:
            details = merge_models(old, details, args)
        else:
            for key in ("accuracy", "per_seed", "sizes"):
                if key in old and key in details:
                    details[key] = {**old[key], **details[key]}
        if "data_scale" in old and "data_scale" in details:  # notes written before the study (rule history) stay
            details["data_scale"] = {**old["data_scale"], **details["data_scale"]}
        details = {**old, **details}
        if f"{args.keep_previous_as}_details" in details and "merged_from" in details and not args.merge:
            del details["merged_from"]  # the previous runs' names: in KEY_details (this run is one process)
    if args.scale_study and claims:  # details.accuracy, per_seed, sizes and the plot: the size the claims read
        details = adopt_scale_run(details, args.keep_previous_as or KEEP_DEFAULT)
        draw_accuracy_plots(details, args, args.keep_previous_as or KEEP_DEFAULT)
    details["load_average"] = machine().get("load_average")
    details["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    path = write_results(NAME, claims, details, results_dir=args.results_dir, inline_number_lists=True)
    print(f"wrote {path}")
    for entry in claims:
        print(entry["id"], {k: entry.get(k) for k in ("ours", "anchor", "ratio", "delta", "met")})
    return {"claims": claims, "details": details}


if __name__ == "__main__":
    main()
