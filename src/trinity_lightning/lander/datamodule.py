"""Flight-data collection in the simulator and the DataModule of residual-force regression."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from trinity_lightning.lander.controllers import TrackingController
from trinity_lightning.lander.simulator import Quadrotor, make_simulator, random_waypoints, time_steps


def collect_flights(
    sim: Quadrotor,
    flights: int = 16,
    seconds: float = 30.0,
    max_height: float = 1.0,
    max_speed: float = 1.0,
    thrust_noise: float = 0.15,
    every: int = 2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fly ``flights`` drones along random references under the nominal controller; return features and residuals.

    The thrust is perturbed by a slowly varying multiplicative noise (std ``thrust_noise``, time constant
    0.3 s) so that the control varies independently of the state. Returns ``features [N, F]`` (physical units)
    and the *measured* residual ``[N, dim]`` (units of ``m g``, with the simulator's label noise), one sample
    every ``every`` steps.

    Example:
        >>> from trinity_lightning.lander.simulator import VerticalQuadrotor
        >>> x, y = collect_flights(VerticalQuadrotor(), flights=2, seconds=1.0)
        >>> x.shape, y.shape
        (torch.Size([100, 3]), torch.Size([100, 1]))
    """
    if flights < 1 or seconds <= 0 or every < 1:
        raise ValueError(
            f"collect_flights: expected flights >= 1, seconds > 0, every >= 1; got {flights}, {seconds}, {every}"
        )
    gen = torch.Generator().manual_seed(seed)
    dt = sim.params.dt
    segments = max(2, int(seconds / 0.8) + 2)
    reference = random_waypoints(flights, sim.dim, segments, max_height, max_speed, gen)
    controller = TrackingController(sim)
    p0, _, _ = reference(0.0)
    state = sim.initial_state(p0.clone().double())
    reference.waypoints = reference.waypoints.double()
    perturb = torch.zeros(flights, sim.control_dim, dtype=torch.float64)
    decay = float(torch.exp(torch.tensor(-dt / 0.3)))
    drive = thrust_noise * (1 - decay**2) ** 0.5
    xs, ys = [], []
    for i in range(time_steps(seconds, dt)):
        p_d, v_d, a_d = reference(i * dt)
        control = controller(state, p_d, v_d, a_d)
        perturb = decay * perturb + drive * torch.randn(perturb.shape, generator=gen, dtype=torch.float64)
        control = control * (1 + perturb)
        features = sim.features(state, control)
        state, measured = sim.step(state, control, gen)
        if i % every == 0:
            xs.append(features)
            ys.append(measured)
    return torch.cat(xs).float(), torch.cat(ys).float()


class LandingDataModule(pl.LightningDataModule):
    """Simulated flight data for :class:`~trinity_lightning.lander.module.ResidualDynamicsModule`.

    Collected once in ``setup`` by :func:`collect_flights` (seeded), split at random into train / validation.

    Args:
        system: ``"vertical"`` (features ``z, vz, thrust``) or ``"planar"`` (``z, vy, vz, theta, T1, T2``).
        flights: drones flown in parallel.
        seconds: flight time of each.
        max_height: reference heights in ``[0, max_height]`` (m).
        max_speed: peak reference speed (m/s); states outside these are "outside the training range".
        thrust_noise: std of the multiplicative thrust perturbation.
        every: keep one sample every ``every`` steps.
        val_fraction: held-out share.
        batch_size: batch size.
        seed: seed of the flights and the split.

    Example:
        >>> dm = LandingDataModule(flights=2, seconds=1.0)
        >>> dm.setup("fit")
        >>> len(dm.train_set) + len(dm.val_set), dm.feature_scale
        (100, (0.25, 1.0, 9.81))
    """

    def __init__(
        self,
        system: str = "vertical",
        flights: int = 16,
        seconds: float = 30.0,
        max_height: float = 1.0,
        max_speed: float = 1.0,
        thrust_noise: float = 0.15,
        every: int = 2,
        val_fraction: float = 0.1,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a share in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.sim = make_simulator(system)
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None

    @property
    def feature_scale(self) -> tuple[float, ...]:
        """Natural scale of each feature (what the residual model divides by)."""
        return self.sim.feature_scale

    @property
    def _hp(self) -> Any:
        return self.hparams

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        h: Any = self.hparams
        x, y = collect_flights(
            self.sim, h.flights, h.seconds, h.max_height, h.max_speed, h.thrust_noise, h.every, h.seed
        )
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(h.seed))
        n_val = round(h.val_fraction * len(x))
        val, train = order[:n_val], order[n_val:]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])

    def feature_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature minimum and maximum of the training data."""
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        x = self.train_set.tensors[0]
        return x.min(dim=0).values, x.max(dim=0).values

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        gen = torch.Generator().manual_seed(self._hp.seed)
        return DataLoader(self.train_set, batch_size=self._hp.batch_size, shuffle=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('fit') first"
        return DataLoader(self.val_set, batch_size=4 * self._hp.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self._hp.seed}
