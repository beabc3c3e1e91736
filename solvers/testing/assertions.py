r"""Assertions about a solver: convergence order, polynomial exactness, NFE, agreement, direction.

Each ``assert_*`` drives the solver through its step API on analytic problems
(`solvers.testing.problems`) and raises `SolverCheckError` — an ``AssertionError`` whose
message names the property and shows the numbers (an error table for orders) — or returns
what it measured.

**Orders** are fitted the way DiffEqDevTools does it and NOTES.md asks: errors at step counts
$n, 2n, 4n, \dots$; points at the float64 floor (relative error below ``1e-11``) or non-finite
are dropped; the order is the least-squares slope of $-\log e$ against $\log n$ over the (up to)
three finest remaining points — the asymptotic range. Each problem must match on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from odeflow.errors import InvalidInputError
from solvers.testing._drive import counting, run_steps
from solvers.testing.problems import (
    Problem,
    SDEProblem,
    default_problems,
    default_sde_problems,
    polynomial_problem,
    reversible_problems,
)

__all__ = [
    "SolverCheckError",
    "PropertyFailure",
    "OrderResult",
    "measure_order",
    "assert_order",
    "assert_exact_for_polynomials",
    "assert_nfe",
    "assert_matches",
    "assert_time_reversible_consistency",
    "assert_strong_order",
    "assert_weak_order",
    "FLOOR",
]

#: relative errors below this are float64 round-off, not discretisation error
FLOOR = 1e-13


class PropertyFailure(NamedTuple):
    """One failed property: its name and a message with the numbers."""

    name: str
    message: str


class SolverCheckError(AssertionError):
    """One or more properties of a solver failed; ``failures`` lists them (name, message)."""

    def __init__(self, solver: Any, failures: Sequence[PropertyFailure], total: int | None = None) -> None:
        self.solver = solver
        self.failures = list(failures)
        names = ", ".join(f.name for f in self.failures)
        of = f" of {total}" if total is not None else ""
        head = f"{_describe(solver)} failed {len(self.failures)}{of} propert{'y' if len(self.failures) == 1 else 'ies'}"
        body = "\n\n".join(f"[{f.name}] {f.message}" for f in self.failures)
        super().__init__(f"{head}: {names}\n\n{body}")


def _describe(solver: Any) -> str:
    try:
        return repr(solver)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real failure
        return type(solver).__name__


def _fail(solver: Any, name: str, message: str) -> None:
    raise SolverCheckError(solver, [PropertyFailure(name, message)])


def _kind(solver: Any) -> str:
    return getattr(solver, "kind", "ode") or "ode"


def _rel_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    x64, r64 = x.detach().to(torch.float64), ref.detach().to(torch.float64)
    scale = max(1.0, float(r64.abs().max()))
    err = float((x64 - r64).abs().max()) / scale
    return err if math.isfinite(err) else math.inf


def _fmt(e: float) -> str:
    return f"{e:.3e}" if math.isfinite(e) else str(e)


# --------------------------------------------------------------------------------------------
# order fitting
# --------------------------------------------------------------------------------------------
@dataclass
class OrderResult:
    """Errors of one solver on one problem against step counts, and the fitted order.

    ``order`` is ``inf`` when the errors reach the float floor before two points can be fitted
    (the method is exact, or too accurate, on this problem: no order can be measured, and none
    is refuted) and ``nan`` when fewer than two usable points remain otherwise (non-finite errors).
    """

    problem: str
    steps: list[int]
    errors: list[float]
    order: float
    fitted: list[int]

    def table(self) -> str:
        lines = [f"    {'steps':>6} {'error':>11} {'local order':>12}  fitted"]
        for i, (n, e) in enumerate(zip(self.steps, self.errors)):
            local = ""
            if i > 0:
                e0 = self.errors[i - 1]
                if 0 < e < math.inf and 0 < e0 < math.inf:
                    local = f"{math.log(e0 / e) / math.log(n / self.steps[i - 1]):.2f}"
            mark = "*" if i in self.fitted else ""
            lines.append(f"    {n:>6} {_fmt(e):>11} {local:>12}  {mark}")
        return "\n".join(lines)


def fit_order(steps: Sequence[int], errors: Sequence[float], floor: float = FLOOR, window: int = 3) -> OrderResult:
    """Fit the order over the finest ``window`` consecutive usable points (see the module docstring)."""
    usable = [i for i, e in enumerate(errors) if math.isfinite(e) and e > floor]
    if not usable:
        exact = all(math.isfinite(e) for e in errors)
        return OrderResult("", list(steps), list(errors), math.inf if exact else math.nan, [])
    run = [usable[-1]]
    for i in reversed(usable[:-1]):
        if i != run[0] - 1 or len(run) == window:
            break
        run.insert(0, i)
    if len(run) < 2:
        # one point above the floor and every finer one at it: too accurate to measure, not refuted
        at_floor = all(math.isfinite(e) and e <= floor for e in errors[run[-1] + 1 :])
        exact = at_floor and run[-1] < len(errors) - 1
        return OrderResult("", list(steps), list(errors), math.inf if exact else math.nan, run)
    xs = [math.log(steps[i]) for i in run]
    ys = [-math.log(errors[i]) for i in run]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return OrderResult("", list(steps), list(errors), slope, run)


def default_steps(order: float, kind: str = "ode", nfe_per_step: int = 1) -> tuple[int, ...]:
    """Step counts for an order test: fine enough to be asymptotic, coarse enough to stay above the
    float floor at high order. Exponential multistep methods (one NFE per step) of order ≥ 3
    have long pre-asymptotic ranges on mixture data — their local orders settle only past ~64
    steps — while singlestep ones settle by 32."""
    if kind == "exponential":
        return (16, 32, 64, 128, 256) if order > 2.5 and nfe_per_step <= 1 else (8, 16, 32, 64, 128)
    if order <= 1.5:
        return (16, 32, 64, 128, 256)
    if order <= 5.5:
        return (8, 16, 32, 64, 128)
    return (4, 8, 16, 32, 64)


def measure_order(
    solver: Any,
    problem: Problem,
    steps: Sequence[int],
    *,
    grid_kind: str | None = None,
    **init_options: Any,
) -> OrderResult:
    """Errors of ``solver`` on ``problem`` at each step count, and the fitted order."""
    ref = problem.x_end
    errors = []
    for n in steps:
        x, _ = run_steps(solver, problem.field, problem.x1, problem.grid(n, grid_kind), **init_options)
        errors.append(_rel_error(x, ref))
    res = fit_order(steps, errors, floor=max(FLOOR, problem.floor))
    res.problem = repr(problem)
    return res


def _problems_for(solver: Any, problems: Sequence[Problem] | None) -> list[Problem]:
    if problems is not None:
        return list(problems)
    return default_problems("exponential" if _kind(solver) == "exponential" else "ode")


def _run_guarded(solver: Any, name: str, problem: Any, fn: Any) -> Any:
    try:
        return fn()
    except SolverCheckError:
        raise
    except Exception as exc:  # noqa: BLE001 - any crash of the solver is a failure of the property
        _fail(solver, name, f"the solver raised {type(exc).__name__} on {problem!r}: {exc}")


def assert_order(
    solver: Any,
    expected: float | None = None,
    *,
    problems: Sequence[Problem] | None = None,
    steps: Sequence[int] | None = None,
    tol: float = 0.3,
    upper: str | None = "median",
    grid_kind: str | None = None,
    **init_options: Any,
) -> list[OrderResult]:
    """Assert that ``solver`` converges at order ``expected`` (default ``solver.order``) ± ``tol``.

    Every problem must reach at least ``expected − tol`` (an order drop is a bug on any
    problem). Above, ``upper`` decides: ``"median"`` (default) bounds the median order over the
    problems by ``expected + max(tol, 0.5)`` — a declared order one too low shows on all
    problems, while superconvergence on one problem (a scalar equation whose error constant
    cancels, a linear problem matching a higher-order stability function) and error constants
    that approach the asymptote from above (Tsit5 measures 5.2–5.4 at 16–64 steps) are known
    traps, not bugs; ``"each"`` bounds every problem by ``expected + tol``; ``None`` checks the
    lower bound only.

    ``problems`` default to `default_problems` of the solver's kind; ``steps`` to
    `default_steps`; ``grid_kind`` to each problem's own (uniform, or log-SNR for exponential
    integrators). Returns the `OrderResult` of each problem; on failure the message shows the
    error table (steps, error, local order, the points fitted) of every offending problem.
    """
    if upper not in ("median", "each", None):
        raise InvalidInputError(f"upper must be 'median', 'each' or None, got {upper!r}")
    expected = float(getattr(solver, "order", 1.0) if expected is None else expected)
    steps = list(steps or default_steps(expected, _kind(solver), int(getattr(solver, "nfe_per_step", 1))))
    results, bad = [], []

    def describe(res: OrderResult, what: str) -> str:
        measured = "not measurable (non-finite or too few points above the floor)" if math.isnan(
            res.order) else f"{res.order:.2f}"
        return f"measured order {measured} on {res.problem}, {what}\n{res.table()}"

    for p in _problems_for(solver, problems):
        res = _run_guarded(solver, "order", p, lambda p=p: measure_order(solver, p, steps, grid_kind=grid_kind,
                                                                        **init_options))
        results.append(res)
        if math.isinf(res.order):
            continue  # exact on this problem: nothing to refute
        if math.isnan(res.order) or res.order < expected - tol:
            bad.append(describe(res, f"expected at least {expected:g} - {tol:g}"))
        elif upper == "each" and res.order > expected + tol:
            bad.append(describe(res, f"expected at most {expected:g} + {tol:g}"))
    finite = sorted(r.order for r in results if math.isfinite(r.order))
    if upper == "median" and finite:
        k = len(finite)
        median = finite[k // 2] if k % 2 else 0.5 * (finite[k // 2 - 1] + finite[k // 2])
        slack = max(tol, 0.5)
        if median > expected + slack:
            tables = "\n".join(describe(r, "") for r in results if math.isfinite(r.order))
            bad.append(f"median measured order {median:.2f} over {k} problems exceeds {expected:g} + {slack:g}: "
                       f"is the declared order too low?\n{tables}")
    if bad:
        _fail(solver, "order", "\n".join(bad))
    return results


# --------------------------------------------------------------------------------------------
# exactness, NFE, agreement, direction
# --------------------------------------------------------------------------------------------
def assert_exact_for_polynomials(
    solver: Any, degree: int | None = None, *, tol: float = 1e-10, seeds: Sequence[int] = (0, 1)
) -> None:
    r"""Assert that ``solver`` is exact (to ``tol``, relative) when the solution is a polynomial in $t$
    of degree ``degree`` (default: ``floor(solver.order)``) — the field $y' = p(t)$ of degree
    ``degree - 1``. Checked on a uniform and a random grid, decreasing, and on an increasing
    random grid. A method of order $p$ passes for every degree $\le p$."""
    if degree is None:
        degree = int(math.floor(float(getattr(solver, "order", 1)) + 1e-9))
    bad = []
    for seed in seeds:
        p = polynomial_problem(degree, dim=2, batch=2, seed=seed)
        for label, prob, kind, n in (
            ("uniform, decreasing", p, "uniform", 6),
            ("random, decreasing", p, "random", 8),
            ("random, increasing", p.reversed(), "random", 7),
        ):
            x, _ = _run_guarded(solver, "polynomial_exactness", prob,
                                lambda prob=prob, kind=kind, n=n, seed=seed: run_steps(
                                    solver, prob.field, prob.x1, prob.grid(n, kind, seed=seed)))
            err = _rel_error(x, prob.x_end)
            if not err <= tol:
                bad.append(f"{label} grid of {n} steps on {prob!r}: error {_fmt(err)} > {tol:g}")
    if bad:
        _fail(solver, "polynomial_exactness",
              f"not exact for solutions that are polynomials of degree {degree} in t (a method of order "
              f"{degree} must be):\n    " + "\n    ".join(bad))


def _count_run(solver: Any, field: Any, x: torch.Tensor, grid: torch.Tensor, **opts: Any) -> tuple[Any, int, int]:
    counted = counting(field)
    x_new, state = run_steps(solver, counted, x, grid, **opts)
    return x_new, int(getattr(state, "nfe", -1)), counted.calls


def assert_nfe(
    solver: Any,
    per_step: int | None = None,
    *,
    problem: Problem | SDEProblem | None = None,
    steps: Sequence[int] = (8, 16),
    steady_state: bool = True,
) -> dict[int, tuple[int, int]]:
    """Assert exact NFE accounting: ``state.nfe`` equals the number of field evaluations actually made
    (every step count), and in steady state each extra step costs ``per_step`` evaluations
    (default ``solver.nfe_per_step``; ``steady_state=False`` skips this for solvers whose cost per
    step is not fixed, such as whole-solve adaptive backends). Start-up costs (a Runge–Kutta warm-up of a multistep
    method, a first FSAL evaluation) are allowed. For SDEs, evaluations are drift calls.

    Returns ``{n: (reported, counted)}``.
    """
    per_step = int(getattr(solver, "nfe_per_step", 1) if per_step is None else per_step)
    if problem is None:
        problem = default_sde_problems()[0] if _kind(solver) == "sde" else _problems_for(solver, None)[0]
    seen: dict[int, tuple[int, int]] = {}
    bad = []
    for n in steps:
        if isinstance(problem, SDEProblem):
            sample = problem.sample(n)
            args = (problem.sde, problem.x1[:4], sample.grid)
            opts = {"brownian": _sliced_brownian(sample.brownian, 4)}
        else:
            args, opts = (problem.field, problem.x1, problem.grid(n)), {}
        _, reported, counted = _run_guarded(solver, "nfe", problem, lambda a=args, o=opts: _count_run(solver, *a, **o))
        seen[n] = (reported, counted)
        if reported != counted:
            bad.append(f"{n} steps: the solver reports state.nfe = {reported}, but the field was evaluated "
                       f"{counted} times")
    if steady_state and len(steps) >= 2:
        (n1, (_, c1)), (n2, (_, c2)) = sorted(seen.items())[0], sorted(seen.items())[-1]
        measured = (c2 - c1) / (n2 - n1)
        if measured != per_step:
            bad.append(f"steady-state cost: {c1} evaluations for {n1} steps, {c2} for {n2} steps = "
                       f"{measured:g} per step; declared nfe_per_step = {per_step}")
    if bad:
        _fail(solver, "nfe", "\n    ".join(["NFE accounting is wrong:", *bad]))
    return seen


def _sliced_brownian(bp: Any, k: int) -> Any:
    from solvers.testing.problems import GridBrownianPath  # noqa: PLC0415

    return GridBrownianPath(bp.times, bp.w[:, :k])


def assert_matches(
    solver: Any,
    reference_solver: Any,
    tol: float = 1e-10,
    *,
    problems: Sequence[Problem] | None = None,
    steps: Sequence[int] = (4, 16),
    grid_kind: str | None = None,
) -> None:
    """Assert that ``solver`` and ``reference_solver`` give the same final state (relative max
    difference ≤ ``tol``) on the same problems and grids — e.g. ``DDIM()`` against ``Euler()`` on
    the linear path, or a user's RK4 against ours."""
    bad = []
    for p in _problems_for(solver, problems):
        for n in steps:
            grid = p.grid(n, grid_kind)
            x, _ = _run_guarded(solver, "matches", p, lambda p=p, g=grid: run_steps(solver, p.field, p.x1, g))
            try:
                x_ref, _ = run_steps(reference_solver, p.field, p.x1, grid)
            except Exception as exc:  # noqa: BLE001
                raise InvalidInputError(f"the reference solver {reference_solver!r} failed on {p!r}: {exc}") from exc
            diff = _rel_error(x, x_ref)
            if not diff <= tol:
                bad.append(f"{n} steps on {p!r}: max relative difference {_fmt(diff)} > {tol:g}")
    if bad:
        _fail(solver, "matches", f"differs from {_describe(reference_solver)}:\n    " + "\n    ".join(bad))


