"""One test per failure mode of `solve`: non-finite states, step size too small, too many
steps, bad grids, bad options — each raises the documented error with a useful message and,
for integration failures, the partial solution up to the last good step."""

from __future__ import annotations

import math

import pytest
import torch

from odeflow.errors import InvalidInputError, MaxStepsExceeded, NonFiniteError, OdeflowError, StepSizeTooSmall
from solvers import solve
from solvers.adaptive import PIController
from solvers.grids import uniform
from solvers.runge_kutta import Dopri5, Tsit5


def nan_below(t_bad: float):
    """A field that is NaN for t < t_bad (as a broken network would be)."""

    def f(t, x):
        return torch.where(t < t_bad, torch.full_like(x, math.nan), -x)

    return f


# --- NonFiniteError ---------------------------------------------------------------------------
@pytest.mark.parametrize("solver, bad_step", [("euler", 6), ("rk4", 5), ("heun", 5)])
@pytest.mark.parametrize("save", ["final", "steps"])
def test_fixed_step_nonfinite_names_t_and_step_with_partial(solver, bad_step, save):
    """Grid 1.0, 0.9, ..., 0.0 and NaN below t = 0.45: RK4/Heun evaluate at the step's end, so
    the step 0.5 -> 0.4 (index 5) fails; Euler evaluates only at its start: step 0.4 -> 0.3."""
    grid = uniform(10)
    x0 = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(NonFiniteError) as info:
        solve(nan_below(0.45), x0, solver=solver, grid=grid, save=save)
    err = info.value
    t_good = 1.0 - 0.1 * bad_step
    assert err.step == bad_step and err.t == pytest.approx(t_good - 0.1)
    assert f"step {bad_step}" in str(err) and f"t = {t_good:g}" in str(err)
    p = err.partial
    assert p.ts.numel() == bad_step + 1 and float(p.ts[-1]) == pytest.approx(t_good)
    assert torch.isfinite(p.xs).all() and torch.equal(p.x, p.xs[-1])
    assert torch.allclose(p.x, x0 * math.exp(1.0 - t_good), rtol=5e-2)
    assert p.stats.steps == bad_step


@pytest.mark.parametrize("span", [(1.0, 0.0), (0.0, 1.0)])
def test_adaptive_nonfinite_names_t_and_step_with_partial(span):
    t_bad = 0.45 if span[0] > span[1] else 0.55

    def f(t, x):
        bad = t < t_bad if span[0] > span[1] else t > t_bad
        return torch.where(bad, torch.full_like(x, math.nan), -x)

    x0 = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(NonFiniteError) as info:
        solve(f, x0, solver=Dopri5(rtol=1e-6, atol=1e-6), t_span=span, save="steps")
    err = info.value
    assert err.t == pytest.approx(t_bad, abs=1e-3)
    assert err.step == err.partial.stats.accepted > 0
    assert "non-finite" in str(err) and f"step {err.step}" in str(err)
    p = err.partial
    assert torch.isfinite(p.xs).all() and float(p.ts[-1]) == pytest.approx(err.t)
    assert torch.allclose(p.x, x0 * math.exp(-(err.t - span[0])), rtol=1e-4)


def test_adaptive_nan_everywhere_fails_fast():
    calls = []

    def f(t, x):
        calls.append(1)
        return torch.full_like(x, math.nan)

    with pytest.raises(NonFiniteError) as info:
        solve(f, torch.ones(1, 2), solver=Dopri5(dt0=0.1))
    assert info.value.step == 0 and info.value.t == 1.0
    assert len(calls) < 40
    assert info.value.partial.x.shape == (1, 2)


# --- StepSizeTooSmall -------------------------------------------------------------------------
def test_step_size_too_small():
    """x' = -1000 (x - cos t): at rtol 1e-10 an explicit method needs steps ~1e-3 > dt_min."""

    def stiff(t, x):
        return -1000.0 * (x - torch.cos(t))

    x0 = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(StepSizeTooSmall) as info:
        solve(stiff, x0, solver=Tsit5(rtol=1e-10, atol=1e-10, dt_min=0.01))
    err = info.value
    assert "dt_min" in str(err) and err.partial is not None and 0.0 <= err.t <= 1.0
    assert err.partial.stats.steps >= 1 and torch.isfinite(err.partial.x).all()


