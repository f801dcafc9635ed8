"""Neural Lander in simulation: six controllers, 20 landings with random starts and noise x 3 seeds, one run.

    python benchmarks/neural_lander.py                      # 3 seeds, about 2 minutes on a busy 2-core box
    python benchmarks/neural_lander.py --seeds 0 --epochs 2 --flights 4 --landings 4 --scarce-flights 0  # smoke

Extra (details["scarce_data"], no claim): the MLPs retrained on 2 flights (1/8 of the data) for 60 epochs, where an
unconstrained network has room to overfit; same extrapolation states and landings.

Per seed: collect 16 x 30 s of simulated flight (vertical 1 kg quadrotor, heights 0-1.3 m, speeds up to 1 m/s,
ground effect + drag + noise, waypoint heights denser near the ground; ``LandingDataModule``), train the same ReLU MLP (3 x 32 hidden) with and without
spectral normalization (per-layer bound 1.35, 10 epochs, cosine learning rate, same data and seed), fit the two-parameter analytic
model by least squares on the same data, then fly the same 20 landings (starts 0.8-1.2 m, same noise) with

* nominal: the tracking controller without a residual model,
* integral: nominal + integral action (gain chosen from {2, 6, 12} on separate tuning landings, seed 100),
* analytic: residual ``a T (R/4z)^2 + b v_z`` fitted by least squares,
* mlp: the MLP without spectral normalization, ``sn``: with it (both with the fixed-point iteration),
* oracle: the simulator's true residual.

The landing error is the mean ``|z - z_d|`` while the reference descends through its last 0.5 m (normal descents:
peak 0.5 m/s; fast descents: 1.5 m/s, beyond the training speeds). The extrapolation error is the residual RMSE
against the noise-free truth on 20,000 random states outside the training heights or speeds (z up to 2.5 m,
|v_z| up to 2.5 m/s). Simulator metres are not the paper's real-drone metres: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import claim, write_results

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "neural_lander.png"
CONTROLLERS = ("nominal", "integral", "analytic", "mlp", "sn", "oracle")


def train(dm: Any, spectral_norm: bool, args: argparse.Namespace, seed: int, epochs: int | None = None) -> Any:
    import lightning.pytorch as pl

    from trinity_lightning.lander import ResidualDynamicsModule

    pl.seed_everything(seed, verbose=False)
    module = ResidualDynamicsModule(
        hidden=(32, 32, 32), spectral_norm=spectral_norm, layer_bound=args.layer_bound, lr=3e-3
    )
    trainer = pl.Trainer(
        max_epochs=epochs or args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, dm)
    return module.eval()


def extrapolation_states(dm: Any, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random states, the mask of those outside the training heights or speeds, and of those too high only."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=gen) * 2.5
    vz = (torch.rand(n, generator=gen) * 2 - 1) * 2.5
    thrust = (0.5 + torch.rand(n, generator=gen)) * dm.sim.params.weight
    x = torch.stack([z, vz, thrust], dim=1)
    low, high = dm.feature_range()
    too_fast = (vz < low[1]) | (vz > high[1])
    return x, (z > high[0]) | too_fast, (z > high[0]) & ~too_fast


def rmse(model: Any, x: torch.Tensor, truth: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x) - truth).pow(2).mean().sqrt())


def choose_integral_gain(sim: Any, args: argparse.Namespace) -> float:
    from trinity_lightning.lander import TrackingController, compare_controllers

    candidates = {f"{k:g}": TrackingController(sim, k_i=k) for k in (2.0, 6.0, 12.0)}
    out = compare_controllers(sim, candidates, landings=args.landings, speed=args.speed, seed=100)
    best = min(out, key=lambda name: float(out[name]["error"].mean()))
    return float(best)


def run_seed(seed: int, args: argparse.Namespace, k_i: float) -> dict[str, Any]:
    from trinity_lightning.lander import (
        AnalyticGroundEffect,
        LandingDataModule,
        OracleResidual,
        TrackingController,
        compare_controllers,
        empirical_lipschitz,
    )

    started = time.perf_counter()
    dm = LandingDataModule(
        flights=args.flights, seconds=args.seconds, max_height=1.3, max_speed=1.0, batch_size=256, seed=seed
    )
    dm.setup("fit")
    sim = dm.sim
    x_train, y_train = dm.train_set.tensors
    models = {"mlp": train(dm, False, args, seed), "sn": train(dm, True, args, seed)}
    analytic = AnalyticGroundEffect(sim).fit(x_train, y_train)

    def controllers() -> dict[str, TrackingController]:
        return {
            "nominal": TrackingController(sim),
            "integral": TrackingController(sim, k_i=k_i),
            "analytic": TrackingController(sim, residual=analytic),
            "mlp": TrackingController(sim, residual=models["mlp"]),
            "sn": TrackingController(sim, residual=models["sn"]),
            "oracle": TrackingController(sim, residual=OracleResidual(sim)),
        }

    flights: dict[str, Any] = {}
    errors: dict[str, dict[str, float]] = {}
    iterations: dict[str, dict[str, float]] = {}
    out_of_range: dict[str, int] = {}
    for label, speed in (("normal", args.speed), ("fast", args.fast_speed)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            out = compare_controllers(sim, controllers(), landings=args.landings, speed=speed, seed=seed)
        out_of_range[label] = sum("training range" in str(w.message) for w in caught)
        errors[label] = {name: float(r["error"].mean()) for name, r in out.items()}
        iterations[label] = {name: float(r["mean_iterations"]) for name, r in out.items()}
        if label == "normal":
            flights = out

    # residual-model errors against the noise-free truth, inside and outside the training range
    x_val = dm.val_set.tensors[0]
    x_ext, outside, too_high = extrapolation_states(dm, 20000, seed + 1000)
    too_fast = outside & ~too_high
    truth_val, truth_ext = sim.residual_from_features(x_val), sim.residual_from_features(x_ext)
    model_error = {
        name: {
            "in_range": rmse(model, x_val, truth_val),
            "outside": rmse(model, x_ext[outside], truth_ext[outside]),
            "outside_heights_only": rmse(model, x_ext[too_high], truth_ext[too_high]),
            "outside_speeds": rmse(model, x_ext[too_fast], truth_ext[too_fast]),
        }
        for name, model in [*models.items(), ("analytic", analytic)]
    }
    # Lipschitz constants in scaled features: certified (exact layer norms) vs empirical (gradient ascent) on the
    # training box
    low, high = dm.feature_range()
    scale = models["sn"].feature_scale
    lipschitz = {}
    for name, module in models.items():
        certified = module.lipschitz_bound()
        empirical = empirical_lipschitz(module.net, low / scale, high / scale, starts=128, steps=150, seed=seed)
        lipschitz[name] = {"certified": certified, "empirical": empirical, "ratio": certified / empirical}
    scarce = scarce_data(seed, args, sim) if args.scarce_flights > 0 else None
    return {
        "seed": seed,
        "scarce": scarce,
        "errors": errors,
        "iterations": iterations,
        "model_error": model_error,
        "lipschitz": lipschitz,
        "out_of_range_warnings": out_of_range,
        "samples": len(x_train),
        "analytic_coef": [float(c) for c in analytic.coef],
        "seconds": time.perf_counter() - started,
        "flights": flights,
    }


def scarce_data(seed: int, args: argparse.Namespace, sim: Any) -> dict[str, Any]:
    """The same comparison with little data and long training (where an unconstrained MLP may overfit)."""
    from trinity_lightning.lander import LandingDataModule, TrackingController, compare_controllers

    dm = LandingDataModule(
        flights=args.scarce_flights, seconds=args.seconds, max_height=1.3, max_speed=1.0, batch_size=256, seed=seed
    )
    dm.setup("fit")
    models = {
        "mlp": train(dm, False, args, seed, args.scarce_epochs),
        "sn": train(dm, True, args, seed, args.scarce_epochs),
    }
    x_ext, outside, _ = extrapolation_states(dm, 20000, seed + 1000)
    truth = sim.residual_from_features(x_ext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = compare_controllers(
            sim,
            {name: TrackingController(sim, residual=m) for name, m in models.items()},
            landings=args.landings,
            speed=args.speed,
            seed=seed,
        )
    return {
        "samples": len(dm.train_set),
        "epochs": args.scarce_epochs,
        "outside": {name: rmse(m, x_ext[outside], truth[outside]) for name, m in models.items()},
        "in_range": {name: rmse(m, x_ext[~outside], truth[~outside]) for name, m in models.items()},
        "certified": {name: m.lipschitz_bound() for name, m in models.items()},
        "landing_error_m": {name: float(r["error"].mean()) for name, r in out.items()},
    }


def mean(values: list[float]) -> float:
    return float(statistics.fmean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--landings", type=int, default=20)
    parser.add_argument("--flights", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--layer-bound", type=float, default=1.35)
    parser.add_argument("--speed", type=float, default=0.5)
    parser.add_argument("--fast-speed", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scarce-flights", type=int, default=2, help="extra: little data (0: skip)")
    parser.add_argument("--scarce-epochs", type=int, default=60, help="extra: epochs on the little data")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results or the plot")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    started = time.perf_counter()

    from trinity_lightning.lander import VerticalQuadrotor, plot_landings

    k_i = choose_integral_gain(VerticalQuadrotor(), args)
    runs = []
    for seed in args.seeds:
        run = run_seed(seed, args, k_i)
        runs.append(run)
        print(f"seed {seed}: {run['seconds']:.0f} s; normal {run['errors']['normal']}; fast {run['errors']['fast']}")

    def avg(section: str, key: str, name: str) -> float:
        return mean([r[section][key][name] for r in runs])

    err = {name: avg("errors", "normal", name) for name in CONTROLLERS}
    fast = {name: avg("errors", "fast", name) for name in CONTROLLERS}
    ext = {name: mean([r["model_error"][name]["outside"] for r in runs]) for name in ("mlp", "sn", "analytic")}
    inside = {name: mean([r["model_error"][name]["in_range"] for r in runs]) for name in ("mlp", "sn", "analytic")}
    iters = mean([r["iterations"]["normal"]["sn"] for r in runs])
    iters_fast = mean([r["iterations"]["fast"]["sn"] for r in runs])
    lip_ratio = mean([r["lipschitz"]["sn"]["ratio"] for r in runs])
    n = f"{args.landings} landings x {len(args.seeds)} seeds"
    claims = [
        claim(
            "landing_error_vs_nominal",
            f"mean |z error| over the last 0.5 m of descent (peak {args.speed} m/s), nominal / learned with SN, {n}",
            ours=err["sn"],
            anchor=err["nominal"],
            unit="m",
            better="lower",
            target=5.0,
        ),
        claim(
            "sn_landing_error_vs_oracle",
            f"landing error, oracle (true residual) / learned with SN, {n}",
            ours=err["sn"],
            anchor=err["oracle"],
            unit="m",
            better="lower",
            target=0.67,
        ),
        claim(
            "sn_extrapolation_gain",
            "residual RMSE (units of m g) vs the noise-free truth on 20,000 states outside the training heights or "
            f"speeds, MLP without SN / with SN, {len(args.seeds)} seeds",
            ours=ext["sn"],
            anchor=ext["mlp"],
            unit="m g",
            better="lower",
            target=2.0,
        ),
        claim(
            "learned_vs_integral_fast_descent",
            f"landing error on fast descents (peak {args.fast_speed} m/s, beyond the training speeds), integral "
            f"action (k_i={k_i:g}) / learned with SN, {n}",
            ours=fast["sn"],
            anchor=fast["integral"],
            unit="m",
            better="lower",
            target=2.0,
        ),
        claim(
            "sn_vs_analytic_landing",
            f"landing error, two-parameter analytic ground-effect model (least squares) / learned with SN, {n}",
            ours=err["sn"],
            anchor=err["analytic"],
            unit="m",
            better="lower",
        ),
    ]
    details: dict[str, Any] = {
        "landing_error_m": err,
        "fast_descent_error_m": fast,
        "residual_rmse_outside_training_range": ext,
        "residual_rmse_in_range": inside,
        "residual_rmse_outside_heights_only": {
            k: mean([r["model_error"][k]["outside_heights_only"] for r in runs]) for k in ("mlp", "sn", "analytic")
        },
        "residual_rmse_outside_speeds": {
            k: mean([r["model_error"][k]["outside_speeds"] for r in runs]) for k in ("mlp", "sn", "analytic")
        },
        "analytic_model_error": {"in_range": inside["analytic"], "outside": ext["analytic"]},
        "mean_fixed_point_iterations_sn": {"normal": iters, "fast": iters_fast},
        "mean_fixed_point_iterations": {k: avg("iterations", "normal", k) for k in ("analytic", "mlp", "sn", "oracle")},
        "lipschitz_certified_over_empirical_sn": lip_ratio,
        "lipschitz": {
            name: {k: mean([r["lipschitz"][name][k] for r in runs]) for k in ("certified", "empirical", "ratio")}
            for name in ("mlp", "sn")
        },
        "integral_gain": k_i,
        "scarce_data": None
        if args.scarce_flights <= 0
        else {
            key: {name: mean([r["scarce"][key][name] for r in runs]) for name in ("mlp", "sn")}
            for key in ("outside", "in_range", "certified", "landing_error_m")
        }
        | {"samples": runs[0]["scarce"]["samples"], "epochs": args.scarce_epochs, "flights": args.scarce_flights},
        "per_seed": [{k: v for k, v in r.items() if k != "flights"} for r in runs],
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
        "plot": "docs/img/neural_lander.png",
    }
    for c in claims:
        print(f"{c['id']}: ours {c['ours']:.4g} anchor {c['anchor']:.4g} ratio {c['ratio']:.2f} met {c.get('met')}")
    print(f"iterations {iters:.2f} (fast {iters_fast:.2f}); certified/empirical Lipschitz {lip_ratio:.2f}")
    if args.no_write:
        return 0
    plot_landings(
        {name: runs[0]["flights"][name] for name in CONTROLLERS},
        PLOT,
        title=f"{args.landings} landings (seed {args.seeds[0]}), vertical 1 kg quadrotor, peak {args.speed} m/s",
    )
    path = write_results("neural_lander", claims, details=details)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
