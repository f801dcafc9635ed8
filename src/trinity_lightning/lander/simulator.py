"""A small vertical (1-D) and planar quadrotor simulator with a rotor ground effect, drag and noise (torch, batched).

Units: metres, seconds, newtons. Every drone of a batch is simulated at once (semi-implicit Euler, ``dt``).
The *residual* force is what a nominal model (thrust along the body axis, gravity) leaves out:

* ground effect, per rotor ``i``: the thrust ``T_i`` becomes ``T_i * (1 + c * (R / (4 h_i))**2)`` with ``h_i`` the
  rotor's height above the ground clipped below at ``h_clip`` (the model of the gym-pybullet-drones Crazyflie,
  ``GND_EFF_COEFF = 11.36859``; ``R`` and the rotor height are scaled here to a 1 kg drone),
* drag ``-(k_1 v + k_2 v |v|)``,
* process noise (a force, white, per step) and label noise on the measured residual.

The ground is at ``z = 0`` (the landing gear); the rotors sit ``rotor_offset`` above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

G = 9.81


@dataclass(frozen=True)
class QuadrotorParams:
    """Physical constants of the simulated drone (defaults: a 1 kg quadrotor, Crazyflie ground-effect law).

    Example:
        >>> p = QuadrotorParams()
        >>> round(p.ground_effect(torch.tensor([0.0, 0.5])).tolist()[0], 3)
        0.4
    """

    mass: float = 1.0
    gravity: float = G
    rotor_radius: float = 0.075
    ground_coeff: float = 11.36859
    rotor_offset: float = 0.1
    h_clip: float = 0.1
    drag_linear: float = 0.1
    drag_quadratic: float = 0.1
    arm: float = 0.15
    inertia: float = 0.01
    max_thrust: float = 2.5  # total, in units of m g
    force_noise: float = 0.02  # process noise, std in units of m g
    label_noise: float = 0.02  # noise on the measured residual, std in units of m g
    dt: float = 0.01

    @property
    def weight(self) -> float:
        """``m g`` (newtons)."""
        return self.mass * self.gravity

    def ground_effect(self, z: torch.Tensor) -> torch.Tensor:
        """Relative extra thrust ``c (R / (4 h))^2`` of a rotor whose feet are at height ``z`` (``h = z + offset``)."""
        h = (z + self.rotor_offset).clamp_min(self.h_clip)
        return self.ground_coeff * (self.rotor_radius / (4.0 * h)) ** 2

    def drag(self, v: torch.Tensor) -> torch.Tensor:
        """Drag force for velocity ``v`` (any shape, per axis)."""
        return -(self.drag_linear * v + self.drag_quadratic * v * v.abs())


class Quadrotor:
    """Common interface of the simulators: state layout, features of the residual model, allocation, stepping."""

    name: str = ""
    dim: int = 1  # position dimensions
    state_dim: int = 2
    control_dim: int = 1
    feature_names: tuple[str, ...] = ()
    # natural scale of each feature (the residual model divides by it); outputs are in units of m g
    feature_scale: tuple[float, ...] = ()

    def __init__(self, params: QuadrotorParams | None = None) -> None:
        self.params = params or QuadrotorParams()

    # -- state access -------------------------------------------------------------------------------------------
    def position(self, state: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` position (the last column is the height z)."""
        raise NotImplementedError

    def velocity(self, state: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` velocity."""
        raise NotImplementedError

    def initial_state(self, position: torch.Tensor, velocity: torch.Tensor | None = None) -> torch.Tensor:
        """State at rest (or at ``velocity``) at ``position`` ``[B, dim]``."""
        raise NotImplementedError

    # -- model interface ----------------------------------------------------------------------------------------
    def features(self, state: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` inputs of the residual model (state features and the control, in physical units)."""
        raise NotImplementedError

    def residual_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The true, noise-free residual force ``[B, dim]`` in units of ``m g`` (the oracle)."""
        raise NotImplementedError

    def allocate(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Rotor commands producing the world force ``force`` ``[B, dim]`` (N) by the nominal model, clipped."""
        raise NotImplementedError

    def hover_control(self, batch: int) -> torch.Tensor:
        """Controls that hold a drone out of ground effect."""
        return self.allocate(torch.zeros(batch, self.state_dim), torch.zeros(batch, self.dim) + self._up())

    def _up(self) -> torch.Tensor:
        up = torch.zeros(self.dim)
        up[-1] = self.params.weight
        return up

    def step(
        self, state: torch.Tensor, control: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance by ``dt``; return the next state and the *measured* residual ``[B, dim]`` (units of m g).

        The measured residual is ``m a - m g - R f(u)`` from the true acceleration (process noise included) plus
        label noise, as a drone would estimate it from its IMU.
        """
        raise NotImplementedError


def _noise(shape: tuple[int, ...], std: float, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    if std <= 0:
        return torch.zeros(shape, dtype=like.dtype)
    return std * torch.randn(shape, generator=generator, dtype=like.dtype)


class VerticalQuadrotor(Quadrotor):
    """1-D vertical flight: state ``[z, vz]``, control ``[T]`` (total thrust, N; four rotors at the same height).

    Example:
        >>> sim = VerticalQuadrotor()
        >>> state = sim.initial_state(torch.tensor([[1.0]]))
        >>> state, measured = sim.step(state, sim.hover_control(1))
        >>> abs(float(state[0, 0]) - 1.0) < 1e-3
        True
    """

    name = "vertical"
    dim = 1
    state_dim = 2
    control_dim = 1
    feature_names = ("z", "vz", "thrust")
    feature_scale = (0.25, 1.0, G)

    def position(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, :1]

    def velocity(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, 1:2]

    def initial_state(self, position: torch.Tensor, velocity: torch.Tensor | None = None) -> torch.Tensor:
        vel = torch.zeros_like(position) if velocity is None else velocity
        return torch.cat([position, vel], dim=1)

    def features(self, state: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        return torch.cat([state, control], dim=1)

    def residual_from_features(self, features: torch.Tensor) -> torch.Tensor:
        p = self.params
        z, vz, thrust = features[:, 0], features[:, 1], features[:, 2]
        force = thrust * p.ground_effect(z) + p.drag(vz)
        return (force / p.weight).unsqueeze(1)

    def allocate(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        return force.clamp(0.0, self.params.max_thrust * self.params.weight)

    def step(
        self, state: torch.Tensor, control: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        residual = self.residual_from_features(self.features(state, control)) * p.weight
        residual = residual + _noise(tuple(residual.shape), p.force_noise * p.weight, generator, state)
        accel = (control + residual) / p.mass - p.gravity
        vz = state[:, 1:2] + p.dt * accel
        z = state[:, 0:1] + p.dt * vz
        landed = z < 0
        z = torch.where(landed, torch.zeros_like(z), z)
        vz = torch.where(landed, vz.clamp_min(0.0), vz)
        measured = residual / p.weight + _noise(tuple(residual.shape), p.label_noise, generator, state)
        return torch.cat([z, vz], dim=1), measured


class PlanarQuadrotor(Quadrotor):
    """Planar (y-z) flight: state ``[y, z, theta, vy, vz, omega]``, control ``[T1, T2]`` (left/right rotor, N).

    The thrust points along ``(-sin theta, cos theta)``; ``theta'' = arm (T2 - T1) / J``. Each rotor has its own
    height (``z + offset cos theta +- arm sin theta``) and ground effect, so a tilted drone also feels an
    unmodelled torque. :meth:`allocate` turns a desired world force into a thrust and an attitude command
    (PD on the angle, tilt limited to ``max_tilt``).

    Example:
        >>> sim = PlanarQuadrotor()
        >>> state = sim.initial_state(torch.tensor([[0.0, 1.0]]))
        >>> state, _ = sim.step(state, sim.hover_control(1))
        >>> abs(float(state[0, 1]) - 1.0) < 1e-3
        True
    """

    name = "planar"
    dim = 2
    state_dim = 6
    control_dim = 2
    feature_names = ("z", "vy", "vz", "theta", "thrust_left", "thrust_right")
    feature_scale = (0.25, 1.0, 1.0, 0.3, G / 2, G / 2)

    def __init__(
        self,
        params: QuadrotorParams | None = None,
        k_theta: float = 150.0,
        k_omega: float = 25.0,
        max_tilt: float = 0.5,
    ) -> None:
        super().__init__(params)
        self.k_theta, self.k_omega, self.max_tilt = k_theta, k_omega, max_tilt

    def position(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, 0:2]

    def velocity(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, 3:5]

    def initial_state(self, position: torch.Tensor, velocity: torch.Tensor | None = None) -> torch.Tensor:
        vel = torch.zeros_like(position) if velocity is None else velocity
        zero = torch.zeros_like(position[:, :1])
        return torch.cat([position, zero, vel, zero], dim=1)

    def features(self, state: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        return torch.cat([state[:, 1:2], state[:, 3:5], state[:, 2:3], control], dim=1)

    def _rotor_terms(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.params
        z, theta = features[:, 0], features[:, 3]
        lift = p.rotor_offset * torch.cos(theta) - p.rotor_offset
        extra_left = features[:, 4] * p.ground_effect(z + lift - p.arm * torch.sin(theta))
        extra_right = features[:, 5] * p.ground_effect(z + lift + p.arm * torch.sin(theta))
        return extra_left, extra_right, theta

    def residual_from_features(self, features: torch.Tensor) -> torch.Tensor:
        p = self.params
        extra_left, extra_right, theta = self._rotor_terms(features)
        extra = extra_left + extra_right
        force = torch.stack([-extra * torch.sin(theta), extra * torch.cos(theta)], dim=1)
        force = force + p.drag(features[:, 1:3])
        return force / p.weight

    def allocate(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        p = self.params
        theta, omega = state[:, 2], state[:, 5]
        theta_d = torch.atan2(-force[:, 0], force[:, 1].clamp_min(1e-6)).clamp(-self.max_tilt, self.max_tilt)
        thrust = (-force[:, 0] * torch.sin(theta) + force[:, 1] * torch.cos(theta)).clamp(0.0, None)
        torque = p.inertia * (-self.k_theta * (theta - theta_d) - self.k_omega * omega)
        half = thrust / 2
        diff = torque / (2 * p.arm)
        cap = p.max_thrust * p.weight / 2
        return torch.stack([(half - diff).clamp(0.0, cap), (half + diff).clamp(0.0, cap)], dim=1)

    def step(
        self, state: torch.Tensor, control: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        feats = self.features(state, control)
        residual = self.residual_from_features(feats) * p.weight
        residual = residual + _noise(tuple(residual.shape), p.force_noise * p.weight, generator, state)
        extra_left, extra_right, theta = self._rotor_terms(feats)
        thrust = control.sum(dim=1)
        body = torch.stack([-thrust * torch.sin(theta), thrust * torch.cos(theta)], dim=1)
        accel = (body + residual) / p.mass
        accel[:, 1] -= p.gravity
        alpha = p.arm * ((control[:, 1] + extra_right) - (control[:, 0] + extra_left)) / p.inertia
        vel = state[:, 3:5] + p.dt * accel
        omega = state[:, 5] + p.dt * alpha
        pos = state[:, 0:2] + p.dt * vel
        theta = state[:, 2] + p.dt * omega
        landed = pos[:, 1] < 0
        pos[:, 1] = pos[:, 1].clamp_min(0.0)
        vel[:, 1] = torch.where(landed, vel[:, 1].clamp_min(0.0), vel[:, 1])
        vel[:, 0] = torch.where(landed, vel[:, 0] * 0.5, vel[:, 0])  # friction on the ground
        measured = residual / p.weight + _noise(tuple(residual.shape), p.label_noise, generator, state)
        new = torch.cat([pos, theta.unsqueeze(1), vel, omega.unsqueeze(1)], dim=1)
        return new, measured


def make_simulator(system: str, params: QuadrotorParams | None = None) -> Quadrotor:
    """``"vertical"`` or ``"planar"``; ``ValueError`` naming the choices otherwise."""
    systems: dict[str, type[Quadrotor]] = {"vertical": VerticalQuadrotor, "planar": PlanarQuadrotor}
    if system not in systems:
        raise ValueError(f"system: expected one of {sorted(systems)}, got {system!r}")
    return systems[system](params)


class SmoothReference:
    """Piecewise minimum-jerk (quintic) reference through waypoints, batched: ``p_d, v_d, a_d`` at time ``t``.

    Args:
        waypoints: ``[B, K + 1, dim]`` positions.
        durations: ``[B, K]`` seconds per segment; after the last one the reference holds the last waypoint.

    Example:
        >>> ref = SmoothReference.landing(torch.tensor([[0.0, 1.0]]), speed=0.5)
        >>> [round(float(x), 3) for x in ref(0.0)[0][0]], round(float(ref.end[0]), 2)
        ([0.0, 1.0], 3.75)
    """

    def __init__(self, waypoints: torch.Tensor, durations: torch.Tensor) -> None:
        if waypoints.dim() != 3 or durations.shape != (waypoints.shape[0], waypoints.shape[1] - 1):
            raise ValueError(
                f"SmoothReference: expected waypoints [B, K+1, dim] and durations [B, K], got "
                f"{tuple(waypoints.shape)} and {tuple(durations.shape)}"
            )
        self.waypoints = waypoints
        self.durations = durations.clamp_min(1e-3)
        self.starts = torch.cat([torch.zeros_like(durations[:, :1]), self.durations.cumsum(1)], dim=1)
        self.end = self.starts[:, -1]

    @classmethod
    def landing(cls, start: torch.Tensor, speed: float | torch.Tensor = 0.5) -> SmoothReference:
        """A straight descent from ``start`` ``[B, dim]`` to the ground below it, peak vertical speed ``speed``."""
        goal = start.clone()
        goal[:, -1] = 0.0
        duration = 1.875 * start[:, -1] / torch.as_tensor(speed, dtype=start.dtype)  # quintic peak speed 1.875 d/T
        return cls(torch.stack([start, goal], dim=1), duration.unsqueeze(1))

    def __call__(self, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = (self.starts[:, 1:] <= t).sum(dim=1).clamp_max(self.durations.shape[1] - 1)
        rows = torch.arange(len(k))
        dur = self.durations[rows, k]
        tau = ((t - self.starts[rows, k]) / dur).clamp(0.0, 1.0).unsqueeze(1)
        a, b = self.waypoints[rows, k], self.waypoints[rows, k + 1]
        s = tau**3 * (10 - 15 * tau + 6 * tau**2)
        ds = 30 * tau**2 * (1 - tau) ** 2 / dur.unsqueeze(1)
        dds = 60 * tau * (1 - tau) * (1 - 2 * tau) / dur.unsqueeze(1) ** 2
        done = (tau >= 1.0).float()
        return a + (b - a) * s, (b - a) * ds * (1 - done), (b - a) * dds * (1 - done)


def random_waypoints(
    batch: int,
    dim: int,
    segments: int,
    max_height: float,
    max_speed: float,
    generator: torch.Generator,
    width: float = 1.0,
    height_power: float = 2.0,
) -> SmoothReference:
    """Random exploration reference: heights in ``[0, max_height]``, peak speed at most ``max_speed``.

    Heights are ``max_height * U ** height_power`` (``U`` uniform): with the default 2 a quarter of the waypoints lie
    in the lowest 6% of the range, where the ground effect changes fastest (1: uniform heights).
    """
    points = torch.rand(batch, segments + 1, dim, generator=generator)
    points[..., -1] = max_height * points[..., -1] ** height_power
    if dim > 1:
        points[..., :-1] = (points[..., :-1] - 0.5) * width
    dist = (points[:, 1:] - points[:, :-1]).norm(dim=2)
    speed = max_speed * (0.3 + 0.7 * torch.rand(batch, segments, generator=generator))
    durations = torch.maximum(1.875 * dist / speed, torch.full_like(dist, 0.4))
    return SmoothReference(points, durations)


def time_steps(seconds: float, dt: float) -> int:
    """Number of steps of ``dt`` in ``seconds``."""
    return math.ceil(seconds / dt - 1e-9)
