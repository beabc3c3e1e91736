"""A user writes solvers against the step API only, then tests them with `check_solver`.

Nothing here comes from our solver implementations: one solver subclasses the public
`solvers.Solver` contract, the other is a plain class that only has ``init`` and ``step``.
"""

from dataclasses import dataclass, field

import torch

from solvers import Solver, SolverState, solve
from solvers.testing import check_solver, check_solver_test, linear_problem


class Ralston3(Solver):
    r"""Ralston's third-order method: $c = (0, \tfrac12, \tfrac34)$, $b = (\tfrac29, \tfrac13, \tfrac49)$.

    Order 3, 3 stages, 3 NFE per step (Ralston 1962, minimum error bound among 3-stage RK3).
    """

    order = 3
    stages = 3
    nfe_per_step = 3

    def step(self, field, t0, t1, x0, state):
        h = t1 - t0
        t = torch.full((), t0, dtype=x0.dtype, device=x0.device)
        k1 = field(t, x0)
        k2 = field(t + 0.5 * h, x0 + 0.5 * h * k1)
        k3 = field(t + 0.75 * h, x0 + 0.75 * h * k2)
        state.nfe += 3
        return x0 + h * (2 / 9 * k1 + 1 / 3 * k2 + 4 / 9 * k3), state


@dataclass
class _History:
    nfe: int = 0
    data: dict = field(default_factory=dict)


class VariableStepAB2:
    r"""Two-step Adams–Bashforth on variable grids, written without the base class.

    $x_{n+1} = x_n + h_n\big[(1 + \tfrac{h_n}{2h_{n-1}})f_n - \tfrac{h_n}{2h_{n-1}}f_{n-1}\big]$;
    the first step (or any step that does not continue the previous one) is a Heun step
    (2 NFE), then 1 NFE per step. Order 2.
    """

    order = 2
    stages = 1
    nfe_per_step = 1
    kind = "ode"
    adaptive = False

    def init(self, field, t0, x0, **options):
        return _History()

    def step(self, field, t0, t1, x0, state):
        h = t1 - t0
        t = torch.full((), t0, dtype=x0.dtype, device=x0.device)
        f0 = field(t, x0)
        state.nfe += 1
        prev = state.data.get("prev")
        if prev is None or prev[2] != t0:  # start (or restart): Heun
            k2 = field(t + h, x0 + h * f0)
            state.nfe += 1
            x1 = x0 + 0.5 * h * (f0 + k2)
        else:
            t_prev, f_prev, _ = prev
            w = h / (2.0 * (t0 - t_prev))
            x1 = x0 + h * ((1.0 + w) * f0 - w * f_prev)
        state.data["prev"] = (t0, f0, t1)
        return x1, state


def test_ralston3_passes_check_solver():
    check_solver(Ralston3())


def test_a_duck_typed_multistep_solver_passes_check_solver():
    check_solver(VariableStepAB2())


def test_user_solvers_run_in_solve():
    p = linear_problem(2, seed=3)
    for s in (Ralston3(), VariableStepAB2()):
        sol = solve(p.field, p.x1, solver=s, grid=p.grid(64))
        assert torch.allclose(sol.x, p.x_end, atol=1e-4)


class NotQuiteRalston3(Ralston3):
    """The same with a typo in one weight (4/9 → 4/10): consistency is lost, order 0."""

    def step(self, field, t0, t1, x0, state):
        h = t1 - t0
        t = torch.full((), t0, dtype=x0.dtype, device=x0.device)
        k1 = field(t, x0)
        k2 = field(t + 0.5 * h, x0 + 0.5 * h * k1)
        k3 = field(t + 0.75 * h, x0 + 0.75 * h * k2)
        state.nfe += 3
        return x0 + h * (2 / 9 * k1 + 1 / 3 * k2 + 4 / 10 * k3), state


def test_a_typo_is_caught_with_the_numbers():
    try:
        check_solver(NotQuiteRalston3())
    except AssertionError as err:
        msg = str(err)
    else:
        raise AssertionError("check_solver accepted a broken solver")
    assert "[order] measured order" in msg and "[polynomial_exactness]" in msg


# the parametrised helper: one line gives one test per solver
test_all_user_solvers = check_solver_test([Ralston3(), VariableStepAB2()], only=["order", "nfe", "time_reversal"])


def test_solver_state_is_the_public_one():
    assert isinstance(Ralston3().init(None, 1.0, torch.zeros(1, 1)), SolverState)
