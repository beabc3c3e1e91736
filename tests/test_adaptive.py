"""Adaptive Runge–Kutta: accuracy against analytic solutions, NFE against scipy, dense output,
the per-sample norm, FSAL accounting, one host sync per step, both time directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from odeflow.errors import InvalidInputError
from solvers import solve
from solvers.adaptive import PIController, error_norm, solve_adaptive
from solvers.grids import uniform
from solvers.runge_kutta import DOP853, Bosh3, Dopri5, HeunEuler, Tsit5

PAIRS = [Bosh3, Dopri5, Tsit5, DOP853]
SCIPY = {Dopri5: "RK45", Bosh3: "RK23", DOP853: "DOP853"}
DIRECTIONS = [(1.0, 0.0), (0.0, 1.0)]


def linear_problem(seed: int, dim: int = 3, norm: float = 3.0, batch: int = 2):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim))
    a *= norm / np.linalg.norm(a, 2)
    return torch.tensor(a), torch.tensor(rng.standard_normal((batch, dim)))


def exact(a, x0, t0, t1):
    return x0 @ torch.linalg.matrix_exp(a * (t1 - t0)).T


@pytest.mark.parametrize("cls", PAIRS, ids=lambda c: c.name)
@settings(max_examples=4)
@given(seed=st.integers(0, 2**32 - 1), span=st.sampled_from(DIRECTIONS))
def test_tight_tolerance_endpoint_error(cls, seed, span):
    """rtol = atol = 1e-8: endpoint error below 1e-6 against expm, both directions."""
    a, x0 = linear_problem(seed)
    sol = solve(lambda t, x: x @ a.T, x0, solver=cls(rtol=1e-8, atol=1e-8), t_span=span)
    err = float((sol.x - exact(a, x0, *span)).abs().max())
    assert err < 1e-6
    assert sol.stats.accepted + sol.stats.rejected == sol.stats.steps


def test_heun_euler_loose_tolerance():
    """HeunEuler is for loose tolerances (its NFE at 1e-8 is ~10^4 per unit time); at 1e-5 the
    endpoint error is of the tolerance's order."""
    a, x0 = linear_problem(0)
    for span in DIRECTIONS:
        sol = solve(lambda t, x: x @ a.T, x0, solver=HeunEuler(rtol=1e-5, atol=1e-5), t_span=span)
        ref = exact(a, x0, *span)
        assert bool(((sol.x - ref).abs() < 10 * (1e-5 + 1e-5 * ref.abs())).all())


def _nonlinear(t, x):
    return torch.stack([x[:, 1], -torch.sin(x[:, 0]) - 0.3 * t * x[:, 1]], dim=1)  # a damped pendulum


def _scipy_nfev(method, f, x0, span, tol):
    def fun(t, y):
        return f(torch.tensor(t, dtype=torch.float64), torch.tensor(y)[None])[0].numpy()

    return solve_ivp(fun, span, x0[0].numpy(), method=method, rtol=tol, atol=tol)


@pytest.mark.parametrize("cls", list(SCIPY), ids=lambda c: c.name)
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("span", DIRECTIONS, ids=["decreasing", "increasing"])
def test_nfe_within_1_3x_of_scipy_with_rms_norm(cls, tol, span):
    """Default (PI) controller, scipy's norm: at most 1.3x scipy's NFE, and no less accurate
    than 3x scipy's error (or the tolerance), measured against a 1e-13 reference."""
    x0 = torch.tensor([[1.2, -0.4]], dtype=torch.float64)
    ours = solve(_nonlinear, x0, solver=cls(rtol=tol, atol=tol, norm="rms"), t_span=span)
    theirs = _scipy_nfev(SCIPY[cls], _nonlinear, x0, span, tol)
    ref = _scipy_nfev("DOP853", _nonlinear, x0, span, 1e-13).y[:, -1]
    assert ours.stats.nfe <= 1.3 * theirs.nfev, (ours.stats, theirs.nfev)
    our_err = np.abs(ours.x[0].numpy() - ref).max()
    their_err = np.abs(theirs.y[:, -1] - ref).max()
    assert our_err <= max(3 * their_err, tol), (our_err, their_err)


@pytest.mark.parametrize("cls", list(SCIPY), ids=lambda c: c.name)
@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_i_controller_reproduces_scipy_step_sequence(cls, tol):
    """With beta1 = 1, beta2 = 0 our controller, initial step and norm are scipy's: same steps."""
    x0 = torch.tensor([[1.2, -0.4]], dtype=torch.float64)
    ours = solve(
        _nonlinear,
        x0,
        solver=cls(rtol=tol, atol=tol, norm="rms", controller=PIController(beta1=1.0, beta2=0.0)),
        save="steps",
    )
    theirs = _scipy_nfev(SCIPY[cls], _nonlinear, x0, (1.0, 0.0), tol)
    assert ours.stats.nfe == theirs.nfev
    # the same steps up to round-off: the error estimate sum_i e_i k_i cancels to ~rtol of the
    # terms, so summation order (numpy dot vs our fused adds) moves it by ~1e-5 relative
    assert np.allclose(ours.ts.numpy(), theirs.t, atol=1e-5, rtol=0)
    assert np.allclose(ours.x[0].numpy(), theirs.y[:, -1], atol=1e-7, rtol=0)


