"""Adams–Bashforth: classic coefficients, empirical order on uniform and non-uniform grids in both
directions, polynomial exactness, exact NFE, restart on a broken history, bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow.errors import InvalidInputError
from solvers import get_solver, solve
from solvers.grids import quadratic, uniform
from solvers.multistep import AB2, AB3, AB4, AdamsBashforth, adams_bashforth_coefficients


def test_uniform_grid_coefficients_are_the_classic_ones():
    classic = {
        2: [Fraction(3, 2), Fraction(-1, 2)],
        3: [Fraction(23, 12), Fraction(-16, 12), Fraction(5, 12)],
        4: [Fraction(55, 24), Fraction(-59, 24), Fraction(37, 24), Fraction(-9, 24)],
    }
    for k, want in classic.items():
        for h in (0.1, -0.05):  # both directions
            times = [0.5 - j * h for j in range(k)]
            got = adams_bashforth_coefficients(times, 0.5 + h)
            assert np.allclose(got, [float(w) for w in want], atol=1e-12)


@settings(max_examples=30)
@given(
    steps=st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4),
    k=st.integers(2, 4),
    direction=st.sampled_from([1.0, -1.0]),
)
def test_variable_coefficients_integrate_polynomials_exactly(steps, k, direction):
    """sum_j beta_j p(t_{n-j}) h = integral of p over [t_n, t_{n+1}] for deg p <= k - 1."""
    times = [0.0]
    for h in steps[: k - 1]:
        times.append(times[-1] - direction * h)  # the history lies behind t_n
    t_next = direction * steps[-1]
    betas = adams_bashforth_coefficients(times, t_next)
    for deg in range(k):
        integral = t_next ** (deg + 1) / (deg + 1)
        quad = t_next * sum(b * t**deg for b, t in zip(betas, times, strict=True))
        assert abs(quad - integral) < 1e-9 * max(1.0, abs(integral)) * 10 ** (deg)


def linear_problem(seed: int, dim: int, norm: float = 1.5):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim))
    a *= norm / np.linalg.norm(a, 2)
    return torch.tensor(a), torch.tensor(rng.standard_normal((3, dim)))


GRID_MAKERS = {"uniform": uniform, "quadratic": quadratic}


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("grid_name", list(GRID_MAKERS))
@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(2, 4), forward=st.booleans())
def test_empirical_order_on_random_linear_systems(k, grid_name, seed, dim, forward):
    a, x0 = linear_problem(seed, dim)
    t_start, t_end = (0.0, 1.0) if forward else (1.0, 0.0)
    ref = x0 @ torch.linalg.matrix_exp(a * (t_end - t_start)).T
    steps = [32, 64, 128, 256]
    make = GRID_MAKERS[grid_name]
    errs = []
    for n in steps:
        sol = solve(lambda t, x: x @ a.T, x0, solver=AdamsBashforth(k), grid=make(n, t_start, t_end))
        errs.append(float((sol.x - ref).abs().max()))
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert min(errs) > 1e-13
    assert abs(slope - k) <= 0.3, (slope, errs)


@pytest.mark.parametrize("k", [2, 3, 4])
@settings(max_examples=20)
@given(coeffs=st.lists(st.floats(-3, 3), min_size=4, max_size=4), n=st.integers(4, 9), forward=st.booleans())
def test_exact_on_polynomials_up_to_order(k, coeffs, n, forward):
    c = coeffs[:k]

    def field(t, x):
        return sum(ck * t**i for i, ck in enumerate(c)) * torch.ones_like(x)

    def anti(t):
        return sum(ck * t ** (i + 1) / (i + 1) for i, ck in enumerate(c))

    t_start, t_end = (0.0, 1.0) if forward else (1.0, 0.0)
    g = quadratic(n, t_start, t_end)  # non-uniform on purpose
    x = solve(field, torch.zeros(2, 1, dtype=torch.float64), solver=AdamsBashforth(k), grid=g).x
    assert torch.allclose(x, torch.full_like(x, anti(t_end) - anti(t_start)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("k, start_stages", [(2, 2), (3, 3), (4, 4)])
def test_nfe_is_exact(k, start_stages):
    calls = []

    def f(t, x):
        calls.append(float(t))
        return -x

    n = 10
    sol = solve(f, torch.ones(2, 2), solver=AdamsBashforth(k), grid=uniform(n))
    assert sol.stats.nfe == len(calls) == (k - 1) * start_stages + (n - k + 1)


def test_a_lower_order_start_would_cap_the_order():
    """Sanity check of the design: with the RK start replaced by Euler, AB4 drops to order ~2."""

    class AB4EulerStart(AdamsBashforth):
        def __init__(self):
            super().__init__(4)
            from solvers.runge_kutta import Euler

            self.starter = Euler.tableau

    a, x0 = linear_problem(1, 3)
    ref = x0 @ torch.linalg.matrix_exp(-a).T
    steps = [32, 64, 128, 256]
    slopes = {}
    for cls in (AB4EulerStart, AB4):
        xs = [solve(lambda t, x: x @ a.T, x0, solver=cls(), grid=uniform(n)).x for n in steps]
        errs = [float((x - ref).abs().max()) for x in xs]
        slopes[cls] = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slopes[AB4EulerStart] - 2) < 0.3 and abs(slopes[AB4] - 4) < 0.3


def test_step_api_restarts_when_the_history_is_broken():
    f_calls = []

    def f(t, x):
        f_calls.append(float(t))
        return -x

    s = AB3()
    x = torch.ones(1, 1, dtype=torch.float64)
    st_ = s.init(f, 1.0, x)
    for t0, t1 in [(1.0, 0.9), (0.9, 0.8), (0.8, 0.7)]:
        x, st_ = s.step(f, t0, t1, x, st_)
    assert st_.nfe == 3 + 3 + 1
    x, st_ = s.step(f, 0.5, 0.4, x, st_)  # jump: restart with an RK3 step
    assert st_.nfe == 7 + 3


def test_registered_names_and_attributes():
    assert type(get_solver("adams_bashforth")) is AdamsBashforth and get_solver("adams_bashforth").order == 2
    assert get_solver("adams_bashforth", order=4).order == 4
    for name, cls, k in [("ab2", AB2, 2), ("ab3", AB3, 3), ("ab4", AB4, 4)]:
        s = get_solver(name)
        assert type(s) is cls and s.order == k == cls.order and s.nfe_per_step == 1
    assert "NFE" in AdamsBashforth.__doc__ and "Order" in AdamsBashforth.__doc__


@pytest.mark.parametrize("order", [1, 5, 2.0, True, "2"])
def test_bad_order(order):
    with pytest.raises(InvalidInputError, match="2, 3 or 4"):
        AdamsBashforth(order)
