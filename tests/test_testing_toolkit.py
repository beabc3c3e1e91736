"""The property-testing toolkit tests itself: valid strategies, honest assertions, broken solvers caught.

The solvers here are tiny ones written in this file against the step API, so that these tests
depend on nothing but the toolkit and the Solver contract.
"""

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odeflow.dynamics import ProbabilityFlow, as_time
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from solvers.base import Solver, SolverState
from solvers.testing import (
    CHECKS,
    SolverCheckError,
    assert_exact_for_polynomials,
    assert_matches,
    assert_nfe,
    assert_order,
    assert_strong_order,
    assert_time_reversible_consistency,
    assert_weak_order,
    check_solver,
    check_solver_test,
    default_problems,
    fit_order,
    gbm_problem,
    linear_problem,
    linear_sde_problem,
    parametrize_solvers,
    time_grid,
)
from solvers.testing import strategies as sst
from solvers.testing.problems import Problem, mixture_flow_problem, riccati_problem

F64 = torch.float64


# ------------------------------------------------------------------------------------------------
# tiny reference solvers (and broken ones), written only against the step API
# ------------------------------------------------------------------------------------------------
class TinyRK(Solver):
    """An explicit Runge–Kutta method from its tableau (A lower triangular, weights b, nodes c)."""

    def __init__(self, a, b, c, order, label):
        self.a, self.b, self.c, self.order, self.label = a, b, c, order, label
        self.stages = self.nfe_per_step = len(b)

    def _repr_params(self):
        return {"label": self.label}

    def step(self, field, t0, t1, x0, state):
        h = t1 - t0
        ks = []
        for i in range(self.stages):
            xi = x0
            for j, aij in enumerate(self.a[i]):
                if aij:
                    xi = xi + (h * aij) * ks[j]
            ks.append(field(as_time(t0 + self.c[i] * h, x0), xi))
        x1 = x0
        for bi, k in zip(self.b, ks):
            x1 = x1 + (h * bi) * k
        state.nfe += self.stages
        return x1, state


def euler():
    return TinyRK([[]], [1.0], [0.0], 1, "euler")


def heun():
    return TinyRK([[], [1.0]], [0.5, 0.5], [0.0, 1.0], 2, "heun")


def rk4(a21=0.5):
    return TinyRK([[], [a21], [0, 0.5], [0, 0, 1]], [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0, 0.5, 0.5, 1], 4, f"rk4 a21={a21}")


class MiscountingEuler(TinyRK):
    """Euler that says it evaluated the field twice per step."""

    def __init__(self):
        super().__init__([[]], [1.0], [0.0], 1, "miscounting euler")

    def step(self, field, t0, t1, x0, state):
        x1, state = super().step(field, t0, t1, x0, state)
        state.nfe += 1
        return x1, state


class DirectionBlindEuler(Solver):
    """Euler that always steps towards t = 0 by |t1 − t0| (ignores the direction of the grid)."""

    order = 1

    def step(self, field, t0, t1, x0, state):
        h = -abs(t1 - t0)
        state.nfe += 1
        return x0 + h * field(as_time(t0, x0), x0), state


class BatchMixingEuler(Solver):
    """Euler with a 'stabiliser' that couples the samples of a batch."""

    order = 1

    def step(self, field, t0, t1, x0, state):
        state.nfe += 1
        v = field(as_time(t0, x0), x0)
        return x0 + (t1 - t0) * (v + 1e-3 * (x0 - x0.mean(0))), state


class UpcastingEuler(Solver):
    """Euler that silently returns float64."""

    order = 1

    def step(self, field, t0, t1, x0, state):
        state.nfe += 1
        x = x0.double()
        return x + (t1 - t0) * field(as_time(t0, x), x), state


class InPlaceEuler(Solver):
    """Euler that updates its input tensor in place."""

    order = 1

    def step(self, field, t0, t1, x0, state):
        state.nfe += 1
        x0 += (t1 - t0) * field(as_time(t0, x0), x0)
        return x0, state


