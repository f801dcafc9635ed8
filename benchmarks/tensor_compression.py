"""Tensor compression under the papers' set-ups: a VGG-style FC head vs TRL / TCL+TRL, and a whole tensorized net.

Two questions, one network (``Net``, VGG-style): a conv trunk ``conv 32 - pool - conv 64 - pool - conv 128 - pool``
(BatchNorm + ReLU after each conv) turning a 32x32 CIFAR-10 image into a ``(128, 4, 4)`` activation, then a head.

1. The head (Kossaifi et al., "Tensor regression networks", JMLR 2020; "Tensor contraction layers", 2017): the
   dense head is VGG's fully connected block, ``flatten -> FC 512 -> ReLU -> FC 10`` (1.05M parameters). It is
   replaced, trunk unchanged and everything trained end to end from scratch, by

   * ``trl``: :class:`~trinity_lightning.tensor.TensorRegressionLayer` on the un-pooled ``(128, 4, 4)``
     activation (Tucker, ``--trl-ranks`` fractions of its 20,480 weights),
   * ``tcl+trl``: :class:`~trinity_lightning.tensor.TensorContractionLayer` to ``(64, 4, 4)`` then a TRL,
   * ``gap+fc`` (reported beside, not a tensor method): global average pooling + FC 10.

2. The whole network (the compression papers train over-parameterized nets end to end): the dense net above has
   1.15M parameters. :func:`~trinity_lightning.tensor.tensorize` replaces every conv and linear layer by a Tucker
   factorization at each ``--net-ranks`` rank (fraction of each layer's weights), either

   * ``scratch``: tensorized at initialisation (the factors of the random init) and trained the full schedule, or
   * ``finetune``: the trained dense net decomposed, then fine-tuned for ``--finetune-fraction`` (>= 0.25) of the
     schedule at the schedule's mid learning rate, cosine to 0.

Iso-accuracy, exactly: a variant is "at iso-accuracy" when its mean test accuracy over the seeds is at least the
dense model's mean minus 1 point. The claim's ratio is (dense parameters) / (parameters of the smallest variant at
iso-accuracy); the dense model itself is always at iso-accuracy, so the ratio is 1.0 when no variant is.
``trl_head_param_ratio_at_iso_accuracy`` counts head parameters (the trunk is the same for every head);
``tensorized_net_param_ratio_at_iso_accuracy`` counts every parameter of the net.

Training: AdamW lr 2e-3, weight decay 5e-4, batch 128, cosine to 0, random flips and 4-pixel crops; every variant
gets the same epochs and data per seed. Scales (``--scale``):

* ``paper``: the full CIFAR-10 training split (50,000), the full test split, 30 epochs, 3 seeds (about 8 h of one
  CPU core per seed; minutes on a GPU).
* ``cpu``: 10,000 training images, 4,000 test images, 8 epochs, 3 seeds (about 40 min of one idle core).
* ``full``: the full CIFAR-10 splits (50,000 / 10,000), 8 epochs, 3 seeds: the whole-net part (``--parts net``)
  is about 25 CPU-minutes per seed (one process, one thread).
* ``device``: 20,000 training images (the 2,000-per-class subsample ``--prepare`` writes), the full test split, 20
  epochs, 3 seeds: one call of a lent H200 (``benchmarks/tensor_compression_device.sh``).
* ``smoke``: 1,000 images, 1 epoch, 1 seed (a wiring check).

Jobs (7 per seed: ``head:dense``, which then decomposes and fine-tunes at every net rank, ``net:scratch@<rank>``
per rank, the TRL heads, TCL + TRL, GAP + FC) run in this process or, with ``--workers N``, on N spawned processes,
longest first, each a Lightning fit on ``--device`` with its data on that device (:class:`DeviceBatches`). Records
are stored sorted by seed and variant: the same list for any ``--workers``. ``--budget S``: S seconds after the
jobs start, running fits stop (``complete: false``, left out of the claims) and no job starts. The data are read
through ``TRINITY_DATA`` (``signsgd_byzantine.cifar_subsets``). One process runs the jobs seed by seed.

Two runs in one results file (``--head-from``): a whole-net run (``--parts net``, e.g. ``--scale full``) summarized
with an earlier results file that has the heads takes its head claim from that file's run (kept whole in
``details.head_run``) and the net claim from itself if every net variant finished every seed, else from the earlier
run; both net tables are kept (``details.net_<scale>_scale``, ``details.net_claim_from`` names the claim's).

A head-only run (``--parts head``, ``--heads`` picks the kinds) goes into a results file with ``--attach-heads-to
FILE --head-claim-moves yes|no --head-claim-rule RULE.md`` (:func:`attach_head_run`): the head claim moves to it only
when the rule, written before the run, says so; the earlier head run stays as ``details.head_run_<scale>_scale``.

    python benchmarks/tensor_compression.py --scale smoke
    python benchmarks/tensor_compression.py --prepare .device_data/tensor_compression   # the device carry
    TRINITY_DATA=.device_data/tensor_compression python benchmarks/tensor_compression.py --scale device \
        --device cuda --workers 16 --budget 190 --net-ranks 0.25 0.1 --results-dir $OUT
    python benchmarks/tensor_compression.py --scale full --parts net --net-ranks 0.25 0.1 --results-dir /tmp/full
    python benchmarks/tensor_compression.py --scale full --parts net --net-ranks 0.25 0.1 --results-dir /tmp/full \
        --summarize-only --head-from benchmarks/results/tensor_compression.json   # -> /tmp/full/tensor_compression.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, TimeoutError, as_completed
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Supervised, accuracy, quiet, trainer
from _results import RESULTS_DIR, claim, command_line, write_json, write_results
from signsgd_byzantine import cifar_subsets

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"train_size": 1000, "test_size": 500, "epochs": 1, "seeds": [0]},
    "cpu": {"train_size": 10000, "test_size": 4000, "epochs": 8, "seeds": [0, 1, 2]},
    "paper": {"train_size": 50000, "test_size": 10000, "epochs": 30, "seeds": [0, 1, 2]},
    "full": {"train_size": 50000, "test_size": 10000, "epochs": 8, "seeds": [0, 1, 2]},
    "device": {"train_size": 20000, "test_size": 10000, "epochs": 20, "seeds": [0, 1, 2]},
}
FEATURES = (128, 4, 4)
# Fixed (stop 20, 2026-12-04 16:00 UTC) before any accuracy of the full-CIFAR-10 whole-net run was read; written
# into details.claim_rule by the merge of that run with the --scale cpu run (--head-from).
FULL_DATA_RULE = (
    "The whole-net part on full CIFAR-10 (50,000 training / 10,000 test images, 8 epochs, seeds 0 1 2, net ranks "
    "0.25 0.1, one process on the shared 2-core CPU, --budget to stop by 18:00 UTC): the claim "
    "tensorized_net_param_ratio_at_iso_accuracy moves to this run if all 3 seeds of every net variant (dense, "
    "finetune@0.25, finetune@0.1, scratch@0.25, scratch@0.1) finish complete; otherwise it stays on the committed "
    "--scale cpu run (10,000 / 4,000 images) and the finished full-data seeds are reported beside it "
    "(details.net_full_scale). trl_head_param_ratio_at_iso_accuracy stays on the --scale cpu run (the issue asks "
    "full CIFAR-10 for the whole-network part only); the --scale cpu net table is kept (details.net_cpu_scale)."
)

# Written (stop 22, 2026-12-04 22:32 UTC) after seed 0 of the 30-epoch run was read, before seeds 1 and 2 started;
# the full text is benchmarks/tensor_compression_paper_rule.md. Written into details.claim_rule by a --scale paper
# whole-net run merged with --head-from (the 8-epoch rule stays beside as claim_rule_full_scale).
PAPER_SCALE_RULE = (
    "The whole-net part at the paper's schedule (full CIFAR-10, 30 epochs, fine-tune 25% = 8 epochs, net rank 0.25, "
    "seeds 0 1 2, the shared 2-core CPU): tensorized_net_param_ratio_at_iso_accuracy moves to this run if every "
    "seed of dense, scratch@0.25 and finetune@0.25 finishes (by 23:25 UTC); otherwise it stays on the 8-epoch "
    "full-CIFAR-10 run and the finished 30-epoch seeds are reported beside. Written after seed 0 (dense 82.30, "
    "scratch@0.25 79.97, finetune@0.25 76.41) was read: the move is chosen for the protocol (the 8-epoch schedule "
    "under-trains the dense net) and can only lower the claim (benchmarks/tensor_compression_paper_rule.md). "
    "Amended at stop 23 (2026-12-05 00:50 UTC): seed 2 finished about 4 minutes after the deadline, which existed "
    "only so that stop 22 could close; with all three seeds complete the claim moves to this run (it can only lower "
    "the claim), and the 8-epoch tables stay beside."
)
NET_CLAIM = "tensorized_net_param_ratio_at_iso_accuracy"
HEAD_KINDS = ("trl", "tcl+trl", "gap+fc")


def trunk() -> nn.Sequential:
    """``(3, 32, 32) -> (128, 4, 4)``: three conv-BN-ReLU-maxpool blocks of 32, 64 and 128 channels."""
    layers: list[nn.Module] = []
    previous = 3
    for width in (32, 64, 128):
        layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        previous = width
    return nn.Sequential(*layers)


class Net(nn.Module):
    """The VGG-style trunk (``(3, 32, 32) -> (128, 4, 4)``) and one of the heads."""

    def __init__(self, head: str, trl_rank: float = 0.1) -> None:
        super().__init__()
        from trinity_lightning.tensor import TensorContractionLayer, TensorRegressionLayer

        self.features = trunk()
        c, h, w = FEATURES
        if head == "dense":
            self.head: nn.Module = nn.Sequential(
                nn.Flatten(), nn.Linear(c * h * w, 512), nn.ReLU(inplace=True), nn.Linear(512, 10)
            )
        elif head == "trl":
            self.head = TensorRegressionLayer(FEATURES, 10, factorization="tucker", rank=trl_rank)
        elif head == "tcl+trl":
            self.head = nn.Sequential(
                TensorContractionLayer(FEATURES, (64, h, w)),
                TensorRegressionLayer((64, h, w), 10, factorization="tucker", rank=trl_rank),
            )
        elif head == "gap+fc":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
        else:
            raise ValueError(f"head: expected dense, trl, tcl+trl or gap+fc, got {head!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class DeviceBatches:
    """Shuffled ``(x, y)`` batches of ``batch_size`` (last partial batch dropped) from tensors already on the device.

    The permutation is drawn from a CPU generator seeded with ``seed`` (one draw per epoch), so a run on ``cuda``
    sees the same batches as one on ``cpu``; no DataLoader, no host-to-device copy per step.

    Example::

        batches = DeviceBatches(torch.randn(10, 3), torch.arange(10), batch_size=4, seed=0)
        assert len(batches) == 2 and [len(y) for _, y in batches] == [4, 4]
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        if len(x) != len(y) or len(x) < batch_size:
            raise ValueError(f"DeviceBatches: x ({len(x)}) and y ({len(y)}) must match and hold >= {batch_size}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[index], self.y[index]


def _augment(generator: torch.Generator) -> Any:
    """Random horizontal flips (per image) and one 4-pixel crop offset per batch, drawn on the CPU generator (the
    same draws on every device)."""

    def augment(x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(len(x), generator=generator) < 0.5
        if x.is_cuda:  # a pinned, asynchronous copy: no host-device sync per step
            flip = flip.pin_memory().to(x.device, non_blocking=True)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        padded = nn.functional.pad(x, (4, 4, 4, 4))
        dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=generator))
        return padded[:, :, dy : dy + 32, dx : dx + 32]

    return augment


