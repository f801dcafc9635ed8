"""ALPF benchmark: accuracy vs question budget for Uniform, AL-ME, AQ-ERC, ALPF-ERC (3 seeds), and the number
of binary questions ALPF-ERC needs to fully annotate the pool vs the naive binary-search annotator.

Protocol (scaled down for a 2-core CPU; stated in the results file and docs/alpf.md):
- data: CIFAR-10 (shared lossy-JPEG copy) with its classes in the WordNet noun tree, and Fashion-MNIST with the
  coarse grouping of its SOURCE.txt; both trees binarized (Huffman by leaf count). A seeded random pool of
  ``--pool`` training images; the full 10,000-image test set.
- model: fixed features computed once (CIFAR-10: single-layer random-patch convolution features in the style of
  Coates & Ng 2011 -- 6x6 whitened random patches as filters, ReLU, 2x2 quadrant pooling -- then PCA to 256;
  Fashion-MNIST: PCA-whitened pixels, 256 components), and an MLP head (256 -> 256 -> C) trained from scratch
  every round with ``partial_label_loss`` (Adam, fixed number of steps).
- budget unit: the naive cost = questions a binary-search annotator needs to label the whole pool. Rounds of
  ``--round`` (5%) of it; accuracy after each round up to 40%; then ALPF-ERC (and AQ-ERC) go on until every pool
  example is fully labelled, with rounds of 10%.
- everything goes through the library: ``PartialLabels``, ``get_question_strategy``, ``ask_questions``,
  ``SimulatedBinaryOracle``, ``partial_label_loss``, ``cifar10_hierarchy``/``fashion_mnist_hierarchy``. Only the
  Lightning Trainer is replaced by a 20-line full-batch-on-features torch loop: on a 256-d MLP head its per-step
  overhead would dominate the CPU time.

Run: ``python benchmarks/alpf.py`` (about 20-30 min on 2 cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import claim, write_results
from trinity_lightning.active.partial_feedback import (
    PartialLabels,
    SimulatedBinaryOracle,
    ask_questions,
    binary_search_costs,
    cifar10_hierarchy,
    fashion_mnist_hierarchy,
    get_question_strategy,
    partial_label_loss,
)
from trinity_lightning.data import load_cifar10, load_fashion_mnist

CACHE = Path.home() / ".cache" / "trinity_lightning"
STRATEGIES = ("uniform", "al_me", "aq_erc", "alpf_erc")
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- features
def _pca(train: torch.Tensor, test: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    mu = train.mean(0)
    _, s, v = torch.linalg.svd((train - mu)[:: max(1, len(train) // 20000)], full_matrices=False)
    proj = v[:k].T / (s[:k] / math.sqrt(min(len(train), 20000))).clamp_min(1e-6)
    return (train - mu) @ proj, (test - mu) @ proj


def _patch_features(images: torch.Tensor, fit_on: torch.Tensor, n_filters: int, k: int, seed: int) -> torch.Tensor:
    """Random-patch convolution features (Coates & Ng 2011 without k-means): (N, 4 * n_filters)."""
    g = torch.Generator().manual_seed(seed)
    n, ch, size, _ = fit_on.shape
    idx = torch.randint(0, n, (40000,), generator=g)
    pos = torch.randint(0, size - k + 1, (40000, 2), generator=g)
    rows = torch.arange(k)
    patches = fit_on[idx[:, None, None, None], torch.arange(ch)[None, :, None, None],
                     (pos[:, 0, None, None, None] + rows[None, None, :, None]),
                     (pos[:, 1, None, None, None] + rows[None, None, None, :])].reshape(40000, -1)
    patches = (patches - patches.mean(1, keepdim=True)) / (patches.std(1, keepdim=True) + 0.1)
    mu = patches.mean(0)
    e, V = torch.linalg.eigh(torch.cov((patches - mu).T))
    W = V @ torch.diag(1 / torch.sqrt(e.clamp_min(0) + 0.1)) @ V.T
    filters = ((patches - mu) @ W)[torch.randperm(40000, generator=g)[:n_filters]]
    filters = filters / filters.norm(dim=1, keepdim=True)
    Wf = filters @ W.T  # acts on normalized raw patches
    bias = -(Wf @ mu)
    d = ch * k * k
    ones = torch.ones(1, ch, k, k) / d
    out = []
    for s in range(0, len(images), 1000):
        x = images[s:s + 1000]
        m = torch.nn.functional.conv2d(x, ones)
        sd = (torch.nn.functional.conv2d(x * x, ones) - m * m).clamp_min(0).sqrt() * math.sqrt(d / (d - 1)) + 0.1
        z = torch.nn.functional.conv2d(x, Wf.reshape(-1, ch, k, k))
        a = torch.relu((z - m * Wf.sum(1).view(1, -1, 1, 1)) / sd + bias.view(1, -1, 1, 1))
        h = a.shape[-1] // 2
        out.append(torch.cat([a[..., :h, :h].mean((2, 3)), a[..., :h, h:].mean((2, 3)),
                              a[..., h:, :h].mean((2, 3)), a[..., h:, h:].mean((2, 3))], 1))
    return torch.cat(out)


def features(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(train features, train labels, test features, test labels, classes), cached on disk."""
    path = CACHE / f"alpf_features_{name}_v1.pt"
    if path.is_file():
        return torch.load(path)
    t0 = time.perf_counter()
    if name == "cifar10":
        tr, te = load_cifar10("train"), load_cifar10("test")
        to = lambda a: torch.from_numpy(a.images).permute(0, 3, 1, 2).float().div(255)  # noqa: E731
        xtr, xte = to(tr), to(te)
        f = _patch_features(torch.cat([xtr, xte]), xtr, n_filters=256, k=6, seed=0)
        ftr, fte = f[: len(xtr)], f[len(xtr):]
        ftr, fte = _pca(ftr.sqrt(), fte.sqrt(), 256)
    else:
        tr, te = load_fashion_mnist("train"), load_fashion_mnist("test")
        ftr = torch.from_numpy(tr.images).reshape(len(tr), -1).float().div(255)
        fte = torch.from_numpy(te.images).reshape(len(te), -1).float().div(255)
        ftr, fte = _pca(ftr, fte, 256)
    out = (ftr.contiguous(), torch.from_numpy(tr.labels), fte.contiguous(), torch.from_numpy(te.labels),
           list(tr.classes))
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    print(f"[{name}] features {tuple(ftr.shape)} in {time.perf_counter() - t0:.0f}s", flush=True)
    return out


