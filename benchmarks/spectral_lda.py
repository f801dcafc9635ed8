"""Spectral (tensor) LDA against gensim, tomotopy and scikit-learn: time, coherence, perplexity, topic recovery.

    python benchmarks/spectral_lda.py                               # everything (k = 20, 3 seeds, 1M-doc curve)
    python benchmarks/spectral_lda.py --seeds 0 --anchor-seeds 0 --scale 10000 100000   # what fits a loaded box
    python benchmarks/spectral_lda.py --quick                       # smoke run (small synthetic corpus only)
    # re-time the NYT claims on an idle machine, keeping every other measured run (~4 min on 2 idle cores):
    python benchmarks/spectral_lda.py --reuse --corpora nyt --methods spectral refined gensim tomotopy \\
        --rerun spectral refined gensim tomotopy --scale

Methods, all in one run, single-threaded (torch 1 thread; tomotopy workers=1; gensim LdaModel and scikit-learn are
single-process): ours = ``SpectralLDA`` (tensor power method), ``SpectralLDA`` with CP-ALS, with the online SGD
tensor decomposition (``spectral_online``), and "refined" = spectral topics + ``refine_sweeps`` variational-EM sweeps
(all with ``--oversample`` whitening directions beyond k, default 40: see docs/topics.md for why); anchors = gensim
``LdaModel`` (passes=3), tomotopy ``LDAModel`` (collapsed Gibbs, 200 iterations), scikit-learn ``LatentDirichletAllocation`` (online, 10 epochs). Every method gets
k = 20 and α = 1/k per topic (α₀ = 1); each library's own default topic-word prior.

Corpora: ``nyt_bow`` (8,447 × 3,012 counts), ``news_articles`` (3,824 raw news texts, tokenized by
``texts_to_counts``: our stop list, min_df 5, max_df 0.5, 5,000 words), and a synthetic LDA corpus with known topics
(V = 1,000, k = 20, 20,000 documents of 50-100 words, α₀ = 1, topics ~ Dir(0.1)). Each method is fitted on 90 % of
the documents; NPMI and UMass (top-10 words, documents as contexts) are computed over the whole corpus, held-out
perplexity by document completion on the other 10 % (``trinity_lightning.topics.perplexity``: the same inference step
for every method's topics), recovery = Hungarian-matched mean ℓ1 (synthetic). Times are fit times (corpus conversion
to each library's format excluded), medians over seeds.

The scale curve fits ``SpectralLDA`` in streaming mode on synthetic corpora of growing size (each batch of 10,000
documents drawn on the fly, seeded by its index, so every pass sees the same corpus); each size runs in a fresh
process and reports the fit time (sampling time subtracted) and the process's peak resident memory (imports and the
10,000-document sampling batch included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, claim, write_results

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "topics_scaling.png"
K = 20


def _data_dir() -> Path:
    from trinity_lightning.data import dataset_dir

    return dataset_dir("nyt_bow").parent


def load_corpora(quick: bool) -> dict[str, dict[str, Any]]:
    from trinity_lightning.topics import read_ldac, synthetic_lda, texts_to_counts

    out: dict[str, dict[str, Any]] = {}
    syn = synthetic_lda(n_docs=2000 if quick else 20_000, n_words=1000, n_topics=K, seed=1234)
    out["synthetic"] = {"counts": syn.counts, "vocab": [f"w{i}" for i in range(1000)], "true": syn.topics}
    if quick:
        return out
    root = _data_dir()
    nyt = read_ldac(root / "nyt_bow" / "nyt.ldac.gz", root / "nyt_bow" / "vocab.txt")
    out["nyt"] = {"counts": nyt.counts, "vocab": nyt.vocab}
    import pandas as pd

    df = pd.read_json(root / "news_articles" / "news_articles.jsonl.gz", lines=True)
    texts = (df.title.fillna("") + "\n" + df.text.fillna("")).tolist()
    news = texts_to_counts(texts, min_df=5, max_df=0.5, max_features=5000)
    out["news_articles"] = {"counts": news.counts, "vocab": news.vocab}
    return out


# ----------------------------------------------------------------------------------------------------- methods
def fit_spectral(
    X: sp.csr_matrix, seed: int, decomposition: str = "power", refine: int = 0, oversample: int = 10
) -> tuple[np.ndarray, float]:
    from trinity_lightning.topics import SpectralLDA

    tick = time.perf_counter()
    lda = SpectralLDA(
        K,
        alpha0=1.0,
        decomposition=decomposition,  # type: ignore[arg-type]
        oversample=oversample,
        refine_sweeps=refine,
        random_state=seed,
    ).fit(X)
    return lda.components_, time.perf_counter() - tick


def fit_gensim(X: sp.csr_matrix, seed: int) -> tuple[np.ndarray, float]:
    from gensim.matutils import Sparse2Corpus
    from gensim.models import LdaModel

    corpus = list(Sparse2Corpus(X.astype(np.int64), documents_columns=False))
    id2word = {i: str(i) for i in range(X.shape[1])}
    tick = time.perf_counter()
    model = LdaModel(corpus, num_topics=K, id2word=id2word, passes=3, random_state=seed, alpha="symmetric")
    return model.get_topics(), time.perf_counter() - tick


def fit_tomotopy(X: sp.csr_matrix, seed: int) -> tuple[np.ndarray, float]:
    import tomotopy as tp

    model = tp.LDAModel(k=K, alpha=1.0 / K, seed=seed)
    X = sp.csr_matrix(X)
    for d in range(X.shape[0]):
        ids, cnt = X.indices[X.indptr[d] : X.indptr[d + 1]], X.data[X.indptr[d] : X.indptr[d + 1]]
        words = np.repeat(ids, cnt.astype(np.int64)).astype(str).tolist()
        if words:
            model.add_doc(words)
    tick = time.perf_counter()
    model.train(200, workers=1)
    elapsed = time.perf_counter() - tick
    topics = np.zeros((K, X.shape[1]))
    cols = np.array([int(w) for w in model.used_vocabs])
    for t in range(K):
        topics[t, cols] = model.get_topic_word_dist(t)
    return topics / topics.sum(1, keepdims=True), elapsed


def fit_sklearn(X: sp.csr_matrix, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.decomposition import LatentDirichletAllocation

    tick = time.perf_counter()
    model = LatentDirichletAllocation(
        n_components=K, learning_method="online", max_iter=10, random_state=seed, n_jobs=1
    ).fit(X)
    comp = model.components_
    return comp / comp.sum(1, keepdims=True), time.perf_counter() - tick


METHODS = {
    "spectral": lambda X, s, a: fit_spectral(X, s, oversample=a.oversample),
    "spectral_als": lambda X, s, a: fit_spectral(X, s, "als", oversample=a.oversample),
    "spectral_online": lambda X, s, a: fit_spectral(X, s, "online", oversample=a.oversample),
    "refined": lambda X, s, a: fit_spectral(X, s, refine=a.refine_sweeps, oversample=a.oversample),
    "gensim": lambda X, s, a: fit_gensim(X, s),
    "tomotopy": lambda X, s, a: fit_tomotopy(X, s),
    "sklearn": lambda X, s, a: fit_sklearn(X, s),
}
OURS = ("spectral", "spectral_als", "spectral_online", "refined")


def evaluate(name: str, corpus: dict[str, Any], topics: np.ndarray, train: np.ndarray, test: np.ndarray) -> dict:
    from trinity_lightning.topics import coherence_npmi, coherence_umass, perplexity, recovery_l1, top_words

    X = corpus["counts"]
    out = {
        "npmi": float(coherence_npmi(topics, X).mean()),
        "umass": float(coherence_umass(topics, X).mean()),
        "perplexity": perplexity(topics, np.full(K, 1.0 / K), X[test], n_iter=50),
        "top_words": [[corpus["vocab"][w] for w in row] for row in top_words(topics, 10)],
    }
    if "true" in corpus:
        out["recovery_l1"] = recovery_l1(corpus["true"], topics)
    return out


# ------------------------------------------------------------------------------------------------- scale curve
def scale_point(n_docs: int, batch: int = 10_000) -> dict[str, float]:
    """One point of the scale curve, run in this (fresh) process."""
    from trinity_lightning.topics import SpectralLDA, sample_lda_counts

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(1000, 0.1), size=K)
    alpha = np.full(K, 1.0 / K)
    sampling = [0.0]

    def batches():
        for start in range(0, n_docs, batch):
            tick = time.perf_counter()
            r = np.random.default_rng([7, start])
            n = min(batch, n_docs - start)
            X = sample_lda_counts(r, r.dirichlet(alpha, size=n), topics, r.integers(50, 101, size=n))
            sampling[0] += time.perf_counter() - tick
            yield X

    next(batches())  # warm up imports; not timed
    sampling[0] = 0.0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tick = time.perf_counter()
    lda = SpectralLDA(K, alpha0=1.0, random_state=0).fit(batches)
    total = time.perf_counter() - tick
    from trinity_lightning.topics import recovery_l1

    return {
        "n_docs": n_docs,
        "fit_s": total - sampling[0],
        "sampling_s": sampling[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_fit_mb": base / 1024,
        "recovery_l1": recovery_l1(topics, lda.components_),
    }


def scale_curve(sizes: list[int]) -> list[dict[str, float]]:
    points = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--scale-point", str(n)], capture_output=True, text=True, check=True
        )
        point = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(point), flush=True)
        points.append(point)
    return points


def plot(points: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [p["n_docs"] for p in points]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].loglog(n, [p["fit_s"] for p in points], "o-", label="SpectralLDA (streaming)")
    ax[0].loglog(n, [points[0]["fit_s"] * x / n[0] for x in n], "k:", label="linear")
    ax[0].set(xlabel="documents", ylabel="fit time (s)", title="time")
    ax[0].legend()
    ax[1].semilogx(n, [p["peak_rss_mb"] for p in points], "o-", label="peak RSS of the process")
    ax[1].set(xlabel="documents", ylabel="MB", title="memory (streaming, 10k-doc batches)", ylim=(0, None))
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


# ---------------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for our methods")
    parser.add_argument("--anchor-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for the anchors")
    parser.add_argument("--corpora", nargs="+", default=["nyt", "synthetic", "news_articles"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--refine-sweeps", type=int, default=10)
    parser.add_argument(
        "--oversample", type=int, default=40, help="SpectralLDA oversample (whitening basis p = k + oversample)"
    )
    parser.add_argument(
        "--rerun",
        nargs="*",
        default=[],
        help="with --reuse: methods whose reused runs on --corpora are dropped and measured again",
    )
    parser.add_argument("--scale", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the runs of an interrupted run (the .partial.json) and do the rest"
    )
    parser.add_argument("--scale-point", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.scale_point:
        print(json.dumps(scale_point(args.scale_point)))
        return
    torch.set_num_threads(1)
    started = time.perf_counter()
    corpora = load_corpora(args.quick)
    runs: list[dict[str, Any]] = []
    partial = RESULTS_DIR / "spectral_lda.partial.json"
    final = RESULTS_DIR / "spectral_lda.json"
    if args.reuse and partial.is_file():
        runs = json.loads(partial.read_text())
    elif args.reuse and final.is_file():
        runs = json.loads(final.read_text())["details"]["runs"]
    runs = [r for r in runs if not (r["method"] in args.rerun and r["corpus"] in args.corpora)]
    done = {(r["corpus"], r["method"], r["seed"]) for r in runs}
    for cname in args.corpora:
        if cname not in corpora:
            continue
        corpus = corpora[cname]
        X = corpus["counts"]
        order = np.random.default_rng(0).permutation(X.shape[0])
        n_test = X.shape[0] // 10
        test, train = order[:n_test], np.sort(order[n_test:])
        for method in args.methods:
            seeds = args.seeds if method in OURS else args.anchor_seeds
            for seed in seeds:
                if (cname, method, seed) in done:
                    continue
                topics, seconds = METHODS[method](X[train], seed, args)
                load_1m = round(os.getloadavg()[0], 2)  # how busy the 2 shared cores were around this fit
                run = {"corpus": cname, "method": method, "seed": seed, "fit_s": seconds, "load_1m": load_1m}
                run.update(evaluate(cname, corpus, topics, train, test))
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "top_words"}), flush=True)
                partial.write_text(json.dumps(runs))
    points = scale_curve(args.scale) if args.scale and not args.quick else []
    if not points and args.reuse and final.is_file():  # a partial re-run keeps the measured scale curve
        points = json.loads(final.read_text())["details"].get("scale_curve") or []
    if points:
        plot(points)
    summarize(runs, points, args, time.perf_counter() - started, corpora)
    partial.unlink(missing_ok=True)


def _median(runs: list[dict], corpus: str, method: str, key: str) -> float | None:
    vals = [r[key] for r in runs if r["corpus"] == corpus and r["method"] == method and key in r]
    return float(statistics.median(vals)) if vals else None


def summarize(runs: list[dict], points: list[dict], args: argparse.Namespace, seconds: float, corpora: dict) -> None:
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for cname in {r["corpus"] for r in runs}:
        table[cname] = {}
        for method in {r["method"] for r in runs if r["corpus"] == cname}:
            table[cname][method] = {
                key: _median(runs, cname, method, key)
                for key in ("fit_s", "npmi", "umass", "perplexity", "recovery_l1")
            }
    claims = []

    def get(c: str, m: str, key: str) -> float | None:
        return table.get(c, {}).get(m, {}).get(key)

    seeds = f"ours: seeds {args.seeds}, oversample {args.oversample}, anchors: seeds {args.anchor_seeds}"
    if get("nyt", "spectral", "fit_s") and get("nyt", "gensim", "fit_s"):
        claims.append(
            claim(
                "spectral_lda_fit_time_vs_gensim_nyt",
                f"fit time on NYT (7,603 training docs × 3,012 words, k = 20), SpectralLDA vs gensim LdaModel passes=3, median ({seeds})",
                ours=get("nyt", "spectral", "fit_s"),
                anchor=get("nyt", "gensim", "fit_s"),
                unit="s",
                better="lower",
                target=10.0,
            )
        )
        claims.append(
            claim(
                "spectral_lda_npmi_vs_gensim_nyt",
                f"NPMI coherence (top-10 words, documents as contexts) on NYT, SpectralLDA / gensim, median ({seeds})",
                ours=get("nyt", "spectral", "npmi"),
                anchor=get("nyt", "gensim", "npmi"),
                unit="NPMI",
                better="higher",
                target=0.85,
            )
        )
    if get("nyt", "refined", "npmi") and get("nyt", "tomotopy", "npmi"):
        claims.append(
            claim(
                "refined_lda_npmi_vs_tomotopy_nyt",
                f"NPMI on NYT, spectral + {args.refine_sweeps} variational-EM sweeps vs tomotopy collapsed Gibbs 200 iterations, median ({seeds})",
                ours=get("nyt", "refined", "npmi"),
                anchor=get("nyt", "tomotopy", "npmi"),
                unit="NPMI",
                better="higher",
                target=0.95,
            )
        )
        claims.append(
            claim(
                "refined_lda_time_vs_tomotopy_nyt",
                f"fit time on NYT, spectral + {args.refine_sweeps} VEM sweeps vs tomotopy 200 iterations (workers=1), median ({seeds})",
                ours=get("nyt", "refined", "fit_s"),
                anchor=get("nyt", "tomotopy", "fit_s"),
                unit="s",
                better="lower",
                target=2.0,
            )
        )
    if get("synthetic", "spectral", "recovery_l1") and get("synthetic", "tomotopy", "recovery_l1"):
        claims.append(
            claim(
                "spectral_lda_recovery_vs_tomotopy_synthetic",
                f"topic recovery error (Hungarian-matched mean L1) on synthetic LDA (V = 1,000, k = 20, 18,000 training docs), tomotopy's error / ours, median ({seeds})",
                ours=get("synthetic", "spectral", "recovery_l1"),
                anchor=get("synthetic", "tomotopy", "recovery_l1"),
                unit="L1",
                better="lower",
                target=2.0,
            )
        )
    import gensim
    import sklearn
    import tomotopy

    def loads(c: str, methods: tuple[str, ...]) -> list[float]:
        return [r["load_1m"] for r in runs if r["corpus"] == c and r["method"] in methods and "load_1m" in r]

    ours_load, anchor_load = loads("nyt", ("spectral", "refined")), loads("nyt", ("gensim", "tomotopy"))
    timing_note = None
    if (
        ours_load
        and anchor_load
        and max(max(ours_load), max(anchor_load)) > 2 * max(1.0, min(min(ours_load), min(anchor_load)))
    ):
        timing_note = (
            f"NYT time claims compare fits run at different machine loads (1-min load average: ours "
            f"{min(ours_load)}-{max(ours_load)}, anchors {min(anchor_load)}-{max(anchor_load)} on 2 cores); re-time "
            "on an idle machine with the --rerun command in this script's docstring before reading them"
        )
    details = {
        "timing_note": timing_note,
        "table_median": table,
        "runs": runs,
        "scale_curve": points,
        "scale_plot": str(PLOT.relative_to(ROOT)) if points else None,
        "corpora": {c: list(v["counts"].shape) for c, v in corpora.items()},
        "versions": {"gensim": gensim.__version__, "tomotopy": tomotopy.__version__, "sklearn": sklearn.__version__},
        "args": {k: v for k, v in vars(args).items() if k != "scale_point"},
        "minutes": seconds / 60,
    }
    path = write_results("spectral_lda", claims, details=details)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
