"""ALPF under the paper's protocol: a CNN trained end to end on CIFAR-10 images, from scratch every round.

Issue 20, item 1 (Hu, Lipton, Anandkumar, Ramanan, ICLR 2019). What the paper does and this script does:

- data: CIFAR-10 (the shared lossy-JPEG copy) with its ten classes in the WordNet noun tree
  (``cifar10_hierarchy``: binarized, 3.4 binary-search questions per image on average). A seeded random pool of
  ``--pool`` training images (the paper: the whole training set) and ``--test`` test images.
- warm start: a seeded random 5% of the pool is given fully labelled *for free* (not counted as questions),
  the same examples for every learner of a seed (the paper's pre-labelled 5%).
- model: a small CNN (``--width`` 16: 3x3 conv 16-32-64 with batch norm, max-pooling, global average pooling,
  24k parameters) or, with ``--model resnet --width 32``, the fast small ResNet (:func:`small_resnet`, 1.65M
  parameters; the paper: ResNet-18), trained on the images end to end with ``partial_label_loss``, random
  crop + flip augmentation, Adam; **re-initialized every round** and trained ``--steps`` batches of
  ``--batch-size`` (64; the same budget rule for every learner). The GPU run: ``benchmarks/alpf_e2e_device.sh``.
- budget unit: the naive cost = binary-search questions to label the whole pool. Rounds of ``--round`` (10%)
  of it; test accuracy after every round up to ``--until`` (30%). ALPF-ERC then goes on (same rounds) until
  every pool example is fully labelled: its questions vs the naive cost of the same (non-warm) examples is
  ``questions_to_full_annotation_vs_uniform`` (Uniform labels each example by binary search = the naive cost).
- learners: Uniform, AL-ME, AQ-ERC, ALPF-ERC, ALPF-EIG, ALPF-EDC (``--strategies``).
- session: ``--session rescore`` (default, the reference code's behaviour): the pair learners (ALPF-*) ask one
  question per pick, and the pool is re-scored (the round's posterior restricted to the new candidate sets)
  before the next pick; ``--session batch``: each pick asks every open example's best question at once.

Every campaign runs as a user runs one: ``trainer.fit`` with the library's ``PartialFeedback`` callback (its
simulated oracle, the question strategy) on a ``PartialFeedbackDataModule``, the model a ``LightningModule``
training on ``(x, candidates)`` (``_harness.Supervised`` + ``partial_label_loss``); the re-initialization and
the per-round step budget are the public hooks of ``alpf.py`` (``Rounds``, ``StepsPerRound``).

``--scale`` sets the pool and test size and the step budget together: ``--scale 1`` is the paper-size run on the
full 50,000-image pool, the 10,000-image test set and 2,000 steps per round (stop 20, seed 0 on one CPU thread:
Uniform 277 CPU-s, ALPF-EIG 1,289, most of it re-scoring the pool after every one-question pick; see
docs/alpf.md for ALPF-ERC and the projection to three seeds).

- ``--schedule cosine``: the learning rate decays from ``--lr`` to 0 by a cosine within every round (restarting
  at each round's fresh initialization); ``constant`` (default) keeps ``--lr``.

Each work folder (``--work``) is one protocol: its ``settings.json`` is written by the first job and a job with
other settings is refused, so every row of a folder is paired (same seeded pool, test set, warm start and
initializations). Jobs of different seeds may run in parallel on one folder; a learner's rounds are also kept in
``progress_s<seed>_<learner>.json`` as they finish (a run stopped on its way to full annotation keeps them).
``--merge --protocols A B`` writes ``alpf_e2e.json`` from several folders under the claim rule
(:data:`CLAIM_RULE`, fixed in advance: the first *complete* protocol gives the contract ids, the others are written
beside with their tag as the ids' suffix).

Run (the stored CPU runs): ``python benchmarks/alpf_e2e.py --scale 0.04 --steps 120 --work outputs/alpf_e2e/p2000``
and ``python benchmarks/alpf_e2e.py --scale 0.1 --steps 200 --schedule cosine --work outputs/alpf_e2e/p5000``
(``--seeds S`` per process; a job's own merge writes ``alpf_e2e.json`` and the plot into its ``--work``), then
``python benchmarks/alpf_e2e.py --merge --protocols outputs/alpf_e2e/p5000 outputs/alpf_e2e/p2000`` (the committed
file and plot). A protocol whose job files are gone is read back from the committed results file:
``--protocols outputs/alpf_e2e/p5000 benchmarks/results/alpf_e2e.json#pool2000_steps120`` (its claims recomputed
from the stored curves, its details written back unchanged); ``--beside WORK ...`` adds work folders to
``details.beside_runs`` only (never a claims row). ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Supervised, quiet, trainer
from _results import claim, write_json, write_results
from alpf import Rounds, StepsPerRound, WarmStart
from trinity_lightning.active.partial_feedback import (
    PartialFeedback,
    QuestionContext,
    QuestionStrategy,
    binary_search_costs,
    cifar10_hierarchy,
    get_question_strategy,
    partial_label_loss,
)
from trinity_lightning.data import ArrayDataset, load_cifar10

STRATEGIES = ("uniform", "alpf_erc", "eig", "edc", "aq_erc", "al_me")  # the order they run in
PAIR = ("alpf_erc", "eig", "edc")  # active examples + active questions
LABELS = {
    "uniform": "Uniform",
    "al_me": "AL-ME",
    "aq_erc": "AQ-ERC",
    "alpf_erc": "ALPF-ERC",
    "eig": "ALPF-EIG",
    "edc": "ALPF-EDC",
}
REPO = Path(__file__).resolve().parents[1]


def small_cnn(num_classes: int = 10, width: int = 16) -> nn.Sequential:
    """3x3 conv ``width``-``2 width``-``4 width`` (batch norm, ReLU, 2x2 max-pool), global average pool, linear."""
    layers: list[nn.Module] = []
    cin = 3
    for cout in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


class Residual(nn.Module):
    """``x + body(x)``: two 3x3 conv-BN-ReLU layers of ``width`` channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(width, width), _conv_bn(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # type: ignore[no-any-return]


def _conv_bn(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


def small_resnet(num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """The fast small ResNet of the CIFAR-10 speed runs (Page's ResNet-9 layout, ``width`` = 64 there): a
    ``width`` prep conv, then ``2w`` (pool, residual block), ``4w`` (pool), ``8w`` (pool, residual block), global
    max-pool and a linear layer; ``width`` 32 has 1.65M parameters (the paper's ResNet-18: 11M).

    >>> sum(p.numel() for p in small_resnet(10, 32).parameters())
    1646122
    """
    w = width
    return nn.Sequential(
        _conv_bn(3, w),
        _conv_bn(w, 2 * w, pool=True),
        Residual(2 * w),
        _conv_bn(2 * w, 4 * w, pool=True),
        _conv_bn(4 * w, 8 * w, pool=True),
        Residual(8 * w),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8 * w, num_classes),
    )


MODELS = {"cnn": small_cnn, "resnet": small_resnet}


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random crop (4-pixel reflect padding) and horizontal flip, one draw per batch element."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2,)).tolist()  # one shift per batch keeps it a view-free slice
    out = padded[:, :, dy : dy + h, dx : dx + w]
    flip = torch.rand(n, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class OnePerPick(QuestionStrategy):
    """The reference ALPF session: one (example, question) pick at a time; the campaign re-scores the pool
    (same round posterior, the new candidate sets) before the next pick."""

    def __init__(self, inner: QuestionStrategy) -> None:
        self.inner = inner

    def select(self, ctx: QuestionContext, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.select(ctx, min(budget, 1))


def round_cosine(steps: int) -> functools.partial[float]:
    """``step -> factor``: a cosine decay from 1 to 0 over each round's ``steps`` batches, restarting every round
    (``Supervised``'s scheduler counts steps across rounds; every round trains exactly ``steps`` batches).

    >>> f = round_cosine(4)
    >>> [round(f(k), 3) for k in range(6)]
    [1.0, 0.854, 0.5, 0.146, 1.0, 0.854]
    """
    return functools.partial(_round_cosine, steps)


def _round_cosine(steps: int, step: int) -> float:
    return 0.5 * (1 + float(np.cos(np.pi * (step % steps) / steps)))


class Progress(pl.Callback):
    """After every round's evaluation, the curve so far goes to ``path`` (listed after ``Rounds``): a run stopped
    before it finishes (ALPF-ERC on its way to full annotation) keeps the rounds it measured, with the CPU and
    wall seconds since the callback was made, at every measured round (``round_cpu_seconds``, ``round_seconds``:
    cumulative)."""

    def __init__(self, path: Path, rounds: Rounds, stop_at: float | None = None) -> None:
        self.path, self.rounds, self.stop_at = path, rounds, stop_at
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        self.round_cpu: list[float] = []
        self.round_wall: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(self.round_cpu) < len(self.rounds.curve):  # a new round was measured
            self.round_cpu.append(time.process_time() - self.cpu0)
            self.round_wall.append(time.perf_counter() - self.wall0)
        row = {"curve": self.rounds.curve, "round_cpu_seconds": self.round_cpu, "round_seconds": self.round_wall}
        write_json(self.path, row, indent=None)
        if self.stop_at is not None and time.time() > self.stop_at:  # no new round after the deadline
            trainer.should_stop = True


def _strategy(name: str, session: str) -> QuestionStrategy:
    inner = get_question_strategy(name)
    return OnePerPick(inner) if session == "rescore" and name in PAIR else inner


def load_data(seed: int, pool: int, test: int) -> tuple[torch.Tensor, ...]:
    """A seeded pool of training images and the first ``test`` test images, as float tensors in ``[0, 1]``
    normalized by the pool's channel mean/std."""
    tr, te = load_cifar10("train"), load_cifar10("test")
    rows = np.sort(np.random.default_rng(seed).permutation(len(tr.labels))[:pool])
    t_rows = np.sort(np.random.default_rng(10_000 + seed).permutation(len(te.labels))[:test])

    def to(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255)

    xp, xt = to(tr.images[rows]), to(te.images[t_rows])
    mu, sd = xp.mean((0, 2, 3), keepdim=True), xp.std((0, 2, 3), keepdim=True)
    return (xp - mu) / sd, torch.from_numpy(tr.labels[rows]), (xt - mu) / sd, torch.from_numpy(te.labels[t_rows])


WORDNET = "wordnet30_nouns.tsv.gz"


def pack_cifar10(dest: Path) -> Path:
    """The shared CIFAR-10 JPEG archive (62 MB, over a lent device's 64 MiB carry) as ``dest/cifar10_jpeg.xz``
    (18 MB): every member's bytes, unchanged, concatenated and LZMA-compressed (their 609-byte JPEG headers are
    identical), with the member names and sizes in ``dest/cifar10_jpeg.json``, and the WordNet noun file the
    hierarchy is built from (3.7 MB). :func:`unpack_cifar10` rebuilds the same archive there (so ``load_cifar10``
    decodes the same pixels)."""
    import lzma
    import shutil
    import zipfile

    from trinity_lightning.data.shared import dataset_dir

    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dataset_dir("cifar10_jpeg") / "cifar10_jpeg.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        blobs = [z.read(n) for n in names]
    (dest / "cifar10_jpeg.xz").write_bytes(lzma.compress(b"".join(blobs), preset=6))
    write_json(dest / "cifar10_jpeg.json", {"names": names, "sizes": [len(b) for b in blobs]}, indent=None)
    shutil.copyfile(dataset_dir("wordnet_nouns") / WORDNET, dest / WORDNET)
    return dest / "cifar10_jpeg.xz"


def unpack_cifar10(src: Path, data_root: Path) -> Path:
    """:func:`pack_cifar10`'s files back into ``data_root/cifar10_jpeg/cifar10_jpeg.zip`` and
    ``data_root/wordnet_nouns`` (a ``TRINITY_DATA`` folder)."""
    import lzma
    import shutil
    import zipfile

    index = json.loads((src / "cifar10_jpeg.json").read_text())
    body = lzma.decompress((src / "cifar10_jpeg.xz").read_bytes())
    if len(body) != sum(index["sizes"]):
        raise SystemExit(f"{src}/cifar10_jpeg.xz: {len(body)} bytes, the index says {sum(index['sizes'])}")
    out = data_root / "cifar10_jpeg" / "cifar10_jpeg.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        offset = 0
        for name, size in zip(index["names"], index["sizes"], strict=True):
            z.writestr(name, body[offset : offset + size])
            offset += size
    (data_root / "wordnet_nouns").mkdir(exist_ok=True)
    shutil.copyfile(src / WORDNET, data_root / "wordnet_nouns" / WORDNET)
    return out


def campaign(
    name: str, data: tuple[torch.Tensor, ...], warm_idx: list[int], naive: int, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One learner: ``trainer.fit`` with ``PartialFeedback`` (rounds of ``--round`` of the naive cost); ALPF-ERC
    goes on until the pool is fully labelled."""
    xp, yp, xt, yt = data
    to_full = name in args.to_full
    warm = WarmStart(_strategy(name, args.session), warm=False)  # type: ignore[arg-type]
    make_net = functools.partial(MODELS[args.model], 10, args.width)
    rounds = Rounds(warm, seed, naive, make_net)
    dm = StepsPerRound(
        ArrayDataset(xp, yp),
        cifar10_hierarchy(),
        val=ArrayDataset(xt, yt),
        batch_size=args.batch_size,
        pool_batch_size=1024,
        steps=args.steps,
        round_seed=rounds.head_seed,
    )
    dm.setup()
    dm.label(warm_idx, advance_round=False)  # the free 5%: exact labels, no question counted
    module = Supervised(
        make_net(),
        lambda params: torch.optim.Adam(params, lr=args.lr, weight_decay=5e-4),
        loss=partial_label_loss,
        augment=augment,
        lr_factor=round_cosine(args.steps) if args.schedule == "cosine" else None,
    )
    round_q = round(args.round * naive)
    total = round((3.0 if to_full else args.until) * naive)
    epochs = 1 + (round(args.until / args.round) if not to_full else 10 * round(1 / args.round))
    callback = PartialFeedback(warm, round_q, total, seed=1000 * seed)
    started, cpu = time.perf_counter(), time.process_time()
    trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=1,
        precision=args.precision,
        max_epochs=epochs,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[
            callback,
            rounds,
            Progress(Path(args.work) / f"progress_s{seed}_{name}.json", rounds, args.stop_at),
        ],
    ).fit(module, datamodule=dm)
    state = dm.partial
    assert state is not None
    full = bool(state.fully_labelled.all())
    return {
        "curve": rounds.curve,
        "questions_to_full": state.num_questions if full else None,
        **({"stopped_at_deadline": True} if args.stop_at is not None and time.time() > args.stop_at else {}),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


def run_all(args: argparse.Namespace) -> None:
    """Learner by learner, each over every seed (so a cut-off run has all seeds of the first learners)."""
    data = {seed: load_data(seed, args.pool, args.test) for seed in args.seeds}
    for name in args.strategies:
        for seed in args.seeds:
            run_seed(seed, args, data[seed], [name])


def run_seed(
    seed: int, args: argparse.Namespace, data: tuple[torch.Tensor, ...], strategies: list[str]
) -> dict[str, Any]:
    """The given learners on one seed; the seed's job file (``--work``) keeps every finished learner."""
    yp = data[1]
    hierarchy = cifar10_hierarchy()
    costs = binary_search_costs(hierarchy.question_masks())
    naive = int(costs[yp].sum())
    n_warm = round(args.warm * len(yp))
    warm_idx = sorted(np.random.default_rng(20_000 + seed).permutation(len(yp))[:n_warm].tolist())
    rest = np.setdiff1d(np.arange(len(yp)), warm_idx)
    out: dict[str, Any] = {
        "seed": seed,
        "pool": len(yp),
        "test": len(data[3]),
        "warm": n_warm,
        "naive_cost": naive,
        "naive_cost_non_warm": int(costs[yp[rest]].sum()),
        "questions_per_image": float(costs[yp].float().mean()),
        "runs": {},
    }
    path = Path(args.work) / f"alpf_e2e_s{seed}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if (stored["naive_cost"], stored["warm"], stored["pool"]) != (naive, n_warm, len(yp)):
            raise SystemExit(
                f"{path}: seed {seed}'s pool differs from the stored one's (not paired); use another --work"
            )
        out = stored
    for name in strategies:
        if name in out["runs"]:
            continue
        torch.manual_seed(seed)
        res = campaign(name, data, warm_idx, naive, seed, args)
        out["runs"][name] = res
        last = [r for r in res["curve"] if r["budget"] <= args.until + 1e-3][-1]
        print(
            f"seed {seed} {name:9s} acc@{last['budget']:.2f}={last['accuracy']:.4f} full={res['questions_to_full']} "
            f"naive={naive} ({res['seconds']:.0f}s wall, {res['cpu_seconds']:.0f}s cpu)",
            flush=True,
        )
        out = _store_run(path, out, name, res)
    return out


def _store_run(path: Path, out: dict[str, Any], name: str, res: dict[str, Any]) -> dict[str, Any]:
    """Add learner ``name``'s run to the seed's job file under an exclusive lock, re-reading it first: jobs of
    one seed's learners may run in parallel processes (the GPU run), and none may drop another's row."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(path.read_text()) if path.exists() else out
        current["runs"][name] = res
        write_json(path, current, indent=None)
    return current


def accuracy_at(curve: list[dict[str, float]], budget: float) -> float:
    """Test accuracy at ``budget`` (a fraction of the naive cost), interpolated between the rounds around it."""
    xs = [r["budget"] for r in curve]
    return float(np.interp(budget, xs, [r["accuracy"] for r in curve]))


SETTINGS = (
    "scale",
    "pool",
    "test",
    "steps",
    "round",
    "until",
    "warm",
    "width",
    "lr",
    "schedule",
    "session",
    "model",
    "batch_size",
    "precision",
)
# the settings added after protocols were stored without them: a stored protocol without one ran with this value
SETTING_DEFAULTS = {"model": "cnn", "batch_size": 64, "precision": "32-true"}
REQUIRED = ("uniform", "alpf_erc", "eig")  # the learners the accuracy claims need on every planned seed
CLAIM_RULE = (
    "fixed before any result of the second protocol was seen: the protocols are listed in order of preference "
    "(--protocols, the larger, better-trained one first); the accuracy claims come from the first protocol whose "
    "Uniform, ALPF-ERC and ALPF-EIG finished the 30% point on every planned seed, the full-annotation claim from "
    "the first whose ALPF-ERC reached full annotation on every planned seed; if none is complete, the first "
    "protocol that has the rows. Every other protocol's rows are written beside, under ids with its tag as suffix. "
    "Nothing is chosen on test accuracy."
)


def protocol_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define a protocol (the same for every job of its work folder)."""
    return {k: getattr(args, k) for k in SETTINGS}


def check_settings(work: Path, args: argparse.Namespace) -> None:
    """Write ``work/settings.json`` on the first job; a later job with other settings is refused (its rows would
    not be paired with the stored ones)."""
    path, mine = work / "settings.json", protocol_settings(args)
    if not path.exists():
        write_json(path, {**mine, "how_it_ran": args.note})
        return
    stored = json.loads(path.read_text())
    differ = {
        k: (stored.get(k, SETTING_DEFAULTS.get(k)), v)
        for k, v in mine.items()
        if stored.get(k, SETTING_DEFAULTS.get(k)) != v
    }
    if differ:
        raise SystemExit(f"{path}: these settings differ from the stored protocol's (stored, given): {differ}")


def protocol_tag(settings: dict[str, Any]) -> str:
    """``pool2000_steps120`` (``_cosine`` with the per-round cosine schedule): the suffix of a beside protocol's ids."""
    tag = f"pool{settings['pool']}_steps{settings['steps']}"
    tag += "_cosine" if settings.get("schedule", "constant") == "cosine" else ""
    if settings.get("model", "cnn") != "cnn":
        tag += f"_{settings['model']}{settings['width']}"
    if settings.get("batch_size", 64) != 64:
        tag += f"_b{settings['batch_size']}"
    return tag


def load_stored_protocol(ref: str, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A protocol read back from a committed results file, ``ref`` = ``FILE#TAG`` (its job files are gone): its
    settings, its job files rebuilt from ``details.protocols[TAG]`` (the curves, the questions to full annotation,
    the CPU time per run: what :func:`protocol_claims` reads) and the stored details themselves, which the merge
    writes back unchanged.

    >>> settings, jobs, _ = load_stored_protocol(f"{REPO}/benchmarks/results/alpf_e2e.json#pool2000_steps120", [0, 1, 2])
    >>> settings["pool"], [j["seed"] for j in jobs], jobs[0]["runs"]["alpf_erc"]["questions_to_full"]
    (2000, [0, 1, 2], 5443)
    """
    file, _, tag = ref.partition("#")
    protocols = json.loads(Path(file).read_text())["details"]["protocols"]
    if tag not in protocols:
        raise SystemExit(f"{file}: no protocol {tag!r} in details.protocols (stored: {sorted(protocols)})")
    stored = protocols[tag]
    settings = {**stored["settings"], "how_it_ran": stored.get("how_it_ran", "")}
    jobs = [
        {
            "seed": int(seed),
            "naive_cost": naive,
            "naive_cost_non_warm": stored["naive_cost_non_warm"][seed],
            "questions_per_image": stored["questions_per_image"],
            "runs": {
                s: {
                    "curve": curves[seed],
                    "questions_to_full": stored["questions_to_full"][s][seed],
                    "cpu_seconds": stored["cpu_seconds_per_run"][s][seed],
                }
                for s, curves in stored["curves"].items()
                if seed in curves
            },
        }
        for seed, naive in stored["naive_cost"].items()
    ]
    return settings, [j for j in jobs if j["seed"] in seeds], stored


def load_stored_beside(ref: str) -> tuple[str, dict[str, Any]]:
    """A beside-run read back from a committed results file, ``ref`` = ``FILE#TAG`` (its work folder is gone):
    ``(TAG, details.beside_runs[TAG])``, written back unchanged by the merge."""
    file, _, tag = ref.partition("#")
    beside = json.loads(Path(file).read_text())["details"].get("beside_runs", {})
    if tag not in beside:
        raise SystemExit(f"{file}: no beside-run {tag!r} in details.beside_runs (stored: {sorted(beside)})")
    return tag, beside[tag]


def _plan(work: Path) -> dict[str, Any]:
    """``{"plan": ...}`` from ``work/plan.json`` (the run's plan and rule, written before its results were read),
    or nothing."""
    path = work / "plan.json"
    return {"plan": json.loads(path.read_text())} if "#" not in str(work) and path.exists() else {}


def load_protocol(work: Path, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A protocol's settings and job files; a run stopped before it finished (ALPF-ERC on its way to full
    annotation) counts with the rounds its progress file kept when they reach ``until``. A stored run that
    stopped (``--stop-at``) before ``until`` does not count: it is listed in the job's ``short_runs``."""
    settings = json.loads((work / "settings.json").read_text())
    jobs = [json.loads(p.read_text()) for p in sorted(work.glob("alpf_e2e_s*.json"))]
    jobs = [j for j in jobs if j["seed"] in seeds]
    for job in jobs:
        short = [n for n, r in job["runs"].items() if r["curve"][-1]["budget"] < settings["until"] - 0.01]
        job["short_runs"] = {n: job["runs"].pop(n)["curve"] for n in short}
        for name in STRATEGIES:
            progress = work / f"progress_s{job['seed']}_{name}.json"
            if name in job["runs"] or name in job["short_runs"] or not progress.exists():
                continue
            curve = json.loads(progress.read_text())["curve"]
            if curve and curve[-1]["budget"] >= settings["until"] - 0.01:
                row = json.loads(progress.read_text())
                cpu = row.get("round_cpu_seconds") or [0.0]  # to its last measured round
                job["runs"][name] = {
                    "curve": curve,
                    "questions_to_full": None,
                    "unfinished": True,
                    "cpu_seconds": cpu[-1],
                    **({"seconds": row["round_seconds"][-1]} if row.get("round_seconds") else {}),
                }
    return settings, jobs


def complete(jobs: list[dict[str, Any]], seeds: list[int], names: tuple[str, ...], to_full: bool = False) -> bool:
    """Whether every planned seed finished ``names`` (with ``to_full``: reached full annotation)."""
    by_seed = {j["seed"]: j["runs"] for j in jobs}
    if to_full:
        return all(by_seed.get(s, {}).get(n, {}).get("questions_to_full") for s in seeds for n in names)
    return all(n in by_seed.get(s, {}) for s in seeds for n in names)


def protocol_claims(
    jobs: list[dict[str, Any]], settings: dict[str, Any], accuracy_suffix: str, full_suffix: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One protocol's claims (every comparison with Uniform paired on the seeds both learners finished) and
    details; ids carry the given suffixes."""
    until = settings["until"]
    size = f"pool {settings['pool']:,}, {settings['steps']} steps of {settings.get('batch_size', 64)} per round" + (
        ", per-round cosine learning rate" if settings.get("schedule", "constant") == "cosine" else ""
    )
    net = "small CNN" if settings.get("model", "cnn") == "cnn" else f"small ResNet (width {settings['width']})"
    scope = "the whole 50k training set as the pool" if settings["pool"] >= 50_000 else "scaled run"
    acc = {
        s: {j["seed"]: 100 * accuracy_at(j["runs"][s]["curve"], until) for j in jobs if s in j["runs"]}
        for s in STRATEGIES
    }
    acc = {s: v for s, v in acc.items() if v}
    claims: list[dict[str, Any]] = []

    def paired(s: str) -> tuple[float, float, list[int]]:
        seeds = sorted(set(acc[s]) & set(acc["uniform"]))
        return float(np.mean([acc[s][k] for k in seeds])), float(np.mean([acc["uniform"][k] for k in seeds])), seeds

    if "uniform" in acc:
        pair = [s for s in PAIR if s in acc]
        if pair:
            best = max(pair, key=lambda s: paired(s)[0] - paired(s)[1])
            ours, anchor, seeds = paired(best)
            claims.append(
                claim(
                    "alpf_best_vs_uniform_at_30pct" + accuracy_suffix,
                    f"CIFAR-10 (WordNet tree), test accuracy (%) at {until:.0%} of the naive question budget, "
                    f"the best ALPF learner ({LABELS[best]}) vs Uniform, mean of seeds {seeds}; {net} trained "
                    f"end to end from scratch every round ({size}), 5% free warm start ({scope}, see details)",
                    ours=ours,
                    anchor=anchor,
                    better="higher",
                    unit="accuracy points",
                    target_delta=3.0,
                    best=best,
                    seeds=seeds,
                )
            )
        for s in ("alpf_erc", "aq_erc", "al_me", "eig", "edc"):
            if s not in acc:
                continue
            ours, anchor, seeds = paired(s)
            cid = "alpf_erc_vs_uniform_at_30pct" if s == "alpf_erc" else f"alpf_e2e_{s}_vs_uniform_at_30pct"
            claims.append(
                claim(
                    cid + accuracy_suffix,
                    f"CIFAR-10 (WordNet tree), test accuracy (%) at {until:.0%} of the naive budget, "
                    f"{LABELS[s]} vs Uniform, mean of seeds {seeds} (end-to-end {net}, {size}, {scope})",
                    ours=ours,
                    anchor=anchor,
                    better="higher",
                    unit="accuracy points",
                    target_delta=0.0,
                    seeds=seeds,
                )
            )
    full = [
        (j["seed"], j["runs"]["alpf_erc"]["questions_to_full"], j["naive_cost_non_warm"])
        for j in jobs
        if "alpf_erc" in j["runs"] and j["runs"]["alpf_erc"]["questions_to_full"]
    ]
    if full:
        claims.append(
            claim(
                "questions_to_full_annotation_vs_uniform" + full_suffix,
                "binary questions to fully label the pool's non-warm examples: Uniform (binary search down the "
                f"binarized WordNet tree = the naive cost) / ALPF-ERC, mean of seeds {[s for s, _, _ in full]} "
                f"(end-to-end {net} retrained every round, {size}, {scope})",
                ours=float(np.mean([q for _, q, _ in full])),
                anchor=float(np.mean([n for _, _, n in full])),
                better="lower",
                unit="questions",
                target=1.6,
                per_seed=[{"seed": s, "alpf_erc": q, "naive": n, "ratio": n / q} for s, q, n in full],
            )
        )
    details = {
        "settings": {k: v for k, v in settings.items() if k != "how_it_ran"},
        "how_it_ran": settings.get("how_it_ran", ""),
        "cpu_seconds": sum(r["cpu_seconds"] for j in jobs for r in j["runs"].values()),
        "cpu_seconds_per_run": {
            s: {j["seed"]: j["runs"][s]["cpu_seconds"] for j in jobs if s in j["runs"]} for s in STRATEGIES
        },
        "wall_seconds_per_run": {
            s: {j["seed"]: j["runs"][s]["seconds"] for j in jobs if "seconds" in j["runs"].get(s, {})}
            for s in STRATEGIES
        },
        "unfinished_runs": [f"{s} seed {j['seed']}" for j in jobs for s, r in j["runs"].items() if r.get("unfinished")],
        "stopped_at_deadline": [
            f"{s} seed {j['seed']}" for j in jobs for s, r in j["runs"].items() if r.get("stopped_at_deadline")
        ],
        "short_runs": {f"{s} seed {j['seed']}": c for j in jobs for s, c in j.get("short_runs", {}).items()},
        "accuracy_at_until_per_seed": acc,
        "accuracy_at_until_mean": {s: float(np.mean(list(v.values()))) for s, v in acc.items()},
        "accuracy_at_until_std": {s: float(np.std(list(v.values()))) for s, v in acc.items()},
        "naive_cost": {j["seed"]: j["naive_cost"] for j in jobs},
        "naive_cost_non_warm": {j["seed"]: j["naive_cost_non_warm"] for j in jobs},
        "questions_per_image": jobs[0]["questions_per_image"] if jobs else None,
        "curves": {s: {j["seed"]: j["runs"][s]["curve"] for j in jobs if s in j["runs"]} for s in STRATEGIES},
        "questions_to_full": {
            s: {j["seed"]: j["runs"][s]["questions_to_full"] for j in jobs if s in j["runs"]} for s in STRATEGIES
        },
        "delta_vs_uniform_per_seed": {
            s: {k: v - acc["uniform"][k] for k, v in per_seed.items() if k in acc["uniform"]}
            for s, per_seed in acc.items()
            if s != "uniform" and "uniform" in acc
        },
    }
    return claims, details


def merge(args: argparse.Namespace) -> None:
    """Write ``alpf_e2e.json`` from the protocols' work folders (``--protocols``, in order of preference; see
    :data:`CLAIM_RULE`) and the plot (one panel per protocol)."""
    refs = list(args.protocols or [args.work])
    loaded: list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]] = [
        load_stored_protocol(ref, args.seeds) if "#" in ref else (*load_protocol(Path(ref), args.seeds), None)
        for ref in refs
    ]
    kept = [ref for ref, (_, jobs, _) in zip(refs, loaded, strict=True) if jobs]  # the protocols with rows
    if not kept:
        raise SystemExit(f"no finished learner in {refs} (seeds {args.seeds}): nothing to merge")
    loaded = [(st, jobs, stored) for st, jobs, stored in loaded if jobs]

    def pick(ok: Any) -> int:
        return next((i for i, (_, jobs, _) in enumerate(loaded) if ok(jobs)), 0)

    accuracy_from = pick(lambda jobs: complete(jobs, args.seeds, REQUIRED))
    full_from = pick(lambda jobs: complete(jobs, args.seeds, ("alpf_erc",), to_full=True))
    claims: list[dict[str, Any]] = []
    protocols: dict[str, Any] = {}
    for i, (settings, jobs, stored) in enumerate(loaded):
        tag = protocol_tag(settings)
        c, d = protocol_claims(
            jobs, settings, "" if i == accuracy_from else f"_{tag}", "" if i == full_from else f"_{tag}"
        )
        claims += c
        # a stored protocol's details go back unchanged
        protocols[tag] = stored if stored is not None else {**d, **_plan(Path(kept[i]))}
    tags = list(protocols)
    beside = {}
    for work in args.beside or []:  # reported in details only: never a claims row
        if "#" in work:  # a beside-run whose job files are gone: its stored details go back unchanged
            tag, row = load_stored_beside(work)
            beside[tag] = row
            continue
        settings, jobs = load_protocol(Path(work), args.seeds)
        if jobs:
            beside[protocol_tag(settings)] = {
                "note": "beside-run, not a claim (fewer seeds or learners than the claim protocols)",
                **protocol_claims(jobs, settings, "", "")[1],
                **_plan(Path(work)),
            }
    details = {
        "protocol": __doc__,
        "claim_rule": CLAIM_RULE,
        "claim_protocol": {"accuracy": tags[accuracy_from], "questions_to_full": tags[full_from]},
        "planned_seeds": args.seeds,
        "cpu_seconds_total": sum(d["cpu_seconds"] for d in protocols.values()),
        "load_note": args.load_note,
        "protocols": protocols,
        "beside_runs": beside,
        "hundred_class_hierarchy": (
            "none offline: /work/shared/data has no image set with >= 100 classes (CIFAR-100, Tiny ImageNet are "
            "listed under 'Wanted but not found' in its README); the paper's +8 points on 200 classes stays the "
            "paper's, not ours"
        ),
        "plot": "docs/img/alpf_e2e.png",
    }
    # a job's own merge (no --merge) writes into its work folder unless told otherwise: the committed results
    # file and plot come from ``--merge --protocols ...`` only
    here = args.merge and not args.quick
    out_dir = Path(args.out_dir) if args.out_dir else (REPO / "benchmarks" / "results" if here else Path(refs[0]))
    plot_path = (
        Path(args.plot) if args.plot else (REPO / "docs" / "img" / "alpf_e2e.png" if here else out_dir / "p.png")
    )
    panels = {tag: d["curves"] for tag, d in protocols.items()}
    for tag in args.plot_beside or []:  # a beside-run drawn as one more panel (still not a claim)
        if tag not in beside or "curves" not in beside[tag]:
            raise SystemExit(f"--plot-beside {tag}: no such beside-run with curves (have: {sorted(beside)})")
        panels[f"{tag} (beside)"] = beside[tag]["curves"]
    plot(panels, plot_path)
    write_results(
        "alpf_e2e" if not args.quick else "alpf_e2e_quick",
        claims,
        details,
        results_dir=out_dir,
        inline_number_lists=True,
    )
    for row in claims:
        print(json.dumps(row))


def plot(panels: dict[str, dict[str, dict[int, list[dict[str, float]]]]], path: Path) -> None:
    """One panel per protocol: mean ± std over seeds of test accuracy against the question budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.2), squeeze=False)
    for ax, (tag, curves) in zip(axes[0], panels.items()):
        for s, runs in curves.items():
            if not runs:
                continue
            grid = sorted({round(r["budget"], 3) for run in runs.values() for r in run if r["budget"] <= 1.0})
            # a seed counts at a budget only when its curve reaches it (ALPF-ERC runs on to full on some seeds only)
            ys = np.array(
                [
                    [accuracy_at(run, g) if g <= run[-1]["budget"] + 1e-3 else np.nan for g in grid]
                    for run in runs.values()
                ]
            )
            ax.errorbar(
                np.array(grid) * 100,
                100 * np.nanmean(ys, 0),
                yerr=100 * np.nanstd(ys, 0),
                label=f"{LABELS[s]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})",
                marker="o",
                ms=3,
                capsize=2,
            )
        ax.set_xlabel("questions, % of the binary-search cost of the pool")
        ax.set_title(f"CIFAR-10, {'ResNet' if 'resnet' in tag else 'CNN'} retrained each round: {tag}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test accuracy, %")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the sizes ``--scale`` implies filled in."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.04, help="pool = scale x 50k, test = scale x 10k (x2.5)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--to-full", nargs="*", default=["alpf_erc"], help="learners run on to full annotation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=None)
    parser.add_argument("--test", type=int, default=None)
    parser.add_argument(
        "--steps", type=int, default=None, help="batches of --batch-size per round (default 2000 x scale^0.5)"
    )
    parser.add_argument("--round", type=float, default=0.1)
    parser.add_argument("--until", type=float, default=0.3)
    parser.add_argument("--warm", type=float, default=0.05)
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn", help="small_cnn or small_resnet")
    parser.add_argument("--width", type=int, default=16, help="the model's first width (resnet: 32)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (--steps of them per round)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed on a GPU")
    parser.add_argument(
        "--stop-at",
        type=float,
        default=None,
        help="a Unix time: no round starts after it (a learner's measured rounds are kept, marked stopped)",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--schedule", choices=("constant", "cosine"), default="constant", help="learning rate within each round"
    )
    parser.add_argument("--session", choices=("rescore", "batch"), default="rescore")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="/tmp/alpf_e2e")
    parser.add_argument(
        "--out-dir",
        default=None,
        help="where alpf_e2e.json goes (default: benchmarks/results with --merge, else --work)",
    )
    parser.add_argument("--note", default="", help="how the jobs ran (recorded in details)")
    parser.add_argument("--merge", action="store_true", help="only merge the finished seeds into alpf_e2e.json")
    parser.add_argument(
        "--protocols",
        nargs="*",
        default=None,
        help="work folders to merge, in order of preference (default --work); FILE#TAG reads protocol TAG back "
        "from a committed results file (its job files gone)",
    )
    parser.add_argument(
        "--beside", nargs="*", default=None, help="work folders merged into details.beside_runs only (no claims rows)"
    )
    parser.add_argument(
        "--plot-beside", nargs="*", default=None, help="beside-runs (by tag) drawn as extra panels of the plot"
    )
    parser.add_argument(
        "--plot", default=None, help="the merged plot (default: docs/img/alpf_e2e.png with --merge, else in --work)"
    )
    parser.add_argument("--load-note", default="", help="how loaded the machine was (recorded in details)")
    parser.add_argument("--quick", action="store_true", help="smoke run (not a result)")
    parser.add_argument("--prepare", default=None, help="pack CIFAR-10 into this folder for a lent GPU and exit")
    parser.add_argument("--unpack", nargs=2, default=None, metavar=("SRC", "ROOT"), help="--prepare's files -> ROOT")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.seeds, args.strategies, args.steps = 0.01, [0], ["uniform", "alpf_erc"], 20
    args.pool = args.pool or round(args.scale * 50_000)
    args.test = args.test or min(10_000, round(2.5 * args.scale * 10_000))
    args.steps = args.steps or round(2000 * args.scale**0.5)
    return args


def main() -> None:
    args = parse_args()
    if args.prepare or args.unpack:
        print(pack_cifar10(Path(args.prepare)) if args.prepare else unpack_cifar10(*map(Path, args.unpack)))
        return
    torch.set_num_threads(args.threads)
    quiet()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if not args.merge:
        check_settings(Path(args.work), args)
        run_all(args)
    merge(args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