class TinyEulerMaruyama(Solver):
    """x + drift·dt + diffusion·dW with dW from the Brownian path given to init (strong order 1 on additive noise)."""

    order = 1.0
    kind = "sde"
    weak_order = 1.0

    def init(self, field, t0, x0, brownian=None, **options):
        if brownian is None:
            raise InvalidInputError("pass brownian=")
        return SolverState(data={"bp": brownian})

    def step(self, sde, t0, t1, x0, state):
        dw = state.data["bp"](t0, t1).to(x0.dtype)
        t = as_time(t0, x0)
        state.nfe += 1
        return x0 + (t1 - t0) * sde.drift(t, x0) + sde.diffusion(t, x0) * dw, state


class TinyDDIM(Solver):
    """DDIM (η = 0): x_t = α_t·x̂0 + σ_t·ε̂ from one prediction at the start of the step."""

    order = 1
    kind = "exponential"
    check_field = True

    def init(self, field, t0, x0, **options):
        if self.check_field and not isinstance(field, ProbabilityFlow):
            raise InvalidInputError(f"DDIM needs a ProbabilityFlow, got {type(field).__name__}")
        return SolverState()

    def step(self, flow, t0, t1, x0, state):
        x0_hat, eps = flow.predict_kinds(as_time(t0, x0), x0, ("x0", "epsilon"))
        state.nfe += 1
        a, s = flow.path.coefficients(torch.tensor(t1, dtype=F64))[:2]
        return a.to(x0.dtype) * x0_hat + s.to(x0.dtype) * eps, state


class OwnNoiseEulerMaruyama(TinyEulerMaruyama):
    """Draws its own noise instead of using the Brownian path (so no strong convergence)."""

    def step(self, sde, t0, t1, x0, state):
        dw = math.sqrt(abs(t1 - t0)) * torch.randn_like(x0)
        t = as_time(t0, x0)
        state.nfe += 1
        return x0 + (t1 - t0) * sde.drift(t, x0) + sde.diffusion(t, x0) * dw, state


# ------------------------------------------------------------------------------------------------
# strategies generate valid problems
# ------------------------------------------------------------------------------------------------
def _assert_exact_solves_field(problem: Problem, t: float) -> None:
    """The exact solution satisfies the ODE: central difference of exact(t) equals field(t, exact(t))."""
    lo, hi = sorted((problem.t_start, problem.t_end))
    t = lo + (hi - lo) * t
    h = 1e-6 * max(hi - lo, 1e-3)
    t = min(max(t, lo + h), hi - h)
    fd = (problem.exact(t + h) - problem.exact(t - h)) / (2 * h)
    y = problem.exact(t)
    v = problem.field(torch.tensor(t, dtype=F64), y)
    scale = 1.0 + float(v.abs().max())
    assert float((fd - v).abs().max()) <= 1e-5 * scale, (problem, t)


def _assert_valid(problem: Problem) -> None:
    assert problem.x1.dtype == F64 and problem.x1.dim() == 2
    assert torch.allclose(problem.exact(problem.t_start), problem.x1, rtol=1e-12, atol=1e-12)
    for t in torch.linspace(problem.t_end, problem.t_start, 5).tolist():
        y = problem.exact(t)
        assert bool(torch.isfinite(y).all())
        assert float(y.abs().max()) <= 1e3 * (1.0 + float(problem.x1.abs().max()))


@given(problem=sst.linear_problems(), t=st.floats(0, 1))
def test_linear_problems_are_valid(problem, t):
    _assert_valid(problem)
    _assert_exact_solves_field(problem, t)
    spectrum = problem.params["spectrum"]
    assert float(spectrum.abs().max()) <= 10.0 and float(spectrum.abs().min()) >= 0.2


@given(problem=sst.linear_problems(stiffness="rotational"))
def test_rotational_problems_preserve_the_norm(problem):
    n1 = problem.x1.norm(dim=1)
    assert torch.allclose(problem.x_end.norm(dim=1), n1, rtol=1e-10)