def assert_time_reversible_consistency(
    solver: Any,
    *,
    problems: Sequence[Problem] | None = None,
    steps: tuple[int, int] = (8, 32),
    ratio: float = 50.0,
) -> None:
    r"""Assert that the solver works in both time directions.

    For each problem the error of the decreasing solve ($t_{start} \to t_{end}$) and of the
    increasing one (the same trajectory run back, `Problem.reversed`) must (a) both shrink
    from ``steps[0]`` to ``steps[1]`` steps by at least a factor 2 (unless at the float floor),
    and (b) be within a factor ``ratio`` of each other at ``steps[1]``. A solver that ignores
    the sign of $t_1 - t_0$ fails (a) in one direction with an $O(1)$ error.
    """
    if problems is None:
        problems = reversible_problems("exponential" if _kind(solver) == "exponential" else "ode")
    bad = []
    for p in problems:
        errs: dict[str, list[float]] = {}
        for label, prob in (("decreasing", p), ("increasing", p.reversed())):
            row = []
            for n in steps:
                x, _ = _run_guarded(solver, "time_reversal", prob,
                                    lambda prob=prob, n=n: run_steps(solver, prob.field, prob.x1, prob.grid(n)))
                row.append(_rel_error(x, prob.x_end))
            errs[label] = row
        table = "\n".join(
            f"    {label:>10}: " + ", ".join(f"{n} steps {_fmt(e)}" for n, e in zip(steps, row))
            for label, row in errs.items()
        )
        problems_here = []
        for label, (e0, e1) in errs.items():
            if not (e1 <= FLOOR or e1 <= e0 / 2):
                problems_here.append(f"{label} time does not converge")
        dec, inc = errs["decreasing"][-1], errs["increasing"][-1]
        if math.isfinite(dec) and math.isfinite(inc) and max(dec, inc) > FLOOR:
            lo, hi = max(min(dec, inc), FLOOR), max(dec, inc)
            if hi / lo > ratio:
                problems_here.append(f"errors differ by a factor {hi / lo:.3g} > {ratio:g} between directions")
        if problems_here:
            bad.append(f"{'; '.join(problems_here)} on {p!r}:\n{table}")
    if bad:
        _fail(solver, "time_reversal", "increasing and decreasing time are not equally consistent:\n"
              + "\n".join(bad))