def test_step_size_below_float_resolution():
    """A field with a jump it cannot resolve: the step shrinks to the float spacing of t."""

    def jump(t, x):
        return torch.where(t < 0.5, 1e12 * torch.ones_like(x), torch.zeros_like(x)) * torch.sin(1e6 * t)

    with pytest.raises((StepSizeTooSmall, MaxStepsExceeded)):
        solve(jump, torch.zeros(1, 1, dtype=torch.float64), solver=Dopri5(rtol=1e-12, atol=1e-12), max_steps=5000)


# --- MaxStepsExceeded -------------------------------------------------------------------------
def test_adaptive_max_steps_exceeded_with_partial():
    x0 = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(MaxStepsExceeded) as info:
        solve(lambda t, x: -x, x0, solver=Dopri5(rtol=1e-12, atol=1e-12), max_steps=5, save="steps")
    err = info.value
    assert err.partial.stats.steps == 5 and "max_steps = 5" in str(err)
    p = err.partial
    assert p.ts.numel() == p.stats.accepted + 1 and 0.0 < err.t < 1.0
    assert torch.allclose(p.x, x0 * math.exp(1.0 - err.t), rtol=1e-9)


def test_fixed_grid_longer_than_max_steps():
    with pytest.raises(MaxStepsExceeded) as info:
        solve(lambda t, x: -x, torch.ones(1, 2), solver="euler", grid=uniform(20), max_steps=10)
    assert "max_steps" in str(info.value) and info.value.partial.x.shape == (1, 2)


# --- grids and other bad input ----------------------------------------------------------------
@pytest.mark.parametrize(
    "grid, match",
    [
        ([0.7], "at least 2"),
        ([1.0, 0.5, 0.5, 0.0], "strictly monotone"),
        ([1.0, 0.2, 0.5, 0.0], "strictly monotone"),
        ([1.2, 0.5, 0.0], r"leaves \[0, 1\]"),
        ([1.0, 0.5, -0.1], r"leaves \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("solver", ["rk4", "dopri5"])
def test_bad_grids(grid, match, solver):
    with pytest.raises(InvalidInputError, match=match):
        solve(lambda t, x: -x, torch.ones(2, 2), solver=solver, grid=grid)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solver="rk5", grid=[1.0, 0.0]), "valid solvers"),
        (dict(solver="rk4"), "grid="),
        (dict(solver="rk4", grid=[1.0, 0.0], save_at=[0.5]), "save_at"),
        (dict(solver="rk4", grid=[1.0, 0.0], save="all"), "save mode"),
        (dict(solver="dopri5", t_span=(1.0, 1.0)), "equal ends"),
        (dict(solver="dopri5", t_span=(1.0, -0.5)), "outside"),
        (dict(solver="dopri5", t_span=1.0), "pair"),
        (dict(solver="dopri5", save_at=[0.2, 0.5]), "strictly monotone"),
        (dict(solver="dopri5", save_at=[1.5]), "inside t_span"),
        (dict(solver="dopri5", save_at=[0.5], save="steps"), "exclusive"),
        (dict(solver="dopri5", grid=[1.0, 0.0], save_at=[0.5]), "either grid"),
        (dict(solver="dopri5", norm="l2"), "valid norms"),
        (dict(solver="dopri5", rtol=-1.0), "rtol"),
        (dict(solver="dopri5", tolerance=1e-3), "unknown adaptive option"),
        (dict(solver="dopri5", controller="pi"), "PIController"),
        (dict(solver="dopri5", dt_max=0.0), "dt_max"),
        (dict(solver="dopri5", max_steps=0), "max_steps"),
    ],
)
def test_bad_solve_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        solve(lambda t, x: -x, torch.ones(2, 2), **kwargs)


def test_bad_solver_constructor_options():
    with pytest.raises(InvalidInputError, match="unknown adaptive option"):
        Dopri5(rtl=1e-3)
    with pytest.raises(InvalidInputError, match="norm"):
        Dopri5(norm="max")
    with pytest.raises(InvalidInputError):
        PIController(safety=2.0)


def test_bad_initial_state():
    for x, match in [(torch.ones(2, 2, dtype=torch.int64), "dtype"), (torch.tensor(1.0), "batch"),
                     (torch.tensor([[math.nan]]), "NaN"), ([1.0, 2.0], "torch.Tensor")]:  # fmt: skip
        with pytest.raises(InvalidInputError, match=match):
            solve(lambda t, x: -x, x, solver="euler", grid=[1.0, 0.0])


def test_all_integration_errors_are_odeflow_errors():
    for cls in (NonFiniteError, StepSizeTooSmall, MaxStepsExceeded, InvalidInputError):
        assert issubclass(cls, OdeflowError)