@given(problem=sst.scalar_problems(), t=st.floats(0, 1))
def test_scalar_problems_are_valid(problem, t):
    _assert_valid(problem)
    _assert_exact_solves_field(problem, t)
    ys = torch.stack([problem.exact(s) for s in torch.linspace(0, 1, 11).tolist()])
    if problem.name == "logistic":
        assert bool(((ys > 0) & (ys < 1)).all())
    else:  # riccati stays 0.35 rad away from the poles of tan
        assert float(ys.abs().max()) <= math.tan(math.pi / 2 - 0.35) + 1e-9


@given(problem=sst.polynomial_problems(), t=st.floats(0, 1))
def test_polynomial_problems_are_valid(problem, t):
    _assert_valid(problem)
    _assert_exact_solves_field(problem, t)


@settings(max_examples=50)
@given(problem=sst.gaussian_flow_problems(), t=st.floats(0, 1))
def test_gaussian_flow_problems_are_valid(problem, t):
    _assert_valid(problem)
    _assert_exact_solves_field(problem, t)
    assert problem.is_flow


@settings(max_examples=50)
@given(problem=sst.gaussian_flow_problems(for_exponential=True), n=st.integers(1, 64))
def test_exponential_problems_have_finite_log_snr_grids(problem, n):
    grid = problem.grid(n)
    lam = problem.path.log_snr(grid)
    assert bool(torch.isfinite(lam).all()) and bool((lam[1:] > lam[:-1]).all())
    assert float(lam.abs().max()) <= 4.0 + 1e-9


@given(path=sst.gaussian_paths(), t=st.floats(0.01, 0.99))
def test_gaussian_paths_are_paths(path, t):
    assert isinstance(path, GaussianPath)
    assert path.log_snr(t) > path.log_snr(min(t + 0.01, 1.0))


@given(grid=sst.grids(1, 64))
def test_grids_are_valid(grid):
    assert grid.dtype == F64 and grid.dim() == 1 and 2 <= grid.numel() <= 65
    assert float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    d = grid[:-1] - grid[1:]
    assert bool((d > 0).all())
    assert float(d.max() / d.min()) <= 4.0 * (grid.numel() - 1) ** 1  # quadratic grids are the least uniform


@given(grid=sst.grids(2, 32, kind="random", t_start=0.2, t_end=0.9))
def test_random_grids_have_bounded_step_ratio_in_either_direction(grid):
    d = grid[1:] - grid[:-1]
    assert bool((d > 0).all()) and float(grid[0]) == 0.2 and float(grid[-1]) == 0.9
    assert float(d.max() / d.min()) <= 3.0 + 1e-9


@settings(max_examples=30)
@given(grid=sst.grids(1, 32, kind="log_snr"))
def test_log_snr_grids_are_valid(grid):
    d = grid[:-1] - grid[1:]
    assert bool((d > 0).all())


@given(x=sst.batched_states(dims=(st.integers(1, 3), 2), dtype=torch.float32))
def test_batched_states(x):
    assert x.dtype == torch.float32 and x.dim() == 3 and x.shape[2] == 2
    assert bool(torch.isfinite(x).all()) and float(x.abs().max()) <= 2.0


@settings(max_examples=20)
@given(problem=sst.sde_problems())
def test_sde_problems_exact_paths_are_consistent(problem):
    """Coarse Brownian increments are sums of fine ones, and the exact path is finite."""
    sample = problem.sample(16, seed=3)
    bp, g = sample.brownian, sample.grid.tolist()
    total = sum(bp(g[i], g[i + 1]) for i in range(16))
    assert torch.allclose(total, bp(g[0], g[-1]), atol=1e-12)
    assert torch.allclose(bp(g[4], g[0]), -bp(g[0], g[4]))
    assert bool(torch.isfinite(sample.exact).all())