@pytest.mark.parametrize("cls", PAIRS, ids=lambda c: c.name)
@pytest.mark.parametrize("span", DIRECTIONS, ids=["decreasing", "increasing"])
@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_save_at_dense_output_error_is_of_tolerance_order(cls, span, tol):
    """Between steps the dense output is as accurate as the steps themselves: its error is at
    most 5x the larger of the error at the accepted steps and the tolerance (scaled by |x|)."""
    a, x0 = linear_problem(3, norm=2.0)
    times = torch.linspace(span[0], span[1], 23, dtype=torch.float64)

    def f(t, x):
        return x @ a.T

    sol = solve(f, x0, solver=cls(rtol=tol, atol=tol), save_at=times, t_span=span)
    assert torch.equal(sol.ts, times) and sol.xs.shape == (23, *x0.shape)
    assert torch.equal(sol.xs[-1], sol.x) and torch.equal(sol.xs[0], x0)
    want = torch.stack([exact(a, x0, span[0], float(s)) for s in times])
    steps = solve(f, x0, solver=cls(rtol=tol, atol=tol), save="steps", t_span=span)
    step_want = torch.stack([exact(a, x0, span[0], float(s)) for s in steps.ts])
    scale = 1.0 + want.abs().max()
    dense_err = float((sol.xs - want).abs().max()) / scale
    step_err = float((steps.xs - step_want).abs().max()) / scale
    assert dense_err <= 5 * max(step_err, tol), (dense_err, step_err)
    assert step_err < 100 * tol


def test_dop853_dense_output_is_7th_order_and_costs_3_nfe_per_step():
    a, x0 = linear_problem(9, norm=2.0)

    def f(t, x):
        return x @ a.T

    plain = solve(f, x0, solver=DOP853(rtol=1e-10, atol=1e-10))
    one = solve(f, x0, solver=DOP853(rtol=1e-10, atol=1e-10), save_at=[0.5])
    assert one.stats.nfe == plain.stats.nfe + 3 and torch.equal(one.x, plain.x)
    # interpolation error shrinks like h^8 (local) on a single fixed step of size h
    errs = []
    for h in (0.4, 0.2, 0.1):
        sol = solve(f, x0, solver=DOP853(rtol=1.0, atol=1.0, dt0=h), t_span=(1.0, 1.0 - h), save_at=[1.0 - h / 3])
        assert sol.stats.accepted == 1
        errs.append(float((sol.xs[0] - exact(a, x0, 1.0, 1.0 - h / 3)).abs().max()))
    slope = np.polyfit(np.log([0.4, 0.2, 0.1]), np.log(errs), 1)[0]
    assert slope > 7.5, errs


def test_dense_output_costs_no_extra_nfe_with_an_interpolant():
    a, x0 = linear_problem(1)
    plain = solve(lambda t, x: x @ a.T, x0, solver="dopri5")
    dense = solve(lambda t, x: x @ a.T, x0, solver="dopri5", save_at=torch.linspace(1, 0, 50))
    assert dense.stats.nfe == plain.stats.nfe and torch.equal(dense.x, plain.x)


def test_grid_is_taken_as_save_times():
    a, x0 = linear_problem(2)
    g = uniform(10)
    sol = solve(lambda t, x: x @ a.T, x0, solver="tsit5", grid=g)
    assert torch.equal(sol.ts, g)
    assert float((sol.xs[5] - exact(a, x0, 1.0, 0.5)).abs().max()) < 1e-4


@pytest.mark.parametrize("span", DIRECTIONS, ids=["decreasing", "increasing"])
def test_save_steps_records_accepted_steps(span):
    a, x0 = linear_problem(4)
    sol = solve(lambda t, x: x @ a.T, x0, solver="dopri5", save="steps", t_span=span)
    assert sol.ts.numel() == sol.stats.accepted + 1
    assert float(sol.ts[0]) == span[0] and float(sol.ts[-1]) == span[1]
    d = torch.diff(sol.ts) * (1 if span[1] > span[0] else -1)
    assert bool((d > 0).all())
    for t, x in zip(sol.ts.tolist(), sol.xs, strict=True):
        assert float((x - exact(a, x0, span[0], t)).abs().max()) < 1e-4


