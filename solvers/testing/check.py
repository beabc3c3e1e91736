"""`check_solver`: the whole property suite for one solver, one error listing every failure.

What runs, by kind (``solver.kind`` unless given):

| property | ode | exponential | sde |
|---|---|---|---|
| ``interface``: attributes, ``init``/``step`` return types, shape/dtype kept, input not mutated | ✓ | ✓ | ✓ |
| ``order``: `assert_order` at the declared (or given) order | ✓ | ✓ (Gaussian PF-ODEs, log-SNR grids) | |
| ``polynomial_exactness``: `assert_exact_for_polynomials` at degree ⌊order⌋ | ✓ | | |
| ``nfe``: `assert_nfe` (exact accounting, steady-state cost) | ✓ | ✓ | ✓ (drift calls) |
| ``time_reversal``: `assert_time_reversible_consistency` | ✓ | ✓ | |
| ``batch_consistency``: a batch gives what its rows give alone | ✓ | ✓ | |
| ``float32``: float32 in, float32 out, close to float64 | ✓ | ✓ | ✓ |
| ``solve``: `solvers.solve` agrees with the step loop, ``stats.nfe`` honest (fixed-step only) | ✓ | ✓ | |
| ``rejects_plain_field``: a non-`ProbabilityFlow` field raises `InvalidInputError` | | ✓ | |
| ``strong_order`` / ``weak_order``: `assert_strong_order`, `assert_weak_order` | | | ✓ |
| ``determinism``: the same Brownian path gives the same result | | | ✓ |

Adaptive solvers (``adaptive = True``) are checked through the same step API on fixed grids —
an embedded pair is measured as the fixed-step method of its propagated order — plus
``adaptive_accuracy``: `solve` with the solver's own tolerances on two problems, both time
directions, lands within ``100 × (atol + rtol·|x|)`` of the exact solution and reports honest NFE.

Whole-solve backends (a ``solve_full`` method: `solvers.backends.SciPy`, ``TorchDiffEq`` with an
adaptive method) choose their own steps even inside one `step`, so neither an order nor a
per-step cost exists: they get ``interface``, ``nfe`` (reported = counted, no steady-state
cost), ``float32`` and ``adaptive_accuracy``. A backend with a fixed-grid method
(``TorchDiffEq(method="rk4")``, ``fixed = True``) gets the full ODE suite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from odeflow.errors import InvalidInputError
from solvers.testing._drive import counting, run_steps
from solvers.testing.assertions import (
    PropertyFailure,
    SolverCheckError,
    _describe,
    _rel_error,
    assert_exact_for_polynomials,
    assert_nfe,
    assert_order,
    assert_strong_order,
    assert_time_reversible_consistency,
    assert_weak_order,
)
from solvers.testing.problems import (
    Problem,
    default_problems,
    default_sde_problems,
    linear_problem,
    logistic_problem,
)

__all__ = ["check_solver", "CHECKS", "KINDS", "parametrize_solvers", "check_solver_test", "assert_adaptive_accuracy"]

KINDS: tuple[str, ...] = ("ode", "exponential", "sde")

#: the properties `check_solver` runs for each kind (see the module docstring)
CHECKS: dict[str, tuple[str, ...]] = {
    "ode": ("interface", "order", "polynomial_exactness", "nfe", "time_reversal", "batch_consistency", "float32",
            "solve"),
    "exponential": ("interface", "order", "nfe", "time_reversal", "batch_consistency", "float32", "solve",
                    "rejects_plain_field"),
    "sde": ("interface", "strong_order", "weak_order", "nfe", "float32", "determinism"),
}


def _fail(solver: Any, name: str, message: str) -> None:
    raise SolverCheckError(solver, [PropertyFailure(name, message)])


# --------------------------------------------------------------------------------------------
# the individual checks that are not public assertions
# --------------------------------------------------------------------------------------------
def _base_problem(kind: str) -> Problem:
    return default_problems("exponential" if kind == "exponential" else "ode")[0]


def _run_for_kind(solver: Any, kind: str, problem: Any, n: int, x: torch.Tensor | None = None,
                  dtype: torch.dtype | None = None) -> tuple[torch.Tensor, Any]:
    if kind == "sde":
        sample = problem.sample(n)
        bp = sample.brownian if dtype is None else sample.brownian.to(dtype)
        x0 = problem.x1[:8] if x is None else x
        from solvers.testing.problems import GridBrownianPath  # noqa: PLC0415

        bp = GridBrownianPath(bp.times, bp.w[:, : x0.shape[0]])
        return run_steps(solver, problem.sde, x0 if dtype is None else x0.to(dtype), sample.grid, brownian=bp)
    x0 = problem.x1 if x is None else x
    return run_steps(solver, problem.field, x0 if dtype is None else x0.to(dtype), problem.grid(n))


def _check_interface(solver: Any, kind: str) -> None:
    bad = []
    for attr, ok, allowed in (
        ("order", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0"),
        ("stages", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1"),
        ("nfe_per_step", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an int >= 0"),
        ("adaptive", lambda v: isinstance(v, bool), "a bool"),
        ("kind", lambda v: v in KINDS, f"one of {KINDS}"),
    ):
        if hasattr(solver, attr) and not ok(getattr(solver, attr)):
            bad.append(f"attribute {attr} = {getattr(solver, attr)!r} must be {allowed}")
    for name in ("init", "step"):
        if not callable(getattr(solver, name, None)):
            bad.append(f"missing method {name}(...) of the step API")
    if bad:
        _fail(solver, "interface", "\n    ".join(["the solver does not follow the Solver contract:", *bad]))
    problem = default_sde_problems()[0] if kind == "sde" else _base_problem(kind)
    x_in = (problem.x1[:8] if kind == "sde" else problem.x1).clone()
    x_copy = x_in.clone()
    field = problem.sde if kind == "sde" else problem.field
    grid = problem.sample(4).grid if kind == "sde" else problem.grid(4)
    opts = {"brownian": problem.sample(4).brownian} if kind == "sde" else {}
    if kind == "sde":
        from solvers.testing.problems import GridBrownianPath  # noqa: PLC0415

        opts["brownian"] = GridBrownianPath(opts["brownian"].times, opts["brownian"].w[:, :8])
    from solvers.solve import accepts_grid  # noqa: PLC0415

    if accepts_grid(solver):
        opts["grid"] = grid.tolist()
    try:
        state = solver.init(field, float(grid[0]), x_in, **opts)
        nfe0 = getattr(state, "nfe", None)
        if not isinstance(nfe0, int):
            bad.append(f"init must return a state with an int attribute nfe, got {type(state).__name__} "
                       f"with nfe = {nfe0!r}")
        x = x_in
        last = nfe0 if isinstance(nfe0, int) else 0
        for i in range(len(grid) - 1):
            out = solver.step(field, float(grid[i]), float(grid[i + 1]), x, state)
            if not (isinstance(out, tuple) and len(out) == 2):
                bad.append(f"step must return a pair (x_new, state), got {type(out).__name__}")
                break
            x, state = out
            if not isinstance(x, torch.Tensor) or x.shape != x_in.shape or x.dtype != x_in.dtype:
                got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
                bad.append(f"step must return a tensor shaped like x {tuple(x_in.shape)} {x_in.dtype}, got {got}")
                break
            nfe = getattr(state, "nfe", None)
            if not isinstance(nfe, int) or nfe < last:
                bad.append(f"state.nfe must be a non-decreasing int, got {nfe!r} after {last!r}")
                break
            last = nfe
        else:
            if not bool(torch.isfinite(x).all()):
                bad.append(f"non-finite result after 4 steps on {problem!r}")
    except Exception as exc:  # noqa: BLE001
        bad.append(f"the step API raised {type(exc).__name__} on {problem!r}: {exc}")
    if not torch.equal(x_in, x_copy):
        bad.append("the solver modified its input state in place")
    if bad:
        _fail(solver, "interface", "\n    ".join(["the solver does not follow the Solver contract:", *bad]))


def _check_batch_consistency(solver: Any, kind: str, tol: float = 1e-10) -> None:
    problem = _base_problem(kind)
    n = 8
    x_all, _ = run_steps(solver, problem.field, problem.x1, problem.grid(n))
    rows = [run_steps(solver, problem.field, problem.x1[i : i + 1], problem.grid(n))[0] for i in range(len(problem.x1))]
    diff = _rel_error(x_all, torch.cat(rows))
    if not diff <= tol:
        _fail(solver, "batch_consistency",
              f"solving a batch of {len(problem.x1)} together differs from solving each sample alone by "
              f"{diff:.3e} (relative) > {tol:g} on {problem!r}: samples must not influence each other")


def _check_float32(solver: Any, kind: str, tol: float = 1e-4) -> None:
    problem = default_sde_problems()[0] if kind == "sde" else _base_problem(kind)
    n = 16
    x64, _ = _run_for_kind(solver, kind, problem, n)
    x32, _ = _run_for_kind(solver, kind, problem, n, dtype=torch.float32)
    if not isinstance(x32, torch.Tensor) or x32.dtype != torch.float32:
        got = x32.dtype if isinstance(x32, torch.Tensor) else type(x32).__name__
        _fail(solver, "float32", f"a float32 state came back as {got}; keep the state's dtype")
    diff = _rel_error(x32, x64)
    if not diff <= tol:
        _fail(solver, "float32", f"float32 result differs from float64 by {diff:.3e} (relative) > {tol:g} "
                                 f"after {n} steps on {problem!r}")


def _check_solve(solver: Any, kind: str) -> None:
    from solvers.solve import solve  # noqa: PLC0415 - keep the toolkit importable on its own

    problem = _base_problem(kind)
    grid = problem.grid(8)
    x_loop, _ = run_steps(solver, problem.field, problem.x1, grid)
    counted = counting(problem.field)
    sol = solve(counted, problem.x1, solver=solver, grid=grid)
    bad = []
    diff = _rel_error(sol.x, x_loop)
    if not diff <= 1e-12:
        bad.append(f"solve() returned a state {diff:.3e} away from the step loop's")
    if sol.stats.nfe != counted.calls:
        bad.append(f"solve() reports stats.nfe = {sol.stats.nfe}, the field was evaluated {counted.calls} times")
    if sol.stats.steps != 8:
        bad.append(f"solve() reports {sol.stats.steps} steps on a grid of 8")
    if bad:
        _fail(solver, "solve", f"on {problem!r}: " + "; ".join(bad))


def _check_rejects_plain_field(solver: Any) -> None:
    problem = linear_problem(2, seed=0)
    try:
        run_steps(solver, problem.field, problem.x1, problem.grid(2))
    except InvalidInputError:
        return
    except Exception as exc:  # noqa: BLE001
        _fail(solver, "rejects_plain_field", f"a plain field(t, x) raised {type(exc).__name__} ({exc}); an "
              "exponential integrator must raise odeflow.errors.InvalidInputError saying it needs a ProbabilityFlow")
    _fail(solver, "rejects_plain_field", "a plain field(t, x) was accepted; an exponential integrator needs a "
          "ProbabilityFlow (it reads the path and asks for x0/eps) and must raise InvalidInputError")


def _check_determinism(solver: Any) -> None:
    problem = default_sde_problems()[0]
    a, _ = _run_for_kind(solver, "sde", problem, 8)
    b, _ = _run_for_kind(solver, "sde", problem, 8)
    if not torch.equal(a, b):
        _fail(solver, "determinism", f"two solves with the same Brownian path differ by {_rel_error(a, b):.3e} "
              f"on {problem!r}: randomness must come from the Brownian path only")


def assert_adaptive_accuracy(
    solver: Any, *, problems: Sequence[Problem] | None = None, factor: float = 100.0
) -> None:
    r"""For an adaptive solver: `solvers.solve` with the solver's own ``rtol``/``atol`` lands within
    ``factor`` × $(atol + rtol\,\|x\|_\infty)$ of the exact solution, in both time directions, and
    ``stats.nfe`` equals the number of field evaluations made."""
    from solvers.solve import solve  # noqa: PLC0415

    rtol = float(getattr(solver, "rtol", 1e-6))
    atol = float(getattr(solver, "atol", 1e-6))
    if problems is None:
        problems = [linear_problem(3, "well_conditioned", seed=21), logistic_problem(2.0, seed=22)]
    bad = []
    for p in problems:
        for prob in (p, p.reversed()):
            counted = counting(prob.field)
            try:
                sol = solve(counted, prob.x1, solver=solver, t_span=(prob.t_start, prob.t_end))
            except Exception as exc:  # noqa: BLE001
                bad.append(f"solve raised {type(exc).__name__} on {prob!r}: {exc}")
                continue
            ref = prob.x_end
            err = float((sol.x.double() - ref.double()).abs().max())
            bound = factor * (atol + rtol * float(ref.abs().max()))
            if not err <= bound:
                bad.append(f"error {err:.3e} > {factor:g}·(atol + rtol·|x|) = {bound:.3e} on {prob!r}")
            if sol.stats.nfe != counted.calls:
                bad.append(f"stats.nfe = {sol.stats.nfe} but the field was evaluated {counted.calls} times on {prob!r}")
    if bad:
        _fail(solver, "adaptive_accuracy", f"adaptive solve with rtol={rtol:g}, atol={atol:g}:\n    "
              + "\n    ".join(bad))


def _is_tolerance_driven(solver: Any) -> bool:
    """A whole-solve backend (``solve_full``) whose method picks its own steps (scipy, torchdiffeq's
    dopri5 …): each `step` is an adaptive solve over ``[t0, t1]``, so orders and per-step costs
    are those of its tolerance, not of a method."""
    return callable(getattr(solver, "solve_full", None)) and not getattr(solver, "fixed", False)


# --------------------------------------------------------------------------------------------
# check_solver
# --------------------------------------------------------------------------------------------
def check_solver(
    solver: Any,
    *,
    order: float | None = None,
    kind: str | None = None,
    tol: float | None = None,
    weak_order: float | None = None,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> list[str]:
    """Run every applicable property on ``solver`` and raise ONE `SolverCheckError` listing each failure.

    Parameters
    ----------
    solver: anything with the step API (``init``, ``step``; a `solvers.Solver` or a duck-typed
        object).
    order: the order to check (default ``solver.order``; for SDE solvers the strong order on
        additive noise, default ``solver.strong_order_additive`` or ``solver.order``).
    kind: ``"ode"``, ``"exponential"`` or ``"sde"`` (default ``solver.kind``, else ``"ode"``).
    tol: tolerance on measured orders (default 0.3; 0.25 for SDE strong orders).
    weak_order: the weak order to check (SDE; default ``solver.weak_order`` or 1), one-sided.
    skip / only: property names to leave out / to run exclusively (see `CHECKS`).

    Returns the names of the properties that ran (and passed). Typical use in pytest::

        def test_my_solver():
            check_solver(MySolver())
    """
    kind = kind if kind is not None else (getattr(solver, "kind", None) or "ode")
    if kind not in KINDS:
        raise InvalidInputError(f"unknown solver kind {kind!r}; valid kinds are: {', '.join(map(repr, KINDS))}")
    names = list(CHECKS[kind])
    tolerance_driven = _is_tolerance_driven(solver)
    if tolerance_driven:
        names = [n for n in names if n in ("interface", "nfe", "float32")] + ["adaptive_accuracy"]
    elif getattr(solver, "adaptive", False):
        names = [n for n in names if n != "solve"] + ["adaptive_accuracy"]
    every = {n for k in CHECKS.values() for n in k} | {"adaptive_accuracy"}
    for n in [*skip, *(only or ())]:
        if n not in every:
            raise InvalidInputError(f"unknown property {n!r}; valid properties are: {', '.join(sorted(every))}")
    skip = set(skip)
    if only is not None:
        only = set(only)
        names = [n for n in names if n in only]
    names = [n for n in names if n not in skip]
    expected = order if order is not None else getattr(solver, "order", None)
    if expected is None and any(n in names for n in ("order", "polynomial_exactness", "strong_order")):
        raise InvalidInputError(f"{type(solver).__name__} declares no order: pass check_solver(..., order=p)")
    tol_ode = 0.3 if tol is None else tol
    tol_sde = 0.25 if tol is None else tol

    def strong() -> None:
        exp = order if order is not None else None
        assert_strong_order(solver, exp, tol=tol_sde)

    runners: dict[str, Callable[[], Any]] = {
        "interface": lambda: _check_interface(solver, kind),
        "order": lambda: assert_order(solver, float(expected), tol=tol_ode),
        "polynomial_exactness": lambda: assert_exact_for_polynomials(
            solver, int(math.floor(float(expected) + 1e-9))),
        "nfe": lambda: assert_nfe(solver, steady_state=not tolerance_driven),
        "time_reversal": lambda: assert_time_reversible_consistency(solver),
        "batch_consistency": lambda: _check_batch_consistency(solver, kind),
        "float32": lambda: _check_float32(solver, kind),
        "solve": lambda: _check_solve(solver, kind),
        "rejects_plain_field": lambda: _check_rejects_plain_field(solver),
        "strong_order": strong,
        "weak_order": lambda: assert_weak_order(solver, weak_order, tol=tol_sde),
        "determinism": lambda: _check_determinism(solver),
        "adaptive_accuracy": lambda: assert_adaptive_accuracy(solver),
    }
    failures: list[PropertyFailure] = []
    for name in names:
        try:
            runners[name]()
        except SolverCheckError as err:
            failures.extend(err.failures)
        except Exception as exc:  # noqa: BLE001 - a crash is a failure of that property, keep going
            failures.append(PropertyFailure(name, f"raised {type(exc).__name__}: {exc}"))
    if failures:
        raise SolverCheckError(solver, failures, total=len(names))
    return names


# --------------------------------------------------------------------------------------------
# pytest helpers
# --------------------------------------------------------------------------------------------
def _solver_id(s: Any) -> str:
    if isinstance(s, str):
        return s
    if type(s).__repr__ is object.__repr__:  # no repr of its own: the class name, not an address
        return type(s).__name__
    return _describe(s).replace(" ", "")


def parametrize_solvers(solvers: Iterable[Any], argname: str = "solver") -> Any:
    """``pytest.mark.parametrize`` over solver instances (or registered names), with readable ids::

        @parametrize_solvers([MyEuler(), MyRK4()])
        def test_my_solvers(solver):
            check_solver(solver)
    """
    import pytest  # noqa: PLC0415 - only needed by pytest users

    from solvers.base import get_solver  # noqa: PLC0415

    items = [get_solver(s) if isinstance(s, str) else s for s in solvers]
    return pytest.mark.parametrize(argname, items, ids=[_solver_id(s) for s in items])


def check_solver_test(solvers: Iterable[Any], **check_kwargs: Any) -> Callable[[Any], None]:
    """A ready-made parametrised pytest test running `check_solver` on each of ``solvers``::

        test_my_solvers = check_solver_test([MyEuler(), MyRK4()])

    ``check_kwargs`` go to every `check_solver` call.
    """

    @parametrize_solvers(solvers)
    def test_check_solver(solver: Any) -> None:
        check_solver(solver, **check_kwargs)

    return test_check_solver