def test_strategies_shrink_to_small_readable_cases():
    """Minimal examples are the simplest valid problems, and a failing property shrinks to its boundary."""
    from hypothesis import find

    from odeflow.paths import LinearPath

    p = find(sst.linear_problems(), lambda p: True)
    assert p.name == "linear_well_conditioned" and tuple(p.x1.shape) == (1, 1) and p.params["seed"] == 0
    assert repr(p) == "linear_well_conditioned(spectrum=[1.0], seed=0; batch=1, dim=1, t: 1 -> 0, torch.float64)"
    assert find(sst.gaussian_paths(), lambda p: True) == LinearPath()
    assert find(sst.grids(1, 64), lambda g: True).tolist() == [1.0, 0.0]
    big = find(sst.linear_problems(), lambda p: p.x1.shape[1] >= 3)
    assert big.x1.shape[0] == 1 and big.x1.shape[1] in (3, 4)  # 4: a rotational problem of dim 3 is rounded up
    fast = find(sst.scalar_problems(kind="logistic"), lambda p: p.params["rate"] > 2.5)
    assert fast.params["rate"] == 3.0 and fast.x1.shape == (1, 1)


def test_additive_sde_exact_solution_has_the_right_moments():
    """OU in the stepping direction: mean e^{κτ}x0, variance b²(e^{2κτ} − 1)/(2κ)."""
    p = linear_sde_problem(rate=-1.0, noise_scale=0.5, samples=20000)
    x = p.sample(8, seed=1).exact[-1]
    k, b = -1.0, 0.5
    assert abs(float(x.mean()) - math.exp(k)) < 0.02
    assert abs(float(x.var()) - b * b * math.expm1(2 * k) / (2 * k)) < 0.01


@pytest.mark.parametrize("path", ["vp", "linear"])
def test_mixture_flow_problem_reference_and_predictions(path):
    from odeflow.paths import get_path
    from solvers.testing import run_steps

    p = mixture_flow_problem(get_path(path), seed=5)
    assert torch.equal(p.exact(p.t_start), p.x1)
    x, _ = run_steps(rk4(), p.field, p.x1, p.grid(160))
    assert torch.allclose(x, p.x_end, rtol=1e-7, atol=1e-7)  # scipy DOP853 reference vs RK4
    t = 0.5 * (p.t_start + p.t_end)
    x0, eps, v = p.field.predict_kinds(torch.tensor(t, dtype=F64), p.x1, ("x0", "epsilon", "velocity"))
    a, s, da, ds = (float(c) for c in p.path.coefficients(torch.tensor(t, dtype=F64)))
    assert torch.allclose(a * x0 + s * eps, p.x1, atol=1e-12)
    assert torch.allclose(da * x0 + ds * eps, v, atol=1e-12)


def test_brownian_path_refuses_times_off_its_grid():
    bp = linear_sde_problem(samples=4).sample(8).brownian
    with pytest.raises(InvalidInputError, match="grid"):
        bp(1.0, 0.3)


def test_time_grid_rejects_bad_input():
    with pytest.raises(InvalidInputError, match="grid kind"):
        time_grid(4, "cubic")
    with pytest.raises(InvalidInputError, match="path"):
        time_grid(4, "log_snr")
    with pytest.raises(InvalidInputError, match="finite log-SNR"):
        from odeflow.paths import LinearPath

        time_grid(4, "log_snr", path=LinearPath())


def test_problem_constructors_reject_bad_input():
    with pytest.raises(InvalidInputError, match="linear variant"):
        linear_problem(2, "very_stiff")
    with pytest.raises(InvalidInputError, match="pole"):
        riccati_problem(3.0)


# ------------------------------------------------------------------------------------------------
# order fitting
# ------------------------------------------------------------------------------------------------
@given(p=st.floats(0.5, 6.0), c=st.floats(1e-3, 1e3))
def test_fit_order_recovers_a_power_law(p, c):
    steps = [8, 16, 32, 64]
    res = fit_order(steps, [c * n**-p for n in steps], floor=0.0)
    assert abs(res.order - p) < 1e-9