def test_fsal_nfe_accounting():
    calls = []

    def f(t, x):
        calls.append(float(t))
        return -x

    x0 = torch.ones(3, 2, dtype=torch.float64)
    sol = solve(f, x0, solver=Dopri5(rtol=1e-7, atol=1e-7))
    s = sol.stats
    # f(t0) + Hairer's probe + 6 per attempted step
    assert s.nfe == len(calls) == 2 + 6 * s.steps
    sol = solve(f, x0, solver=Dopri5(rtol=1e-7, atol=1e-7, dt0=0.05))
    assert sol.stats.nfe == 1 + 6 * sol.stats.steps


def test_hermite_dense_output_reuses_the_extra_evaluation():
    """Non-FSAL HeunEuler: f(t1, x1) for Hermite is evaluated once and reused by the next step."""
    a, x0 = linear_problem(5)
    plain = solve(lambda t, x: x @ a.T, x0, solver=HeunEuler(rtol=1e-4, atol=1e-4))
    dense = solve(lambda t, x: x @ a.T, x0, solver=HeunEuler(rtol=1e-4, atol=1e-4), save_at=uniform(40))
    assert torch.equal(dense.x, plain.x)
    assert dense.stats.nfe <= plain.stats.nfe + 1


def test_per_sample_norm_ignores_easy_samples_and_rms_does_not():
    """max over per-sample RMS: adding an all-zero sample changes nothing; the whole-tensor RMS
    is diluted by it and takes fewer, larger steps."""
    a, x0 = linear_problem(6, batch=1)
    padded = torch.cat([x0, torch.zeros_like(x0)])

    def f(t, x):
        return x @ a.T

    alone = solve(f, x0, solver=Dopri5(rtol=1e-9, atol=1e-12))
    both = solve(f, padded, solver=Dopri5(rtol=1e-9, atol=1e-12))
    assert alone.stats == both.stats and torch.equal(alone.x[0], both.x[0])
    rms_alone = solve(f, x0, solver=Dopri5(rtol=1e-9, atol=1e-12, norm="rms"))
    rms_both = solve(f, padded, solver=Dopri5(rtol=1e-9, atol=1e-12, norm="rms"))
    assert rms_both.stats.nfe < rms_alone.stats.nfe


def test_error_norm_formulas():
    err = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    x = torch.zeros(2, 2, dtype=torch.float64)
    # scale = atol = 1: per-sample RMS (sqrt(12.5), 0) -> max sqrt(12.5); whole RMS sqrt(25/4)
    assert float(error_norm(err, x, x, 1e-3, 1.0)) == pytest.approx(12.5**0.5)
    assert float(error_norm(err, x, x, 1e-3, 1.0, norm="rms")) == pytest.approx(2.5)
    x1 = torch.full((2, 2), 10.0, dtype=torch.float64)
    assert float(error_norm(err, x, x1, 0.1, 0.0, norm="rms")) == pytest.approx(2.5)  # scale = 0.1 * 10


def test_one_host_sync_per_step(monkeypatch):
    """The only tensor→host conversion in the loop is the error norm: one per attempted step."""
    count = {"n": 0}
    orig = torch.Tensor.__float__

    def counting(self):
        count["n"] += 1
        return orig(self)

    def forbidden(*args, **kwargs):
        raise AssertionError("unexpected host synchronisation")

    a, x0 = linear_problem(7)
    solver = Dopri5(rtol=1e-6, atol=1e-6, dt0=0.01)
    monkeypatch.setattr(torch.Tensor, "__float__", counting)
    for name in ("item", "tolist", "__bool__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    sol = solve_adaptive(solver, lambda t, x: x @ a.T, x0)
    steps = sol.stats.steps
    monkeypatch.undo()
    assert count["n"] == steps > 5


def test_controller_validation():
    for kwargs in [dict(safety=1.5), dict(factor_min=1.2), dict(factor_max=0.5), dict(beta1=0.0), dict(beta2=-1)]:
        with pytest.raises(InvalidInputError):
            PIController(**kwargs)


def test_controller_factors():
    c = PIController(beta1=1.0, beta2=0.0)
    assert c.accept_factor(0.0, 1.0, 5, False) == 10.0
    assert c.accept_factor(1e-12, 1.0, 5, True) == 1.0  # no growth right after a rejection
    assert c.reject_factor(1e9, 5) == 0.2
    assert c.accept_factor(0.5, 1.0, 5, False) == pytest.approx(0.9 * 0.5 ** (-0.2))


def test_float32_adaptive_solve():
    a, x0 = linear_problem(8)
    sol = solve(lambda t, x: x @ a.T.float(), x0.float(), solver=Tsit5(rtol=1e-4, atol=1e-5))
    assert sol.x.dtype == torch.float32
    assert float((sol.x.double() - exact(a, x0, 1.0, 0.0)).abs().max()) < 1e-3
