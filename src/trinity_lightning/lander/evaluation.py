"""Fly a set of landings with several controllers, compare their errors, plot them; the ``FlyLandings`` callback."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from trinity_lightning.lander.controllers import OracleResidual, TrackingController, fly, landing_error
from trinity_lightning.lander.simulator import Quadrotor, SmoothReference


def landing_starts(sim: Quadrotor, landings: int, seed: int, low: float = 0.8, high: float = 1.2) -> torch.Tensor:
    """Random start positions ``[landings, dim]``: heights in ``[low, high]`` m, lateral offsets in ``[-0.5, 0.5]``."""
    gen = torch.Generator().manual_seed(seed)
    z0 = low + (high - low) * torch.rand(landings, 1, generator=gen, dtype=torch.float64)
    if sim.dim == 1:
        return z0
    return torch.cat([torch.rand(landings, sim.dim - 1, generator=gen, dtype=torch.float64) - 0.5, z0], dim=1)


def compare_controllers(
    sim: Quadrotor,
    controllers: Mapping[str, TrackingController],
    landings: int = 20,
    speed: float = 0.5,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Fly the same ``landings`` (random starts, same noise) with each controller.

    Returns, per controller, the flight (see :func:`~trinity_lightning.lander.controllers.fly`) plus ``error``
    (per-landing mean ``|z error|`` over the last 0.5 m of descent) and ``mean_iterations``.

    Example:
        >>> from trinity_lightning.lander.simulator import VerticalQuadrotor
        >>> sim = VerticalQuadrotor()
        >>> out = compare_controllers(sim, {"nominal": TrackingController(sim)}, landings=2, speed=1.0)
        >>> out["nominal"]["error"].shape
        torch.Size([2])
    """
    reference = SmoothReference.landing(landing_starts(sim, landings, seed), speed)
    results: dict[str, dict[str, Any]] = {}
    for name, controller in controllers.items():
        flight = fly(sim, controller, reference, seed=seed + 1)
        iters = flight["iterations"]
        flight["error"] = landing_error(flight)
        flight["mean_iterations"] = sum(iters) / len(iters) if iters else 0.0
        results[name] = flight
    return results


def plot_landings(results: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Height (first landing) and mean ``|z error|`` (all landings) against time to touchdown, per controller."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    reference_drawn = False
    for name, flight in results.items():
        t = flight["t"].unsqueeze(1) - flight["end"].unsqueeze(0)  # [T, B]: 0 = reference touchdown
        z = flight["position"][..., -1]
        if not reference_drawn:
            top.plot(t[:, 0], flight["reference"][:, 0, -1], "k--", lw=1, label="reference")
            reference_drawn = True
        top.plot(t[:, 0], z[:, 0], lw=1.2, label=f"{name} ({float(flight['error'].mean()):.4f} m)")
        err = (z - flight["reference"][..., -1]).abs()
        # average over landings on a common time-to-touchdown grid
        grid = torch.linspace(-2.0, 0.5, 126)
        curves = []
        for b in range(err.shape[1]):
            idx = torch.searchsorted(t[:, b].contiguous(), grid).clamp(0, len(t) - 1)
            curves.append(err[idx, b])
        bottom.plot(grid, torch.stack(curves).mean(0), lw=1.2, label=name)
    top.set_ylabel("height z (m)")
    top.set_ylim(-0.02, 0.6)
    top.set_xlim(-2.0, 0.5)
    top.legend(fontsize=8, title="mean |z error|, last 0.5 m", title_fontsize=8)
    bottom.set_ylabel("mean |z - z_d| (m)")
    bottom.set_xlabel("time to reference touchdown (s)")
    bottom.set_yscale("log")
    bottom.legend(fontsize=8)
    if title:
        top.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class FlyLandings(Callback):
    """After ``fit``: fly landings with the nominal, integral, learned and oracle controllers; log and plot them.

    The simulator is the DataModule's ``sim`` (as in :class:`~trinity_lightning.lander.datamodule.LandingDataModule`),
    the learned residual the LightningModule (a :class:`~trinity_lightning.lander.module.ResidualDynamicsModule`).
    Results are in :attr:`errors` (mean ``|z error|`` over the last 0.5 m of descent, per controller) and
    :attr:`iterations` (mean fixed-point iterations), printed, and plotted to ``plot``.

    Args:
        landings: number of landings (random starts, seeded).
        speed: peak descent speed (m/s).
        seed: seed of the starts and the noise.
        integral_gain: ``k_i`` of the integral baseline.
        plot: PNG to write (``None``: no plot).

    Example:
        >>> FlyLandings(landings=20, plot=None).landings
        20
    """

    def __init__(
        self,
        landings: int = 20,
        speed: float = 0.5,
        seed: int = 0,
        integral_gain: float = 6.0,
        plot: str | None = "docs/img/neural_lander.png",
    ) -> None:
        if landings < 1:
            raise ValueError(f"landings: expected >= 1, got {landings}")
        if speed <= 0:
            raise ValueError(f"speed: expected a descent speed > 0, got {speed}")
        self.landings, self.speed, self.seed = landings, speed, seed
        self.integral_gain, self.plot = integral_gain, plot
        self.errors: dict[str, float] = {}
        self.iterations: dict[str, float] = {}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sim = getattr(getattr(trainer, "datamodule", None), "sim", None)
        if not isinstance(sim, Quadrotor):
            raise ValueError("FlyLandings: the DataModule has no simulator `sim` (use LandingDataModule)")
        pl_module.eval()
        controllers = {
            "nominal": TrackingController(sim),
            "integral": TrackingController(sim, k_i=self.integral_gain),
            "learned": TrackingController(sim, residual=pl_module),
            "oracle": TrackingController(sim, residual=OracleResidual(sim)),
        }
        results = compare_controllers(sim, controllers, self.landings, self.speed, self.seed)
        self.errors = {name: float(r["error"].mean()) for name, r in results.items()}
        self.iterations = {name: float(r["mean_iterations"]) for name, r in results.items()}
        lines = [
            f"  {name:<9} {err:.4f} m   {self.iterations[name]:.2f} iterations" for name, err in self.errors.items()
        ]
        rank_zero_info(f"{self.landings} landings, mean |z error| over the last 0.5 m of descent:\n" + "\n".join(lines))
        if self.plot and trainer.is_global_zero:
            plot_landings(results, self.plot, title=f"{self.landings} landings ({sim.name}), peak {self.speed} m/s")
            rank_zero_info(f"plot: {self.plot}")