def test_fit_order_drops_the_float_floor_and_the_pre_asymptotic_points():
    steps = [4, 8, 16, 32, 64]
    errors = [1.0, 2e-4, 1.25e-5, 1e-14, 1e-15]  # 16/8 → order 4, then round-off
    res = fit_order(steps, errors)
    assert res.fitted == [0, 1, 2] or res.fitted == [1, 2]
    res = fit_order(steps, [1e-2 * n**-2 for n in steps])
    assert res.fitted == [2, 3, 4] and abs(res.order - 2) < 1e-9
    assert math.isinf(fit_order(steps, [1e-15] * 5).order)
    assert math.isnan(fit_order(steps, [math.inf] * 5).order)


# ------------------------------------------------------------------------------------------------
# assertions and check_solver on correct solvers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [euler, heun], ids=["euler", "heun"])
def test_check_solver_passes_correct_solvers(make):
    assert check_solver(make()) == list(CHECKS["ode"])


@pytest.mark.slow
def test_check_solver_passes_rk4():
    check_solver(rk4())


@settings(max_examples=15)
@given(problem=sst.linear_problems(dim=st.integers(2, 4)))
def test_heun_has_order_two_on_random_linear_systems(problem):
    assert_order(heun(), 2, problems=[problem], upper="each")


@settings(max_examples=5)
@given(problem=sst.gaussian_flow_problems(dim=2, batch=2))
def test_heun_has_order_two_on_gaussian_flows(problem):
    assert_order(heun(), 2, problems=[problem], steps=(16, 32, 64), upper="each")


@given(problem=sst.polynomial_problems(degree=st.integers(0, 4)), grid=sst.grids(1, 12))
@settings(max_examples=50)
def test_rk4_is_exact_on_drawn_polynomials(problem, grid):
    from solvers.testing import run_steps

    x, _ = run_steps(rk4(), problem.field, problem.x1, grid)
    assert torch.allclose(x, problem.x_end, rtol=1e-11, atol=1e-11)


def test_exactness_degree_is_tight_for_heun():
    assert_exact_for_polynomials(heun(), 2)
    with pytest.raises(SolverCheckError, match="polynomial_exactness"):
        assert_exact_for_polynomials(heun(), 3)


def test_assert_nfe_returns_counts():
    seen = assert_nfe(rk4())
    assert seen == {8: (32, 32), 16: (64, 64)}


def test_assert_matches():
    assert_matches(rk4(), rk4(), tol=0.0)
    with pytest.raises(SolverCheckError) as err:
        assert_matches(rk4(), heun(), tol=1e-10)
    assert "[matches]" in str(err.value) and "max relative difference" in str(err.value)


def test_sde_assertions_on_euler_maruyama():
    res = assert_strong_order(TinyEulerMaruyama(), 1.0)
    assert abs(res[0].order - 1.0) < 0.25
    assert_weak_order(TinyEulerMaruyama(), 1.0)
    # multiplicative noise: Euler–Maruyama drops to strong order 1/2
    res = assert_strong_order(TinyEulerMaruyama(), 0.5, problems=[gbm_problem()])
    assert abs(res[0].order - 0.5) < 0.25
    check_solver(TinyEulerMaruyama())


def test_check_solver_on_an_exponential_integrator():
    names = check_solver(TinyDDIM())
    assert names == list(CHECKS["exponential"])
    assert_matches(TinyDDIM(), euler(), tol=1e-12, problems=[default_problems()[-1]])  # DDIM = Euler on the linear path


# ------------------------------------------------------------------------------------------------
# broken solvers are caught, with the property named and the numbers shown
# ------------------------------------------------------------------------------------------------
def _failures(solver, **kwargs):
    with pytest.raises(SolverCheckError) as err:
        check_solver(solver, **kwargs)
    return err.value, str(err.value)


