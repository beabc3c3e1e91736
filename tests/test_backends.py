"""torchdiffeq and scipy backends: same answers and honest NFE compared with calling the
libraries directly, our own solvers on the same grids, saving, failures and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torchdiffeq import odeint

from odeflow.errors import InvalidInputError, MaxStepsExceeded, NonFiniteError
from solvers import get_solver, solve
from solvers.backends import SCIPY_METHODS, SciPy, TorchDiffEq
from solvers.grids import quadratic, uniform
from solvers.runge_kutta import RK38, Euler, Heun, Midpoint

A = torch.tensor([[-0.3, 1.7], [-1.9, 0.2]], dtype=torch.float64)


def field(t, x):
    return x @ A.T + 0.3 * torch.sin(2.0 * t) * torch.tanh(x)


class Counting:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, x):
        self.calls += 1
        return self.f(t, x)


X0 = torch.tensor([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.1]], dtype=torch.float64)


@pytest.mark.parametrize("method, ours", [("euler", Euler), ("midpoint", Midpoint), ("heun2", Heun), ("rk4", RK38)])
@pytest.mark.parametrize("direction", ["decreasing", "increasing"])
def test_torchdiffeq_fixed_methods_equal_ours_on_the_same_grid(method, ours, direction):
    g = quadratic(9) if direction == "decreasing" else quadratic(9, 0.0, 1.0)
    f = Counting(field)
    theirs = solve(f, X0, solver=TorchDiffEq(method), grid=g, save="steps")
    mine = solve(field, X0, solver=ours(), grid=g, save="steps")
    assert torch.allclose(theirs.xs, mine.xs, atol=1e-12, rtol=0)
    assert theirs.stats.nfe == f.calls == mine.stats.nfe  # torchdiffeq evaluates once per stage too
    assert theirs.stats.steps == 9 and torch.equal(theirs.ts, g)


def test_torchdiffeq_adaptive_matches_direct_odeint_and_counts_nfe():
    times = torch.linspace(1.0, 0.0, 7, dtype=torch.float64)
    f = Counting(field)
    ours = solve(f, X0, solver=TorchDiffEq("dopri5", rtol=1e-9, atol=1e-9), save_at=times)
    g = Counting(field)
    direct = odeint(g, X0, times, rtol=1e-9, atol=1e-9, method="dopri5")
    assert torch.allclose(ours.xs, direct, atol=1e-14, rtol=0)
    assert ours.stats.nfe == f.calls == g.calls
    assert torch.equal(ours.ts, times) and torch.equal(ours.x, direct[-1])


def _flat_scipy(method, span, tol, t_eval=None):
    def fun(t, y):
        return field(torch.tensor(t, dtype=torch.float64), torch.tensor(y).reshape(X0.shape)).reshape(-1).numpy()

    return solve_ivp(fun, span, X0.reshape(-1).numpy(), method=method, rtol=tol, atol=tol, t_eval=t_eval)


@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853", "Radau"])
@pytest.mark.parametrize("span", [(1.0, 0.0), (0.0, 1.0)])
def test_scipy_backend_equals_solve_ivp_on_the_flattened_batch(method, span):
    f = Counting(field)
    ours = solve(f, X0, solver=SciPy(method, rtol=1e-7, atol=1e-7), t_span=span, save="steps")
    ref = _flat_scipy(method, span, 1e-7)
    # scipy's nfev leaves out the finite-difference Jacobian's calls (one per variable); we count them
    assert ours.stats.nfe == f.calls == ref.nfev + ref.njev * X0.numel()
    assert np.allclose(ours.ts.numpy(), ref.t, atol=1e-14)
    assert np.allclose(ours.xs.reshape(len(ref.t), -1).numpy(), ref.y.T, atol=1e-12)
    assert ours.stats.steps == len(ref.t) - 1


def test_scipy_save_at_uses_dense_output():
    times = np.linspace(1.0, 0.0, 11)
    ours = solve(field, X0, solver=SciPy("DOP853", rtol=1e-9, atol=1e-9), save_at=times)
    ref = _flat_scipy("DOP853", (1.0, 0.0), 1e-9, t_eval=times)
    assert np.allclose(ours.xs.reshape(11, -1).numpy(), ref.y.T, atol=1e-12)
    assert np.allclose(ours.ts.numpy(), times)


def test_backends_agree_with_each_other_and_keep_shape_and_dtype():
    x0 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))

    def f(t, x):
        return -x * (1.0 + t)

    exact = x0 * math.exp(1.0 + 0.5)  # x' = -(1 + t) x from t = 1 down to 0
    for solver in (TorchDiffEq("dopri5", rtol=1e-6, atol=1e-8), SciPy("RK45", rtol=1e-6, atol=1e-8)):
        sol = solve(f, x0, solver=solver)
        assert sol.x.shape == x0.shape and sol.x.dtype == torch.float32
        assert torch.allclose(sol.x, exact, rtol=1e-4, atol=1e-5)


def test_step_api():
    for solver in (TorchDiffEq("rk4"), SciPy("RK45", rtol=1e-8, atol=1e-8)):
        f = Counting(field)
        state = solver.init(f, 1.0, X0)
        x = X0
        for t0, t1 in [(1.0, 0.75), (0.75, 0.5)]:
            x, state = solver.step(f, t0, t1, x, state)
        assert state.nfe == f.calls > 0
        ref = solve(field, X0, solver=SciPy("DOP853", rtol=1e-12, atol=1e-12), t_span=(1.0, 0.5)).x
        assert torch.allclose(x, ref, atol=1e-2 if solver.method == "rk4" else 1e-6)


def test_max_steps_and_partial():
    with pytest.raises(MaxStepsExceeded) as info:
        solve(field, X0, solver=SciPy("RK45", rtol=1e-10, atol=1e-10), max_steps=3, save="steps")
    p = info.value.partial
    assert p.stats.steps == 3 and p.ts.numel() == 4 and 0 < info.value.t < 1
    with pytest.raises(MaxStepsExceeded):
        solve(field, X0, solver=TorchDiffEq("dopri5", rtol=1e-10, atol=1e-10), max_steps=3)
    with pytest.raises(MaxStepsExceeded):
        solve(field, X0, solver=TorchDiffEq("euler"), grid=uniform(10), max_steps=3)


def test_nonfinite_states_raise():
    def blows_up(t, x):
        return torch.where(t < 0.5, torch.full_like(x, math.nan), -x)

    with pytest.raises(NonFiniteError) as info:
        solve(blows_up, X0, solver=TorchDiffEq("rk4"), grid=uniform(8), save="steps")
    assert info.value.t == pytest.approx(0.375) and torch.isfinite(info.value.partial.xs).all()
    with pytest.raises(NonFiniteError) as info:
        solve(blows_up, X0, solver=SciPy("RK45"))
    assert info.value.t == pytest.approx(0.5, abs=1e-6) and "non-finite" in str(info.value)


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda: TorchDiffEq("rk5"), {}, "valid torchdiffeq methods"),
        (lambda: SciPy("rk45"), {}, "'RK45'"),
        (lambda: SciPy("RK45", rtol=0.0), {}, "rtol"),
        (lambda: TorchDiffEq("rk4"), {}, "fixed-grid"),
        (lambda: TorchDiffEq("rk4"), {"grid": [1.0, 0.0], "save_at": [0.5]}, "either grid"),
        (lambda: TorchDiffEq("dopri5"), {"save": "steps"}, "save_at"),
        (lambda: TorchDiffEq("dopri5"), {"rtol": 1e-3}, "constructor"),
        (lambda: SciPy("RK45"), {"grid": [1.0, 1.0]}, "strictly monotone"),
        (lambda: SciPy("RK45"), {"save_at": [0.5], "save": "steps"}, "exclusive"),
        (lambda: SciPy("RK45"), {"t_span": (1.0, 2.0)}, "outside"),
    ],
)
def test_bad_input(make, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        solve(field, X0, solver=make(), **kwargs)


def test_registered_names():
    assert type(get_solver("torchdiffeq", method="bosh3")) is TorchDiffEq
    assert type(get_solver("scipy", method="LSODA")) is SciPy
    assert set(SCIPY_METHODS) >= {"RK45", "RK23", "DOP853"}
    assert TorchDiffEq("dopri8").order == 8 and SciPy("RK23").order == 3