# --------------------------------------------------------------------------------------------
# SDE solvers
# --------------------------------------------------------------------------------------------
def _sde_errors(
    solver: Any, problem: SDEProblem, steps: Sequence[int], seed: int, weak: bool
) -> list[float]:
    n_fine = max(steps)
    if any(n_fine % n for n in steps):
        raise InvalidInputError(f"every step count must divide the largest one ({n_fine}); got {list(steps)}")
    sample = problem.sample(n_fine, seed=seed)
    x_true = sample.exact[-1]
    errors = []
    for n in steps:
        grid = sample.grid[:: n_fine // n]
        x, _ = run_steps(solver, problem.sde, problem.x1, grid, brownian=sample.brownian)
        x64 = x.detach().to(torch.float64)
        if weak:
            e = max(float((x64 - x_true).mean().abs()), float((x64**2 - x_true**2).mean().abs()))
        else:
            e = float(((x64 - x_true) ** 2).mean().sqrt())
        errors.append(e if math.isfinite(e) else math.inf)
    return errors


def _sde_order_check(
    solver: Any, name: str, expected: float, problems: Sequence[SDEProblem], steps: Sequence[int],
    tol: float, seed: int, weak: bool, one_sided: bool,
) -> list[OrderResult]:
    results, bad = [], []
    for p in problems:
        errors = _run_guarded(solver, name, p, lambda p=p: _sde_errors(solver, p, steps, seed, weak))
        res = fit_order(steps, errors, window=len(steps))
        res.problem = repr(p)
        results.append(res)
        if math.isinf(res.order):
            continue
        ok = not math.isnan(res.order) and (
            res.order >= expected - tol if one_sided else abs(res.order - expected) <= tol)
        if not ok:
            what = "at least " if one_sided else ""
            bad.append(f"measured {'weak' if weak else 'strong'} order {res.order:.2f} on {res.problem}, expected "
                       f"{what}{expected:g}{'' if one_sided else ' ±'} {'- ' if one_sided else ''}{tol:g}\n"
                       f"{res.table()}")
    if bad:
        _fail(solver, name, "\n".join(bad))
    return results


def assert_strong_order(
    solver: Any,
    expected: float | None = None,
    *,
    problems: Sequence[SDEProblem] | None = None,
    steps: Sequence[int] = (4, 8, 16, 32, 64),
    tol: float = 0.25,
    seed: int = 0,
) -> list[OrderResult]:
    r"""Assert strong order ``expected`` ± ``tol``: the RMS error $\sqrt{E|X_n - X(T)|^2}$ against the
    exact pathwise solution, one Brownian path per sample shared by every step count.

    ``expected`` defaults to ``solver.strong_order_additive`` if the solver declares it (the
    problems default to additive noise, `default_sde_problems`), else ``solver.order``.
    All points are fitted (Monte-Carlo errors have no float floor)."""
    if expected is None:
        expected = float(getattr(solver, "strong_order_additive", None) or getattr(solver, "order", 0.5))
    return _sde_order_check(solver, "strong_order", float(expected), problems or default_sde_problems(),
                            steps, tol, seed, weak=False, one_sided=False)


def assert_weak_order(
    solver: Any,
    expected: float | None = None,
    *,
    problems: Sequence[SDEProblem] | None = None,
    steps: Sequence[int] = (2, 4, 8, 16, 32),
    tol: float = 0.25,
    seed: int = 0,
    one_sided: bool = True,
) -> list[OrderResult]:
    r"""Assert weak order: the error of the first two moments, $\max(|E X_n - E X|, |E X_n^2 - E X^2|)$,
    decreases at least at order ``expected`` − ``tol`` (``one_sided=False``: within ± ``tol``).

    One-sided by default because weak orders on linear additive-noise problems often exceed the
    general one (stochastic Heun is weak order 2 there). ``expected`` defaults to
    ``solver.weak_order`` or 1. The moments are estimated with the exact pathwise solution as a
    control variate (the mean of $f(X_n) - f(X)$ over samples), so the Monte-Carlo noise is of the
    size of the strong error over $\sqrt{\text{samples}}$, far below the weak error."""
    if expected is None:
        expected = float(getattr(solver, "weak_order", None) or 1.0)
    return _sde_order_check(solver, "weak_order", float(expected), problems or default_sde_problems(),
                            steps, tol, seed, weak=True, one_sided=one_sided)