def test_rk4_with_one_wrong_coefficient_loses_its_order():
    err, msg = _failures(rk4(a21=0.6))
    assert [f.name for f in err.failures] == ["order"]
    assert "failed 1 of 8 property: order" in msg
    assert "measured order 0.9" in msg or "measured order 1.0" in msg
    assert "expected at least 4 - 0.3" in msg
    # the error table: step counts, errors, local orders
    assert "steps       error  local order" in msg and "   128 " in msg


def test_euler_that_miscounts_nfe():
    err, msg = _failures(MiscountingEuler())
    assert "nfe" in [f.name for f in err.failures]
    assert "8 steps: the solver reports state.nfe = 16, but the field was evaluated 8 times" in msg
    assert "declared nfe_per_step = 1" in msg or "stats.nfe = 16" in msg


def test_solver_that_ignores_the_grid_direction():
    err, msg = _failures(DirectionBlindEuler())
    names = [f.name for f in err.failures]
    assert "time_reversal" in names
    assert "increasing time does not converge" in msg
    assert "decreasing: 8 steps" in msg and "increasing: 8 steps" in msg


def test_batch_mixing_upcasting_and_in_place_solvers():
    err, msg = _failures(BatchMixingEuler())
    assert "batch_consistency" in [f.name for f in err.failures]
    assert "differs from solving each sample alone" in msg
    err, msg = _failures(UpcastingEuler(), only=["float32"])
    assert "a float32 state came back as torch.float64" in msg
    err, msg = _failures(InPlaceEuler(), only=["interface"])
    assert "modified its input state in place" in msg


def test_one_error_lists_every_failed_property():
    class TwiceBroken(DirectionBlindEuler):
        def step(self, field, t0, t1, x0, state):
            x, state = super().step(field, t0, t1, x0, state)
            state.nfe += 2
            return x, state

    err, msg = _failures(TwiceBroken())
    names = [f.name for f in err.failures]
    assert {"nfe", "time_reversal"} <= set(names)
    assert msg.count("\n[") == len(names)


def test_sde_solver_with_its_own_noise_fails_strong_order_and_determinism():
    err, msg = _failures(OwnNoiseEulerMaruyama())
    names = [f.name for f in err.failures]
    assert "strong_order" in names and "determinism" in names
    assert "measured strong order" in msg


def test_exponential_integrator_that_accepts_plain_fields():
    lax = TinyDDIM()
    lax.check_field = False
    err, msg = _failures(lax, only=["rejects_plain_field"])
    assert "a plain field(t, x) raised AttributeError" in msg and "InvalidInputError" in msg


def test_declared_order_too_low_is_reported():
    with pytest.raises(SolverCheckError, match="declared order too low"):
        assert_order(heun(), 1)


def test_check_solver_rejects_bad_arguments():
    with pytest.raises(InvalidInputError, match="kind"):
        check_solver(euler(), kind="pde")
    with pytest.raises(InvalidInputError, match="property"):
        check_solver(euler(), skip=["speed"])

    class NoOrder:
        def init(self, field, t0, x0, **o):
            return SolverState()

        def step(self, field, t0, t1, x0, state):
            return x0, state

    with pytest.raises(InvalidInputError, match="order="):
        check_solver(NoOrder())


def test_time_reversal_passes_for_correct_solvers_on_drawn_problems():
    assert_time_reversible_consistency(heun(), problems=default_problems()[:2])


# ------------------------------------------------------------------------------------------------
# pytest helpers, optional hypothesis
# ------------------------------------------------------------------------------------------------
@parametrize_solvers([euler(), heun()])
def test_parametrize_solvers_helper(solver):
    assert isinstance(solver, TinyRK)


test_check_solver_test_helper = check_solver_test([euler()], only=["order", "nfe"])


@pytest.mark.slow
def test_importing_solvers_does_not_need_hypothesis():
    code = (
        "import sys; import solvers, solvers.testing; "
        "assert 'hypothesis' not in sys.modules, 'hypothesis imported'; "
        "from solvers.testing import check_solver, linear_problem; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
