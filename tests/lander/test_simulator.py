from __future__ import annotations

import pytest
import torch

from trinity_lightning.lander.controllers import (
    AnalyticGroundEffect,
    FixedPointError,
    OracleResidual,
    TrackingController,
    fly,
    landing_error,
)
from trinity_lightning.lander.datamodule import collect_flights
from trinity_lightning.lander.simulator import (
    PlanarQuadrotor,
    QuadrotorParams,
    SmoothReference,
    VerticalQuadrotor,
    make_simulator,
)


def test_ground_effect_is_the_per_rotor_pybullet_law_with_h_clipped():
    p = QuadrotorParams()
    z = torch.tensor([-0.05, 0.0, 0.2, 0.9])
    h = (z + p.rotor_offset).clamp_min(p.h_clip)
    expected = 11.36859 * (0.075 / (4 * h)) ** 2
    assert torch.allclose(p.ground_effect(z), expected)
    assert float(p.ground_effect(z)[0]) == float(p.ground_effect(z)[1])  # clipped
    sim = VerticalQuadrotor(QuadrotorParams(drag_linear=0.0, drag_quadratic=0.0))
    x = torch.tensor([[0.2, 0.0, 9.81]])
    assert float(sim.residual_from_features(x)) == pytest.approx(float(expected[2]), rel=1e-6)


def test_drag_opposes_the_velocity():
    sim = VerticalQuadrotor(QuadrotorParams(ground_coeff=0.0))
    r = sim.residual_from_features(torch.tensor([[1.0, 2.0, 9.81], [1.0, -2.0, 9.81]]))
    assert float(r[0]) == pytest.approx(-(0.1 * 2 + 0.1 * 4) / 9.81)
    assert float(r[1]) == pytest.approx(-float(r[0]))


def test_planar_level_drone_feels_the_vertical_residual_and_a_tilt_splits_the_rotors():
    vertical, planar = VerticalQuadrotor(), PlanarQuadrotor()
    level = torch.tensor([[0.1, 0.0, -0.3, 0.0, 4.9, 4.9]])
    rv = vertical.residual_from_features(torch.tensor([[0.1, -0.3, 9.8]]))
    rp = planar.residual_from_features(level)
    assert float(rp[0, 1]) == pytest.approx(float(rv[0, 0]), rel=1e-5)
    assert float(rp[0, 0]) == pytest.approx(0.0, abs=1e-7)
    tilted = level.clone()
    tilted[0, 3] = 0.2
    left, right, _ = planar._rotor_terms(tilted)
    assert float(left) > float(right)  # the lower rotor feels more ground effect
    assert float(planar.residual_from_features(tilted)[0, 0]) < 0  # thrust tilted towards -y


def test_noise_is_seeded():
    sim = VerticalQuadrotor()
    s = sim.initial_state(torch.tensor([[0.5]], dtype=torch.float64))
    a = sim.step(s, sim.hover_control(1).double(), torch.Generator().manual_seed(3))
    b = sim.step(s, sim.hover_control(1).double(), torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_exploration_heights_are_denser_near_the_ground():
    from trinity_lightning.lander.simulator import random_waypoints

    gen = torch.Generator().manual_seed(0)
    dense = random_waypoints(200, 1, 10, 1.0, 1.0, gen).waypoints[..., -1]
    uniform = random_waypoints(200, 1, 10, 1.0, 1.0, gen, height_power=1.0).waypoints[..., -1]
    assert float((dense < 0.1).float().mean()) == pytest.approx(0.1**0.5, abs=0.03)
    assert float((uniform < 0.1).float().mean()) == pytest.approx(0.1, abs=0.03)
    assert float(dense.max()) <= 1.0 and float(dense.min()) >= 0.0


def test_unknown_system():
    with pytest.raises(ValueError, match=r"system: expected one of \['planar', 'vertical'\], got 'lunar'"):
        make_simulator("lunar")


def _starts(sim, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z0 = 0.8 + 0.4 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    if sim.dim == 1:
        return z0
    return torch.cat([torch.rand(n, 1, generator=gen, dtype=torch.float64) - 0.5, z0], dim=1)


@pytest.mark.parametrize("system", ["vertical", "planar"])
def test_the_oracle_controller_lands_and_the_nominal_one_hovers_above_the_ground(system):
    sim = make_simulator(system)
    ref = SmoothReference.landing(_starts(sim), speed=0.8)
    oracle = TrackingController(sim, residual=OracleResidual(sim))
    flight = fly(sim, oracle, ref, seed=1)
    nominal = fly(sim, TrackingController(sim), ref, seed=1)
    err_oracle, err_nominal = float(landing_error(flight).mean()), float(landing_error(nominal).mean())
    assert err_oracle < 0.005
    assert err_nominal > 5 * err_oracle
    assert float(flight["position"][-1, :, -1].max()) < 0.01  # landed
    assert float(nominal["position"][-1, :, -1].min()) > 0.05  # held up by the ground effect
    iters = torch.tensor(flight["iterations"], dtype=torch.float32)
    assert float(iters.mean()) <= 5 and int(iters.max()) <= 10
    if system == "planar":
        assert float((flight["position"][-1, :, 0] - ref.waypoints[:, -1, 0]).abs().max()) < 0.02


def test_fixed_point_that_diverges_raises_with_iterations_and_residual():
    sim = VerticalQuadrotor()
    expanding = lambda f: 2.0 * f[:, 2:3] / 9.81 - 1.0  # noqa: E731 - slope 2 in the control: oscillates
    ctrl = TrackingController(sim, residual=expanding, max_iter=7)
    state = sim.initial_state(torch.tensor([[0.5]]))
    zero = torch.zeros(1, 1)
    with pytest.raises(
        FixedPointError, match=r"did not converge: 7 iterations, residual \S+ \(in units of m g\)"
    ) as err:
        ctrl(state, zero + 0.5, zero, zero)
    assert err.value.iterations == 7 and err.value.residual > 1e-4


def test_state_outside_the_training_range_warns_with_the_state():
    sim = VerticalQuadrotor()
    low, high = torch.tensor([0.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, 30.0])
    ctrl = TrackingController(sim, residual=OracleResidual(sim), feature_range=(low, high))
    state = sim.initial_state(torch.tensor([[1.5]]))
    zero = torch.zeros(1, 1)
    with pytest.warns(RuntimeWarning, match=r"outside the residual model's training range \(z\): z=1.5, vz=0"):
        ctrl(state, zero + 1.5, zero, zero)


def test_bad_controller_arguments():
    with pytest.raises(ValueError, match="max_iter"):
        TrackingController(VerticalQuadrotor(), max_iter=0)
    with pytest.raises(ValueError, match="vertical simulator only"):
        AnalyticGroundEffect(PlanarQuadrotor())


def test_analytic_model_fits_the_ground_effect_roughly():
    sim = VerticalQuadrotor()
    x, y = collect_flights(sim, flights=4, seconds=4.0, seed=0)
    model = AnalyticGroundEffect(sim).fit(x, y)
    truth = sim.residual_from_features(x)
    err = float((model(x) - truth).pow(2).mean().sqrt())
    assert err < float(truth.pow(2).mean().sqrt())  # explains part of the residual
    assert float(model.coef[0]) > 0