def fit(
    net: nn.Module,
    data: tuple[torch.Tensor, ...],
    epochs: int,
    seed: int,
    lr: float = 2e-3,
    device: str = "cpu",
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train ``net`` end to end (AdamW, cosine to 0, flips + crops) with a Lightning Trainer on ``device``.

    ``data`` is ``(x_train, y_train, x_test, y_test)``, already on ``device``. ``deadline`` (a ``time.time()``)
    stops training early (Lightning's ``max_time``); the test accuracy is still measured and ``complete`` says
    whether every step of the schedule ran. Returns ``test_acc`` (%), ``steps``, ``steps_done``, ``complete``.
    """
    x_train, y_train, x_test, y_test = data
    pl.seed_everything(seed, verbose=False)
    batches = DeviceBatches(x_train, y_train, batch_size=128, seed=seed)
    total = max(1, len(batches) * epochs)
    module = Supervised(
        net,
        lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=5e-4),
        lr_factor=lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
        augment=_augment(torch.Generator().manual_seed(seed + 1000)),
    )
    limits: dict[str, Any] = {}
    if deadline is not None:
        limits["max_time"] = timedelta(seconds=max(1.0, deadline - time.time()))
    accelerator = "cuda" if device.startswith("cuda") else "cpu"
    run = trainer(max_epochs=epochs, accelerator=accelerator, devices=1, limit_val_batches=0, **limits)
    run.fit(module, batches)
    return {
        "test_acc": 100.0 * accuracy(module.net, x_test, y_test, batch_size=1000),
        "steps": total,
        "steps_done": int(run.global_step),
        "complete": int(run.global_step) >= total,
    }


def _variant_rank(name: str, default: float) -> tuple[str, float]:
    base, _, rank = name.partition("@")
    return base, float(rank) if rank else default


def run_variant(
    variant: str,
    seed: int,
    data: tuple[torch.Tensor, ...],
    args: argparse.Namespace,
    deadline: float | None = None,
) -> list[dict[str, Any]]:
    """One job: ``head:<name>[@rank]`` or ``net:scratch@<rank>``, one record; ``head:dense`` also fine-tunes.

    With ``net`` in ``args.parts`` the ``head:dense`` job goes on, after training the dense net, to decompose a
    copy of it at every ``args.net_ranks`` rank and fine-tune it (``net:finetune@<rank>``, one record each), so a
    fine-tuned net never waits on another job. Every net is built after ``torch.manual_seed(seed)``, as a job of its
    own would be.
    """
    from trinity_lightning.tensor import tensorize

    device = args.device
    kind, _, name = variant.partition(":")
    tick, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    record: dict[str, Any] = {"variant": variant, "seed": seed}
    records = [record]
    if kind == "head":
        head, rank = _variant_rank(name, 0.1)
        net = Net(head, trl_rank=rank).to(device)
        record["head_params"] = n_params(net.head)
        record.update(fit(net, data, args.epochs, seed, device=device, deadline=deadline))
    elif kind == "net" and _variant_rank(name, args.net_ranks[0])[0] == "scratch":
        rank = _variant_rank(name, args.net_ranks[0])[1]
        net = Net("dense")
        tensorize(net, factorization="tucker", rank=rank, progress=False)
        net = net.to(device)
        record.update(fit(net, data, args.epochs, seed, device=device, deadline=deadline))
    else:
        raise ValueError(f"variant: expected head:<name>[@rank] or net:scratch@<rank>, got {variant!r}")
    record["net_params"] = n_params(net)
    record["seconds"] = time.perf_counter() - tick
    record["cpu_seconds"] = time.process_time() - cpu
    if variant == "head:dense" and "net" in args.parts:
        parent = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        epochs = max(1, math.ceil(args.finetune_fraction * args.epochs))
        for rank in args.net_ranks:
            tick, cpu = time.perf_counter(), time.process_time()
            torch.manual_seed(seed)
            child = Net("dense")
            child.load_state_dict(parent)
            tensorize(child, factorization="tucker", rank=rank, progress=False)
            child = child.to(device)
            row: dict[str, Any] = {"variant": f"net:finetune@{rank}", "seed": seed}
            row["decomposed_acc"] = 100.0 * accuracy(child, data[2], data[3], batch_size=1000)
            row["finetune_epochs"] = epochs
            # the mid-schedule learning rate, cosine to 0
            row.update(fit(child, data, epochs, seed, lr=1e-3, device=device, deadline=deadline))
            row["net_params"] = n_params(child)
            row["seconds"] = time.perf_counter() - tick
            row["cpu_seconds"] = time.process_time() - cpu
            records.append(row)
    return records


_DATA: dict[tuple[int, int, str], tuple[torch.Tensor, ...]] = {}


def _data(train_size: int, test_size: int, device: str) -> tuple[torch.Tensor, ...]:
    """The seeded CIFAR-10 subsets (``cifar_subsets``, read through ``TRINITY_DATA``) on ``device``, once per process."""
    key = (train_size, test_size, device)
    if key not in _DATA:
        _DATA[key] = tuple(t.to(device) for t in cifar_subsets(train_size, test_size))
    return _DATA[key]


def _job(variant: str, seed: int, args: argparse.Namespace, deadline: float | None) -> list[dict[str, Any]]:
    """A job in a worker process (or in this one): quiet logs, 1 thread, the data on the device, one variant."""
    if deadline is not None and time.time() >= deadline:
        return []  # the budget is spent: not started
    quiet()
    torch.set_num_threads(1)
    return run_variant(variant, seed, _data(args.train_size, args.test_size, args.device), args, deadline)


def jobs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """``(variant, seed)`` per job, longest first: the dense job (+ its fine-tunes), the tensorized nets, heads."""
    variants = ["head:dense"]
    if "net" in args.parts:
        variants += [f"net:scratch@{r}" for r in args.net_ranks]
    if "head" in args.parts:
        variants += head_variants(args)
    return [(v, seed) for v in variants for seed in args.seeds]


def head_variants(args: argparse.Namespace) -> list[str]:
    """The head jobs of ``--heads`` (default all three kinds): a TRL per ``--trl-ranks`` rank, TCL + TRL at the
    first rank, GAP + FC."""
    kinds = getattr(args, "heads", None) or HEAD_KINDS
    variants = [f"head:trl@{r}" for r in args.trl_ranks] if "trl" in kinds else []
    if "tcl+trl" in kinds:
        variants.append(f"head:tcl+trl@{args.trl_ranks[0]}")
    if "gap+fc" in kinds:
        variants.append("head:gap+fc")
    return variants


def variant_order(args: argparse.Namespace) -> list[str]:
    """Every record's variant in the order the records are stored (per seed)."""
    order = ["head:dense"]
    if "head" in args.parts:
        order += head_variants(args)
    if "net" in args.parts:
        order += [f"net:finetune@{r}" for r in args.net_ranks] + [f"net:scratch@{r}" for r in args.net_ranks]
    return order


def canonical(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``runs`` sorted by seed, then variant (:func:`variant_order`): the same list for any ``--workers``."""
    order = {v: i for i, v in enumerate(variant_order(args))}
    return sorted(runs, key=lambda r: (r["seed"], order.get(r["variant"], len(order)), r["variant"]))


def run_jobs(args: argparse.Namespace, runs: list[dict[str, Any]], partial: Path) -> list[dict[str, Any]]:
    """Run every job not yet in ``runs`` on ``args.workers`` processes (1: in this process); returns all records.

    One process runs the jobs seed by seed (every variant of seed 0, then of seed 1, ...), a pool longest first.
    Each finished job's records are added to ``partial`` at once, so a run stopped by ``--budget`` (or killed)
    keeps what finished. ``--budget`` seconds after the start no job starts and running fits stop (``max_time``).
    """
    done = {(r["variant"], r["seed"]) for r in runs}
    todo = [(v, s) for v, s in jobs(args) if (v, s) not in done]
    deadline = time.time() + args.budget if args.budget else None

    def keep(records: list[dict[str, Any]]) -> None:
        for record in records:
            runs.append(record)
            print(json.dumps(record), flush=True)
        write_json(partial, canonical(runs, args), indent=1)

    if args.workers <= 1:  # seed by seed: a run cut short keeps whole seeds
        for variant, seed in sorted(todo, key=lambda job: job[1]):
            keep(_job(variant, seed, args, deadline))
        return canonical(runs, args)
    _data_on_disk(args)
    pool = ProcessPoolExecutor(max_workers=min(args.workers, len(todo)), mp_context=get_context("spawn"))
    futures = {pool.submit(_job, v, s, args, deadline): (v, s) for v, s in todo}
    try:
        grace = None if deadline is None else deadline - time.time() + 120
        for future in as_completed(futures, timeout=grace):
            try:
                keep(future.result())
            except Exception as error:  # one failed job must not lose the others
                print(f"job {futures[future]} failed: {error!r}", file=sys.stderr, flush=True)
    except TimeoutError:
        print("budget + 120 s grace spent: the unfinished jobs are dropped", file=sys.stderr, flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return canonical(runs, args)


def _data_on_disk(args: argparse.Namespace) -> None:
    """Decode the CIFAR-10 archive once here (``load_cifar10`` caches the arrays) before the workers read it."""
    from trinity_lightning.data import load_cifar10

    load_cifar10("train"), load_cifar10("test")


def prepare(target: Path, per_class: int = 2000) -> dict[str, Any]:
    """The device run's carry: ``target/cifar10_jpeg/cifar10_jpeg.zip`` and ``target/wheels``.

    The archive holds ``per_class`` training JPEGs of every class (seeded, the bytes copied) and all 10,000 test
    JPEGs (``nrm_semisupervised.subsample_cifar10``; 2,000 per class: 30 MB); the wheels are the tensorly and
    tensorly-torch versions installed here (``tensor_layers.download_wheels``; 7.5 MB), which the GPU image lacks.
    Point ``TRINITY_DATA`` at ``target`` to read the subsample.
    """
    from nrm_semisupervised import subsample_cifar10
    from tensor_layers import download_wheels

    archive = subsample_cifar10(target, per_class=per_class)
    wheels = download_wheels(target / "wheels")
    return {"archive": str(archive), "archive_mb": archive.stat().st_size / 2**20, "wheels": wheels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--trl-ranks", type=float, nargs="+", default=[0.4, 0.2, 0.1, 0.03])
    parser.add_argument("--net-ranks", "--net-rank", type=float, nargs="+", default=[0.25], dest="net_ranks")
    parser.add_argument("--finetune-fraction", type=float, default=0.25)
    parser.add_argument("--parts", nargs="+", default=["head", "net"], choices=["head", "net"])
    parser.add_argument(
        "--heads", nargs="+", default=list(HEAD_KINDS), choices=HEAD_KINDS, help="the head kinds --parts head trains"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every job's Trainer and data)")
    parser.add_argument("--workers", type=int, default=1, help="jobs run at once (processes; 1: in this one)")
    parser.add_argument("--budget", type=float, default=None, help="seconds: then no job starts, fits stop")
    parser.add_argument("--out", default="tensor_compression")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tensor_compression"), help="(unused, kept)")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument(
        "--head-from",
        type=Path,
        default=None,
        help="a results file whose run supplies the head claim (this run: --parts net); see summarize()",
    )
    parser.add_argument("--run-command", default=None, help="the command that ran the records (with --summarize-only)")
    parser.add_argument("--note", default=None, help="free text for details.note (machine load, what the run is)")
    parser.add_argument(
        "--attach-heads-to",
        type=Path,
        default=None,
        help="put this head-only run's results file (--results-dir/--out) into that results file, then exit",
    )
    parser.add_argument(
        "--head-claim-moves",
        choices=["yes", "no"],
        default=None,
        help="--attach-heads-to: whether the head claim moves to this run (the decision of --head-claim-rule)",
    )
    parser.add_argument("--head-claim-rule", type=Path, default=None, help="--attach-heads-to: the rule's text file")
    parser.add_argument("--prepare", type=Path, default=None, help="write the device carry to this folder, exit")
    parser.add_argument("--per-class", type=int, default=2000, help="--prepare: training images per class")
    args = parser.parse_args()
    if args.attach_heads_to is not None:
        if args.head_claim_moves is None or args.head_claim_rule is None:
            parser.error("--attach-heads-to needs --head-claim-moves and --head-claim-rule")
        source = args.results_dir / f"{args.out}.json"
        attach_head_run(args.attach_heads_to, source, args.head_claim_moves == "yes", args.head_claim_rule.read_text())
        print(f"{source} -> {args.attach_heads_to} (head claim moves: {args.head_claim_moves})")
        return
    if args.prepare is not None:
        print(json.dumps(prepare(args.prepare, args.per_class), indent=1))
        return
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.finetune_fraction < 0.25:
        parser.error("--finetune-fraction: the protocol fine-tunes for at least 25% of the schedule")
    if args.workers < 1:
        parser.error(f"--workers: expected >= 1, got {args.workers}")
    if args.head_from is not None and "head" in args.parts:
        parser.error("--head-from: the heads come from that file; run this one with --parts net")
    quiet()
    torch.set_num_threads(1)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    partial = args.results_dir / f"{args.out}.partial.json"
    runs: list[dict[str, Any]] = json.loads(partial.read_text()) if partial.is_file() else []
    tick = time.perf_counter()
    if not args.summarize_only:
        runs = run_jobs(args, runs, partial)
    args.run_seconds = time.perf_counter() - tick
    summarize(runs, args)


def _iso(runs: list[dict[str, Any]], candidates: list[str], size_key: str) -> dict[str, Any] | None:
    """Mean accuracy and size per variant; the smallest variant within 1 point of the dense one's mean.

    Only complete runs (every step of the schedule) count; ``None`` when the dense model has none.
    """
    table: dict[str, dict[str, Any]] = {}
    for variant in ["head:dense", *candidates]:
        rows = [r for r in runs if r["variant"] == variant and r.get("complete", True)]
        if not rows:
            continue
        table[variant] = {
            "mean_acc": statistics.mean(r["test_acc"] for r in rows),
            "per_seed": [r["test_acc"] for r in sorted(rows, key=lambda r: r["seed"])],
            "seeds": sorted(r["seed"] for r in rows),
            "params": rows[0][size_key],
        }
    if "head:dense" not in table:
        return None
    dense = table["head:dense"]
    at_iso = [v for v, row in table.items() if row["mean_acc"] >= dense["mean_acc"] - 1.0]
    best = min(at_iso, key=lambda v: table[v]["params"])
    return {"table": table, "at_iso_accuracy": at_iso, "smallest_at_iso": best}


def _setting(train_size: int, test_size: int, epochs: int, n_seeds: int) -> str:
    return (
        f"CIFAR-10 ({train_size:,} training / {test_size:,} test images), {epochs} epochs, mean of {n_seeds} seeds; "
        "iso-accuracy = mean test accuracy >= the dense model's mean - 1 point"
    )


def load_head_run(path: Path) -> dict[str, Any]:
    """The run that measured the heads, from a results file (``--head-from``): its details, command, date, machine.

    A file this option wrote already holds it (``details.head_run``); otherwise the file's own run must have head
    records. The ``protocol`` text is left out (the merged file has its own).

    Example::

        head_run = load_head_run(Path("benchmarks/results/tensor_compression.json"))
        assert {"runs", "args", "scale", "command"} <= head_run.keys()
    """
    payload = json.loads(Path(path).read_text())
    details = payload.get("details", {})
    if "head_run" in details:
        return dict(details["head_run"])
    runs = details.get("runs", [])
    if not any(r["variant"].startswith("head:") and r["variant"] != "head:dense" for r in runs):
        raise ValueError(f"--head-from: {path} holds no head records (details.runs has no head:<name> but dense)")
    head_run = {k: payload.get(k) for k in ("command", "date", "machine")}
    head_run.update((k, v) for k, v in details.items() if k != "protocol")
    return head_run


def net_complete(runs: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """Whether every whole-net variant (the dense net, every fine-tune and from-scratch rank) finished every seed."""
    done = {(r["variant"], r["seed"]) for r in runs if r.get("complete", True)}
    variants = [v for v in variant_order(args) if v == "head:dense" or v.startswith("net:")]
    return all((v, s) in done for v in variants for s in args.seeds)


def _net_claim(
    runs: list[dict[str, Any]], setting: str, net_ranks: list[float], finetune_fraction: float
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    nets = sorted({r["variant"] for r in runs if r["variant"].startswith("net:")})
    net = _iso(runs, nets, "net_params") if nets else None
    if net is None:
        return None
    what = (
        f"{setting}: parameters of the dense VGG-style net ({net['table']['head:dense']['params']:,}) over those "
        f"of the smallest Tucker-tensorized net at iso-accuracy ({net['smallest_at_iso']}; ranks "
        f"{', '.join(map(str, net_ranks))} of every layer, trained factorized from scratch or "
        f"decomposed then fine-tuned {finetune_fraction:.0%} of the schedule)"
    )
    row = _iso_claim(
        NET_CLAIM,
        what,
        net,
        3.0,
        candidate_params={v: r["params"] for v, r in net["table"].items()},
    )
    return row, net


def _iso_claim(cid: str, what: str, iso: dict[str, Any], target: float, **extra: Any) -> dict[str, Any]:
    """The parameter-ratio claim of an :func:`_iso` table: the dense row's parameters over those of the smallest
    variant at iso-accuracy, with both accuracies."""
    dense, smallest = iso["table"]["head:dense"], iso["table"][iso["smallest_at_iso"]]
    return claim(
        cid,
        what,
        ours=smallest["params"],
        anchor=dense["params"],
        better="lower",
        unit="parameters",
        target=target,
        variant=iso["smallest_at_iso"],
        accuracy=smallest["mean_acc"],
        dense_accuracy=dense["mean_acc"],
        **extra,
    )


HEAD_CLAIM = "trl_head_param_ratio_at_iso_accuracy"


def _head_claim(
    runs: list[dict[str, Any]], setting: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
    """The head claim of a run's records (``None`` without a complete dense head), its :func:`_iso` table, and
    GAP + FC's accuracies (reported beside)."""
    heads = sorted({r["variant"] for r in runs if r["variant"].startswith("head:") and r["variant"] != "head:dense"})
    head = _iso(runs, [v for v in heads if "trl" in v], "head_params")
    gap = [r["test_acc"] for r in runs if r["variant"] == "head:gap+fc" and r.get("complete", True)]
    gap_fc = {"mean_acc": statistics.mean(gap) if gap else None, "per_seed": gap}
    if head is None:
        return None, None, gap_fc
    what = (
        f"{setting}: head parameters of flatten + FC 512 + FC 10 over those of the smallest TRL / "
        f"TCL+TRL head at iso-accuracy ({head['smallest_at_iso']}), trunk identical, trained end to end"
    )
    return _iso_claim(HEAD_CLAIM, what, head, 5.0), head, gap_fc


def attach_head_run(target: Path, head_results: Path, move: bool, rule: str) -> dict[str, Any]:
    """Put a head-only run (``--parts head``, its own results file) into the results file ``target``.

    ``move``: the head claim, ``details.heads``, ``details.gap_fc`` and ``details.head_run`` come from the new run
    and the run that gave them before stays as ``details.head_run_<its scale>_scale``; otherwise the claim stays and
    the new run is reported beside as ``details.heads_<its scale>_scale``. Whether the claim moves is the decision
    of a rule written before the run (``rule``, kept in ``details.head_claim_rule``). Nothing else changes.

    Example::

        attach_head_run(Path("benchmarks/results/tensor_compression.json"),
                        Path("outputs/paper_head/tensor_compression_paper_head.json"), move=True, rule="...")
    """
    payload = json.loads(Path(target).read_text())
    details = payload["details"]
    new = load_head_run(head_results)
    a = new["args"]
    setting = _setting(a["train_size"], a["test_size"], a["epochs"], len(new["seeds"]))
    head_claim, head, gap_fc = _head_claim(new["runs"], setting)
    if head_claim is None:
        raise ValueError(f"attach_head_run: {head_results} has no complete dense head")
    scale = new["scale"]
    details["head_claim_rule"] = rule
    if move:
        old = details.get("head_run")
        if old is not None:
            details[f"head_run_{old['scale']}_scale"] = old
        details.update(heads=head, gap_fc=gap_fc, head_run=new, head_claim_from=f"head_run ({scale} scale)")
        payload["claims"] = [head_claim if c["id"] == HEAD_CLAIM else c for c in payload["claims"]]
    else:
        details[f"heads_{scale}_scale"] = {
            "setting": setting,
            "claim_if_moved": head_claim,
            "heads": head,
            "gap_fc": gap_fc,
            "run": new,
        }
    write_json(Path(target), payload)
    return payload


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Write ``<results-dir>/<out>.json``: the two claims (from complete runs only) and every record.

    With ``args.head_from`` (a whole-net run, ``--parts net``) the head claim comes from that file's run, kept
    whole in ``details.head_run``, and the net claim from this run if every net variant finished every seed
    (:func:`net_complete`), else from that file's run; both net tables are kept (``details.net_<scale>_scale``).
    """
    seeds = sorted({r["seed"] for r in runs})
    incomplete = [f"{r['variant']} seed {r['seed']}" for r in runs if not r.get("complete", True)]
    setting = _setting(args.train_size, args.test_size, args.epochs, len(seeds))
    head_from = getattr(args, "head_from", None)
    head_run = load_head_run(head_from) if head_from is not None else None
    if head_run is not None:
        if "head" in args.parts:
            raise ValueError("--head-from: the heads come from that file; run this one with --parts net")
        h = head_run["args"]
        head_runs = head_run["runs"]
        head_setting = _setting(h["train_size"], h["test_size"], h["epochs"], len(head_run["seeds"]))
    else:
        head_runs, head_setting = runs, setting
    claims = []
    details: dict[str, Any] = {}
    head_claim, head, details["gap_fc"] = _head_claim(head_runs, head_setting)
    if head_claim is not None and ("head" in args.parts or head_run is not None):
        claims.append(head_claim)
        details["heads"] = head
    own = _net_claim(runs, setting, args.net_ranks, args.finetune_fraction)
    chosen = own
    if head_run is not None:
        h = head_run["args"]
        other = _net_claim(head_run["runs"], head_setting, h["net_ranks"], h["finetune_fraction"])
        moved = own is not None and net_complete(runs, args)
        chosen = own if moved else other
        other_key = f"net_{head_run['scale']}_scale"
        own_key = f"net_{args.scale}_scale" if args.scale != head_run["scale"] else "net_this_run"
        details["claim_rule"] = PAPER_SCALE_RULE if args.scale == "paper" else FULL_DATA_RULE
        details["net_claim_from"] = own_key if moved else other_key
        details[own_key] = (
            None if own is None else {"setting": setting, "command": args.run_command or command_line(), **own[1]}
        )
        details[other_key] = None if other is None else {"setting": head_setting, **other[1]}
        # a file merged before (--head-from on a merged file): its other whole-net tables stay beside, and when its
        # net claim came from one of them, a run that does not move the claim leaves it there
        before = json.loads(Path(head_from).read_text())  # type: ignore[arg-type]
        earlier = before.get("details", {})
        for key, value in earlier.items():
            beside = key.startswith(("net_", "runs_", "head_run_")) and key.endswith("_scale")
            if (beside or key in ("head_claim_rule", "head_claim_from")) and key not in details:  # attach-heads-to
                details[key] = value
        # and so do its own records, when they are another run's than the heads' (a merged file's net run)
        if "head_run" in earlier and earlier.get("scale") not in (None, args.scale) and earlier.get("runs"):
            details.setdefault(f"runs_{earlier['scale']}_scale", earlier["runs"])
        if earlier.get("claim_rule") and earlier["claim_rule"] != details["claim_rule"]:
            details[f"claim_rule_{earlier.get('net_claim_from', 'before').removeprefix('net_')}"] = earlier[
                "claim_rule"
            ]
        source = earlier.get("net_claim_from")
        kept = [c for c in before.get("claims", []) if c["id"] == NET_CLAIM]
        if not moved and source not in (None, other_key, own_key) and kept and "net" in earlier:
            chosen = (kept[0], earlier["net"])
            details["net_claim_from"] = source
    if chosen is not None:
        claims.append(chosen[0])
        details["net"] = chosen[1]
    if getattr(args, "note", None):
        details["note"] = args.note
    expected = len(variant_order(args)) * len(args.seeds)
    details.update(
        runs=runs,
        seeds=seeds,
        complete=len(runs) == expected and not incomplete,
        records_expected=expected,
        incomplete_runs=incomplete,
        cpu_minutes=sum(r["cpu_seconds"] for r in runs) / 60,
        job_minutes=sum(r["seconds"] for r in runs) / 60,
        run_seconds=getattr(args, "run_seconds", None),
        threads=1,
        device=args.device,
        workers=args.workers,
        scale=args.scale,
        args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        protocol=__doc__.strip(),
    )
    if head_run is not None:
        details["head_run"] = head_run
    print(write_results(args.out, claims, details, results_dir=args.results_dir))
    if incomplete:
        print(f"{len(incomplete)} runs stopped by --budget (not in the claims): {', '.join(incomplete)}")
    for c in claims:
        print(c["id"], round(c["ratio"], 2), c["met"], c.get("variant"))


if __name__ == "__main__":
    main()