# --------------------------------------------------------------------------------------------------- model
def train_head(x: torch.Tensor, candidates: torch.Tensor, seed: int, steps: int, hidden: int = 256
               ) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(hidden, candidates.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (min(256, len(x)),), generator=g)
        loss = partial_label_loss(model(x[batch]), candidates[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[s:s + 8192]).softmax(-1) for s in range(0, len(x), 8192)])


# ------------------------------------------------------------------------------------------------ campaign
def campaign(strategy_name: str, xp: torch.Tensor, yp: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
             masks: torch.Tensor, naive: int, seed: int, round_frac: float, eval_until: float, to_full: bool,
             steps: int, warmup: bool = False, crossfit: bool = False) -> dict[str, Any]:
    state = PartialLabels(len(yp), masks.shape[1])
    oracle = SimulatedBinaryOracle(yp, masks)
    strategy = get_question_strategy(strategy_name)
    # round 0: an untrained model (random, nearly uniform outputs) breaks ties between untouched examples
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(0.01 * torch.randn(len(yp), masks.shape[1], generator=g), dim=1)
    n_eval = round(eval_until / round_frac)
    targets = [round_frac * (i + 1) for i in range(n_eval)]
    if to_full:
        targets += [eval_until + 2 * round_frac * (i + 1) for i in range(int((3.0 - eval_until) / (2 * round_frac)))]
    curve: list[dict[str, float]] = []
    spent, t0 = 0, time.perf_counter()
    for rnd, target in enumerate(targets):
        chooser = get_question_strategy("uniform") if warmup and rnd == 0 else strategy
        asked = ask_questions(chooser, state, masks, oracle, round(target * naive) - spent, probs,
                              seed=1000 * seed + rnd)
        spent += asked
        informative = torch.nonzero(state.informative).flatten()
        model = train_head(xp[informative], state.candidates[informative], seed * 7919 + rnd, steps)
        acc = float((predict(model, xt).argmax(1) == yt).float().mean())
        curve.append({"questions": spent, "budget": spent / naive, "accuracy": acc,
                      "fully_labelled": int(state.fully_labelled.sum()), "informative": len(informative)})
        if bool(state.fully_labelled.all()) or asked == 0:
            break
        if crossfit:  # score each informative example with a model that did not train on it
            fold = torch.randperm(len(informative), generator=g) % 2
            probs = predict(model, xp)
            for k in (0, 1):
                fit_on, score_on = informative[fold != k], informative[fold == k]
                other = train_head(xp[fit_on], state.candidates[fit_on], seed * 7919 + rnd + 17 * (k + 1), steps)
                probs[score_on] = predict(other, xp[score_on])
        else:
            probs = predict(model, xp)
    return {"curve": curve, "questions_to_full": spent if bool(state.fully_labelled.all()) else None,
            "seconds": time.perf_counter() - t0}


