"""Tracking controllers for the simulated quadrotor: nominal, integral, and with a residual-force model.

The controller of Neural Lander (Shi et al., ICRA 2019): with tracking error ``p~ = p - p_d``, composite error
``s = v~ + Lambda p~`` and reference velocity ``v_r = v_d - Lambda p~``, the desired force is
``f_d = m dv_r/dt - m K_v s + m g e_z``; the control solves ``R f_u(u) = f_d - f_a(zeta, u)``. As the learned
residual depends on ``u``, it is found by the fixed-point iteration ``u_k = f_u^-1(f_d - f_a(zeta, u_{k-1}))``
warm-started at the previous control; it contracts when the residual's Lipschitz constant in ``u`` is below 1,
which spectral normalization bounds. A step that does not converge raises :class:`FixedPointError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from trinity_lightning.lander.simulator import Quadrotor, SmoothReference, time_steps

Residual = Callable[[torch.Tensor], torch.Tensor]


class FixedPointError(RuntimeError):
    """The fixed-point iteration on the control did not converge (carries ``iterations`` and ``residual``)."""

    def __init__(self, iterations: int, residual: float, tol: float) -> None:
        super().__init__(
            f"fixed-point iteration on the control did not converge: {iterations} iterations, residual "
            f"{residual:.3g} (in units of m g) > tol={tol:g}. The residual model's Lipschitz constant in the "
            "control may exceed 1: train it with spectral normalization (a smaller layer_bound), or raise max_iter"
        )
        self.iterations = iterations
        self.residual = residual


class OracleResidual:
    """The true, noise-free residual of a simulator (the best a learned model can do).

    Example:
        >>> from trinity_lightning.lander.simulator import VerticalQuadrotor
        >>> oracle = OracleResidual(VerticalQuadrotor())
        >>> round(float(oracle(torch.tensor([[0.0, 0.0, 9.81]]))[0, 0]), 2)
        0.4
    """

    def __init__(self, sim: Quadrotor) -> None:
        self.sim = sim

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.sim.residual_from_features(features)


class AnalyticGroundEffect:
    """Two-parameter analytic residual, fitted by least squares: ``a T (R / 4 z)^2 + b v_z`` (vertical only).

    The textbook form a modeller would write without knowing where the rotors sit or how the law is clipped:
    ground effect ``~ T / z^2`` with the drone's height ``z`` (clipped at ``z_min``) and linear drag.

    Example:
        >>> from trinity_lightning.lander.simulator import VerticalQuadrotor
        >>> sim = VerticalQuadrotor()
        >>> x = torch.rand(500, 3) * torch.tensor([1.0, 2.0, 12.0]) - torch.tensor([0.0, 1.0, 0.0])
        >>> model = AnalyticGroundEffect(sim).fit(x, sim.residual_from_features(x))
        >>> model(x).shape
        torch.Size([500, 1])
    """

    def __init__(self, sim: Quadrotor, z_min: float = 0.05) -> None:
        if sim.dim != 1:
            raise ValueError(f"AnalyticGroundEffect: vertical simulator only, got {sim.name!r}")
        self.sim, self.z_min = sim, z_min
        self.coef = torch.zeros(2)

    def _design(self, features: torch.Tensor) -> torch.Tensor:
        p = self.sim.params
        z = features[:, 0].clamp_min(self.z_min)
        ground = features[:, 2] / p.weight * (p.rotor_radius / (4 * z)) ** 2
        return torch.stack([ground, features[:, 1]], dim=1).double()

    def fit(self, features: torch.Tensor, residual: torch.Tensor) -> AnalyticGroundEffect:
        """Least squares on ``features`` ``[N, 3]`` and measured residuals ``[N, 1]`` (units of m g)."""
        self.coef = torch.linalg.lstsq(self._design(features), residual[:, :1].double()).solution[:, 0]
        return self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (self._design(features) @ self.coef).to(features.dtype).unsqueeze(1)


class TrackingController:
    """Nonlinear tracking controller; optional integral action and residual-force model.

    Args:
        sim: the simulator (its nominal model: mass, thrust allocation).
        lam: ``Lambda`` (1/s), the composite-error gain.
        k_v: ``K_v`` (1/s), the velocity-error gain (per unit mass).
        k_i: integral gain on the position error (1/s^3, per unit mass; 0: none).
        residual: a residual model mapping the simulator's features to force in units of ``m g``
            (a :class:`~trinity_lightning.lander.module.ResidualDynamicsModule`, :class:`OracleResidual`, ...).
        tol: fixed-point tolerance on the control change (units of ``m g``).
        max_iter: fixed-point iterations before :class:`FixedPointError`.
        feature_range: ``(low, high)`` of the residual model's training features: a state outside it warns
            (once per :meth:`reset`) with the state. ``None``: the model's ``feature_low/high`` when it has them.

    Example:
        >>> from trinity_lightning.lander.simulator import VerticalQuadrotor
        >>> sim = VerticalQuadrotor()
        >>> ctrl = TrackingController(sim, residual=OracleResidual(sim))
        >>> state = sim.initial_state(torch.tensor([[0.05]]))
        >>> p_d, v_d, a_d = torch.full((1, 1), 0.05), torch.zeros(1, 1), torch.zeros(1, 1)
        >>> u = ctrl(state, p_d, v_d, a_d)  # cold start in ground effect: contraction ~0.3 per iteration
        >>> ctrl.last_iterations, round(float(u), 2)  # hovering takes 15% less thrust than m g = 9.81 N
        (6, 8.33)
        >>> _ = ctrl(state, p_d, v_d, a_d)  # warm-started at the previous control
        >>> ctrl.last_iterations
        1
    """

    def __init__(
        self,
        sim: Quadrotor,
        lam: float = 3.0,
        k_v: float = 4.0,
        k_i: float = 0.0,
        residual: Residual | None = None,
        tol: float = 1e-4,
        max_iter: int = 20,
        feature_range: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter: expected >= 1, got {max_iter}")
        if tol <= 0:
            raise ValueError(f"tol: expected > 0, got {tol}")
        self.sim, self.lam, self.k_v, self.k_i = sim, lam, k_v, k_i
        self.residual, self.tol, self.max_iter = residual, tol, max_iter
        if feature_range is None and residual is not None and hasattr(residual, "feature_low"):
            feature_range = (residual.feature_low, residual.feature_high)  # type: ignore[attr-defined]
        self.feature_range = feature_range
        self.reset()

    def reset(self) -> None:
        """Forget the integral, the warm start and the statistics (before a new flight)."""
        self.integral: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None
        self.iterations: list[int] = []
        self.last_iterations = 0
        self.warned = False

    def desired_force(
        self, state: torch.Tensor, p_d: torch.Tensor, v_d: torch.Tensor, a_d: torch.Tensor
    ) -> torch.Tensor:
        """``f_d = m dv_r/dt - m K_v s + m g e_z (- m K_i int p~)`` in newtons, ``[B, dim]``."""
        p = self.sim.params
        p_err = self.sim.position(state) - p_d
        v_err = self.sim.velocity(state) - v_d
        s = v_err + self.lam * p_err
        accel_r = a_d - self.lam * v_err
        force = p.mass * (accel_r - self.k_v * s)
        force[:, -1] += p.weight
        if self.k_i > 0:
            if self.integral is None:
                self.integral = torch.zeros_like(p_err)
            self.integral = (self.integral + p.dt * p_err).clamp(-1.0, 1.0)
            force = force - p.mass * self.k_i * self.integral
        return force

    def _check_range(self, features: torch.Tensor) -> None:
        if self.warned or self.feature_range is None:
            return
        low, high = self.feature_range
        outside = (features < low) | (features > high)
        if bool(outside.any()):
            row = int(outside.any(dim=1).nonzero()[0])
            names = self.sim.feature_names
            state = ", ".join(f"{n}={float(v):.3g}" for n, v in zip(names, features[row]))
            bad = [n for n, o in zip(names, outside[row]) if o]
            warnings.warn(
                f"state outside the residual model's training range ({', '.join(bad)}): {state}; "
                f"range {[round(float(v), 3) for v in low]} .. {[round(float(v), 3) for v in high]}",
                RuntimeWarning,
                stacklevel=3,
            )
            self.warned = True

    @torch.no_grad()
    def __call__(self, state: torch.Tensor, p_d: torch.Tensor, v_d: torch.Tensor, a_d: torch.Tensor) -> torch.Tensor:
        """The control ``[B, control_dim]`` for the current state and reference."""
        force = self.desired_force(state, p_d, v_d, a_d)
        if self.residual is None:
            self.last_iterations = 0
            return self.sim.allocate(state, force)
        weight = self.sim.params.weight
        control = self.previous if self.previous is not None else self.sim.allocate(state, force)
        self._check_range(self.sim.features(state, control))
        change, k = float("inf"), 0
        while k < self.max_iter:
            k += 1
            predicted = self.residual(self.sim.features(state, control).float()).to(state.dtype) * weight
            new = self.sim.allocate(state, force - predicted)
            change = float((new - control).abs().max()) / weight
            control = new
            if change <= self.tol:
                break
        if change > self.tol:
            raise FixedPointError(k, change, self.tol)
        self.last_iterations = k
        self.iterations.append(k)
        self.previous = control
        return control


def fly(
    sim: Quadrotor,
    controller: TrackingController,
    reference: SmoothReference,
    seconds: float | None = None,
    initial: torch.Tensor | None = None,
    seed: int = 0,
    hold: float = 0.5,
) -> dict[str, Any]:
    """Fly every drone of ``reference`` under ``controller``; return the trajectories (tensors ``[T, B, ...]``).

    Keys: ``t``, ``position``, ``reference`` (positions), ``velocity``, ``control``, ``end`` (reference end times)
    and ``iterations`` (fixed-point iterations per step, if any).
    """
    gen = torch.Generator().manual_seed(seed)
    steps = time_steps(float(reference.end.max()) + hold if seconds is None else seconds, sim.params.dt)
    p0, _, _ = reference(0.0)
    state = sim.initial_state(p0.clone()) if initial is None else initial.clone()
    controller.reset()
    times, positions, refs, vels, controls = [], [], [], [], []
    for i in range(steps):
        t = i * sim.params.dt
        p_d, v_d, a_d = reference(t)
        control = controller(state, p_d, v_d, a_d)
        times.append(t)
        positions.append(sim.position(state).clone())
        vels.append(sim.velocity(state).clone())
        refs.append(p_d)
        controls.append(control)
        state, _ = sim.step(state, control, gen)
    return {
        "t": torch.tensor(times),
        "position": torch.stack(positions),
        "velocity": torch.stack(vels),
        "reference": torch.stack(refs),
        "control": torch.stack(controls),
        "end": reference.end,
        "iterations": list(controller.iterations),
    }


def landing_error(flight: dict[str, Any], last: float = 0.5) -> torch.Tensor:
    """Per drone: mean ``|z - z_d|`` while the reference descends through its last ``last`` metres.

    Example:
        >>> t = torch.arange(4) * 1.0
        >>> flight = {"t": t, "end": torch.tensor([3.0]),
        ...           "reference": torch.tensor([1.0, 0.4, 0.2, 0.0]).view(4, 1, 1),
        ...           "position": torch.tensor([1.0, 0.5, 0.3, 0.1]).view(4, 1, 1)}
        >>> [round(float(e), 3) for e in landing_error(flight)]
        [0.1]
    """
    z_d = flight["reference"][..., -1]
    z = flight["position"][..., -1]
    mask = (z_d <= last + 1e-9) & (flight["t"].unsqueeze(1) <= flight["end"].unsqueeze(0) + 1e-9)
    err = (z - z_d).abs() * mask
    return err.sum(0) / mask.sum(0).clamp_min(1)
