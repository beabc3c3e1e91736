"""Every built-in solver goes through `solvers.testing.check_solver` at its declared order.

The registry is read at collection time, so a newly registered solver is checked without
touching this file. What applies per kind (see `solvers.testing.check`):

- ``ode`` fixed-step methods (Runge–Kutta, Adams–Bashforth): the full suite — order on five
  analytic problems, exactness on polynomials of degree ⌊order⌋, exact NFE, both time
  directions, batch independence, float32, `solve` agreement;
- ``ode`` adaptive embedded pairs (HeunEuler, Bosh3, Dopri5, Tsit5, DOP853): the same suite with
  the step API on fixed grids (the propagated order), plus ``adaptive_accuracy`` (their own
  tolerances, both directions, honest NFE) instead of the fixed-grid `solve` check;
- whole-solve backends (``scipy``, ``torchdiffeq`` with an adaptive method): no order exists —
  interface, NFE accounting, float32 and ``adaptive_accuracy``; torchdiffeq with a fixed method
  gets the full suite;
- ``exponential`` (DDIM, DPM-Solver, DPM-Solver++, UniPC): order on Gaussian-mixture PF-ODEs on
  log-SNR grids, NFE, both directions, batch, float32, `solve`, and refusing a plain field;
- ``sde`` (Euler–Maruyama, stochastic Heun): strong order on additive noise (their
  ``strong_order_additive``), weak order, NFE (drift calls), float32, determinism.
"""

import pytest

import solvers
from odeflow.errors import InvalidInputError
from solvers.backends import TorchDiffEq
from solvers.base import SOLVERS
from solvers.dpm_solver import DPMSolver, DPMSolverPP
from solvers.sde import EulerMaruyama, SDEHeun
from solvers.testing import (
    CHECKS,
    assert_strong_order,
    assert_weak_order,
    check_solver,
    gbm_problem,
    parametrize_solvers,
)
from solvers.unipc import UniPC

NAMES = solvers.solver_names()


def test_the_registry_is_populated_with_known_kinds():
    assert len(NAMES) >= 20
    for name in NAMES:
        assert getattr(SOLVERS[name](), "kind", "ode") in CHECKS, name


@pytest.mark.parametrize("name", NAMES)
def test_registered_solver_passes_check_solver(name):
    check_solver(SOLVERS[name]())


# non-default configurations, each at the order it declares
EXTRA = [
    DPMSolver(order=1),
    DPMSolver(order=3),
    DPMSolverPP(order=3),
    DPMSolverPP(order=3, warmup="singlestep"),
    DPMSolverPP(order=2, multistep=False),
    DPMSolverPP(order=3, multistep=False),
    UniPC(order=1),
    UniPC(order=2, variant="bh1"),
    UniPC(order=3, lower_order_final=False),
    UniPC(order=3, warmup="singlestep", lower_order_final=False),
]

FIXED_BACKENDS = [
    pytest.param(TorchDiffEq(method="rk4"), id="torchdiffeq-rk4"),
    pytest.param(TorchDiffEq(method="midpoint"), id="torchdiffeq-midpoint"),
]


@pytest.mark.slow
@parametrize_solvers(EXTRA)
def test_other_configurations_pass_check_solver(solver):
    check_solver(solver)


@pytest.mark.slow
@pytest.mark.parametrize("solver", FIXED_BACKENDS)
def test_fixed_method_backends_pass_check_solver(solver):
    check_solver(solver)


def test_fixed_method_backends_declare_their_real_cost():
    from solvers.testing import assert_nfe

    for method, per_step in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        solver = TorchDiffEq(method=method)
        assert solver.nfe_per_step == per_step
        assert_nfe(solver, per_step=per_step)  # counted field calls equal state.nfe


def test_unipc3_lower_order_final_caps_the_order():
    """diffusers' UniPC rule (kept for compatibility) runs the last two steps at orders 1 and 2 on
    every grid, so UniPC-3's global order drops from 4 towards 2 (2.3-2.7 at 64-256 steps on
    mixture data); ``lower_order_final=False`` reaches 4 (checked in EXTRA above)."""
    check_solver(UniPC(order=3), order=2, tol=0.8, only=["order"])


def test_euler_maruyama_strong_order_half_on_multiplicative_noise():
    (res,) = assert_strong_order(EulerMaruyama(), 0.5, problems=[gbm_problem()])
    assert abs(res.order - 0.5) <= 0.25


def test_sde_heun_orders_on_additive_noise_and_refuses_multiplicative_noise():
    assert_strong_order(SDEHeun(), 1.0)
    (weak,) = assert_weak_order(SDEHeun(), 1.0)
    assert weak.order > 1.7  # stochastic Heun is weak order 2 on linear additive noise
    p = gbm_problem(samples=4)
    with pytest.raises(InvalidInputError, match="additive"):
        SDEHeun().init(p.sde, 1.0, p.x1, seed=0)