def accuracy_at(curve: list[dict[str, float]], budget: float) -> float:
    for row in curve:
        if abs(row["budget"] - budget) < 1e-3:
            return row["accuracy"]
    raise KeyError(f"no evaluation at budget {budget}")


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    ftr, ytr, fte, yte, classes = features(name)
    hierarchy = cifar10_hierarchy() if name == "cifar10" else fashion_mnist_hierarchy()
    masks = hierarchy.question_masks()
    costs = binary_search_costs(masks)
    mu, sd = ftr.mean(0), ftr.std(0).clamp_min(1e-6)
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    out: dict[str, Any] = {"hierarchy": hierarchy.to_dict(), "questions": hierarchy.questions,
                           "binary_search_cost_per_class": dict(zip(classes, costs.tolist())), "runs": {}}
    for seed in args.seeds:
        pool = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(ytr))[: args.pool]))
        xp, yp = ftr[pool], ytr[pool]
        naive = int(costs[yp].sum())
        out.setdefault("naive_cost", {})[seed] = naive
        for strategy in args.strategies:
            to_full = strategy in ("alpf_erc", "aq_erc") and not args.quick
            res = campaign(strategy, xp, yp, fte, yte, masks, naive, seed, args.round, args.until, to_full,
                           args.steps)
            out["runs"].setdefault(strategy, {})[seed] = res
            last = [r for r in res["curve"] if r["budget"] <= args.until + 1e-3][-1]
            print(f"[{name}] seed {seed} {strategy:9s} acc@{last['budget']:.2f}={last['accuracy']:.4f} "
                  f"full={res['questions_to_full']} naive={naive} ({res['seconds']:.0f}s)", flush=True)
            partial = REPO / "benchmarks" / "results" / f"alpf_partial_{name}.json"
            partial.write_text(json.dumps(out, default=float) + "\n")
    return out


def plot(results: dict[str, Any], path: Path, until: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    labels = {"uniform": "Uniform", "al_me": "AL-ME", "aq_erc": "AQ-ERC", "alpf_erc": "ALPF-ERC"}
    for ax, (name, res) in zip(axes[0], results.items()):
        for strategy, runs in res["runs"].items():
            curves = [[r for r in run["curve"] if r["budget"] <= until + 1e-3] for run in runs.values()]
            xs = np.array([[r["budget"] for r in c] for c in curves]).mean(0) * 100
            ys = np.array([[r["accuracy"] for r in c] for c in curves]) * 100
            ax.errorbar(xs, ys.mean(0), yerr=ys.std(0), label=labels.get(strategy, strategy), marker="o", ms=3,
                        capsize=2)
        ax.set_title({"cifar10": "CIFAR-10 (WordNet tree)", "fashion_mnist": "Fashion-MNIST (coarse groups)"}
                     .get(name, name))
        ax.set_xlabel("questions, % of binary-search cost of the pool")
        ax.set_ylabel("test accuracy, %")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cifar10", "fashion_mnist"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=10000)
    parser.add_argument("--round", type=float, default=0.05)
    parser.add_argument("--until", type=float, default=0.4)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, small pool, no run to full")
    parser.add_argument("--merge", action="store_true", help="only merge the per-dataset partial files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.pool, args.steps = [0], 2000, 200
    results: dict[str, Any] = {}
    for name in args.datasets:
        partial = REPO / "benchmarks" / "results" / f"alpf_partial_{name}.json"
        if args.merge:
            results[name] = json.loads(partial.read_text())
            results[name]["runs"] = {s: {int(k): v for k, v in r.items()} for s, r in results[name]["runs"].items()}
        else:
            results[name] = run_dataset(name, args)
    claims, summary = [], {}
    for name, res in results.items():
        runs = res["runs"]
        acc = {s: [accuracy_at(r["curve"], 0.3) * 100 for r in runs[s].values()] for s in runs}
        naive = {int(k): v for k, v in res["naive_cost"].items()}
        full = {s: {int(k): r["questions_to_full"] for k, r in runs[s].items()} for s in runs}
        summary[name] = {"accuracy_at_30pct_mean": {s: float(np.mean(v)) for s, v in acc.items()},
                         "accuracy_at_30pct_per_seed": acc, "questions_to_full": full, "naive_cost": naive}
    primary = "cifar10" if "cifar10" in summary else next(iter(summary))
    s = summary[primary]
    if "alpf_erc" in s["accuracy_at_30pct_mean"] and "uniform" in s["accuracy_at_30pct_mean"]:
        claims.append(claim(
            "alpf_erc_vs_uniform_at_30pct",
            f"{primary}: test accuracy (%) at 30% of the binary-search question budget, ALPF-ERC vs Uniform, "
            f"mean of {len(s['accuracy_at_30pct_per_seed']['uniform'])} seeds, pool {args.pool}",
            ours=s["accuracy_at_30pct_mean"]["alpf_erc"], anchor=s["accuracy_at_30pct_mean"]["uniform"],
            better="higher", unit="accuracy points", target_delta=5.0,
            per_dataset={n: {"alpf_erc": v["accuracy_at_30pct_mean"].get("alpf_erc"),
                             "uniform": v["accuracy_at_30pct_mean"].get("uniform")} for n, v in summary.items()}))
        alpf_full = [v for v in s["questions_to_full"].get("alpf_erc", {}).values() if v]
        if alpf_full:
            naive_mean = float(np.mean(list(s["naive_cost"].values())))
            claims.append(claim(
                "questions_to_full_annotation_vs_uniform",
                f"{primary}: binary questions to fully label the {args.pool}-image pool, Uniform (binary search "
                "down the binarized tree) / ALPF-ERC, mean of seeds",
                ours=float(np.mean(alpf_full)), anchor=naive_mean, better="lower", unit="questions", target=1.4,
                per_dataset={n: {"uniform": float(np.mean(list(v["naive_cost"].values()))),
                                 "alpf_erc": float(np.mean([q for q in v["questions_to_full"].get("alpf_erc", {})
                                                            .values() if q] or [float("nan")]))}
                             for n, v in summary.items()}))
    plot_path = REPO / "docs" / "img" / "alpf.png"
    plot(results, plot_path, args.until)
    details = {"protocol": __doc__, "summary": summary, "plot": "docs/img/alpf.png", "pool": args.pool,
               "steps": args.steps, "round": args.round, "seeds": args.seeds,
               "results": {n: {"hierarchy": r["hierarchy"], "questions": r["questions"],
                               "binary_search_cost_per_class": r["binary_search_cost_per_class"],
                               "curves": {st: {sd: run["curve"] for sd, run in rs.items()}
                                          for st, rs in r["runs"].items()}}
                           for n, r in results.items()}}
    print(json.dumps(summary, indent=1, default=float))
    write_results("alpf" if not args.quick else "alpf_quick", claims, details)


if __name__ == "__main__":
    main()
