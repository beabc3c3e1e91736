"""`solve`: integrate a field (or an SDE) with any solver, on a grid or adaptively.

Fixed-step loop: the grid is turned into Python floats once, so the loop itself never
synchronises the host; finiteness is checked once, at the end. If the final state is not
finite the solve is replayed with a check after every step to name the first bad step and
return the last good partial solution in the raised `NonFiniteError` (fields are
deterministic and SDE solves reuse their `BrownianPath`, so the replay is exact).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive, check_state
from odeflow.errors import InvalidInputError, MaxStepsExceeded, NonFiniteError
from solvers.base import Solution, Solver, Stats, get_solver

__all__ = ["solve", "check_grid"]

SAVE_MODES = ("final", "steps")


def check_grid(grid: Any, name: str = "grid") -> torch.Tensor:
    """Validate a time grid: 1-d, at least 2 points, finite, inside [0, 1], strictly monotone.

    Returns it as a float64 CPU tensor.
    """
    try:
        g = torch.as_tensor(grid, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InvalidInputError(f"{name} must be a 1-d sequence of times, got {type(grid).__name__}") from None
    if g.dim() != 1:
        raise InvalidInputError(f"{name} must be 1-d, got shape {tuple(g.shape)}")
    if g.numel() < 2:
        raise InvalidInputError(f"{name} needs at least 2 points (start and end), got {g.numel()}")
    if g.numel() <= _SMALL_GRID:  # the usual case: checks on Python floats, no tensor kernels (~10x faster)
        _check_small_grid(g.tolist(), name)
        return g
    if not bool(torch.isfinite(g).all()):
        raise InvalidInputError(f"{name} contains non-finite times")
    if float(g.min()) < 0.0 or float(g.max()) > 1.0:
        raise InvalidInputError(
            f"{name} leaves [0, 1] (min {float(g.min()):g}, max {float(g.max()):g}); t = 0 is data, t = 1 noise"
        )
    d = g[1:] - g[:-1]
    if not (bool((d < 0).all()) or bool((d > 0).all())):
        raise InvalidInputError(f"{name} must be strictly monotone (decreasing to sample, increasing to encode)")
    return g


_SMALL_GRID = 512


def _check_small_grid(ts: list[float], name: str) -> None:
    """`check_grid`'s finiteness, range and monotonicity checks on a list of floats (same messages)."""
    if not all(math.isfinite(t) for t in ts):
        raise InvalidInputError(f"{name} contains non-finite times")
    lo, hi = min(ts), max(ts)
    if lo < 0.0 or hi > 1.0:
        raise InvalidInputError(f"{name} leaves [0, 1] (min {lo:g}, max {hi:g}); t = 0 is data, t = 1 noise")
    pairs = list(zip(ts[:-1], ts[1:]))
    if not (all(b < a for a, b in pairs) or all(b > a for a, b in pairs)):
        raise InvalidInputError(f"{name} must be strictly monotone (decreasing to sample, increasing to encode)")


@functools.lru_cache(maxsize=256)
def _takes_grid(init: Any) -> bool:
    try:
        return "grid" in inspect.signature(init).parameters
    except (TypeError, ValueError):
        return False


def accepts_grid(solver: Any) -> bool:
    """Whether ``solver.init`` takes the whole grid (exponential and multistep look-ahead rules).

    Cached per ``init`` function (``inspect.signature`` costs ~80 µs, more than a small solve step).
    """
    init = solver.init
    func = getattr(init, "__func__", None)
    if func is None:  # not a bound method (e.g. a callable attribute): inspect it each time
        return _takes_grid.__wrapped__(init)
    try:
        return _takes_grid(func)
    except TypeError:  # an unhashable function object
        return _takes_grid.__wrapped__(init)


def _fixed_loop(
    solver: Solver,
    field: Any,
    x: torch.Tensor,
    times: list[float],
    save_steps: bool,
    check_each_step: bool,
    init_options: dict[str, Any],
) -> tuple[torch.Tensor, list[torch.Tensor], Stats, int | None]:
    if "grid" not in init_options and accepts_grid(solver):
        init_options = {**init_options, "grid": times}  # enables look-ahead rules (lower_order_final)
    state = solver.init(field, times[0], x, **init_options)
    xs = [x] if save_steps or check_each_step else []
    for i in range(len(times) - 1):
        x_new, state = solver.step(field, times[i], times[i + 1], x, state)
        if check_each_step and not bool(torch.isfinite(x_new).all()):
            stats = Stats(nfe=state.nfe, steps=i, accepted=i)
            return x, xs, stats, i
        x = x_new
        if save_steps or check_each_step:
            xs.append(x)
    n = len(times) - 1
    return x, xs, Stats(nfe=state.nfe, steps=n, accepted=n), None


def solve(
    field: Any,
    x: torch.Tensor,
    *,
    solver: str | Solver,
    grid: Any = None,
    t_span: tuple[float, float] = (1.0, 0.0),
    save: str = "final",
    save_at: Any = None,
    max_steps: int = 100_000,
    **options: Any,
) -> Solution:
    """Integrate ``dx/dt = field(t, x)`` from ``x`` with ``solver``.

    Parameters
    ----------
    field: ``field(t, x)`` (an ODE), a `ProbabilityFlow` (required by exponential solvers) or an
        object with ``drift(t, x)`` and ``diffusion(t, x)`` (SDE solvers).
    x: the initial state, shape ``(batch, *dims)``, at ``grid[0]`` (or ``t_span[0]``).
    solver: a `Solver` instance or a registered name (see `solvers.solver_names`).
    grid: strictly monotone times in [0, 1] — required by fixed-step solvers; adaptive
        solvers treat it as the times to save at.
    t_span: ``(t_start, t_end)`` for adaptive solvers.
    save: ``"final"`` (only ``Solution.x``) or ``"steps"`` (every step in ``ts``/``xs``).
    save_at: times at which adaptive solvers report the state (dense output).
    max_steps: raise `MaxStepsExceeded` past this many steps.
    options: passed to ``solver.init`` (e.g. ``brownian=`` for SDE solvers) or to the
        adaptive driver (e.g. ``dt_min=``, ``dt0=``).

    A solver with a ``solve_full(field, x, *, grid, t_span, save, save_at, max_steps, **options)``
    method (the torchdiffeq and scipy backends) is handed the whole solve instead of the loop.
    """
    solver = get_solver(solver)
    check_state(x, "x")
    check_choice(save, SAVE_MODES, "save mode")
    check_positive(max_steps, "max_steps", integer=True)
    solve_full = getattr(solver, "solve_full", None)
    if callable(solve_full):  # a whole-solve backend (torchdiffeq, scipy): one call does everything
        kw = {"grid": grid, "t_span": t_span, "save": save, "save_at": save_at, "max_steps": max_steps}
        return solve_full(field, x, **kw, **options)
    if getattr(solver, "adaptive", False):
        from solvers.adaptive import solve_adaptive  # noqa: PLC0415 (adaptive driver)

        return solve_adaptive(
            solver,
            field,
            x,
            grid=grid,
            t_span=t_span,
            save=save,
            save_at=save_at,
            max_steps=max_steps,
            **options,
        )
    if grid is None:
        raise InvalidInputError(
            f"{type(solver).__name__} is a fixed-step solver: pass grid= (e.g. solvers.grids.uniform(16))"
        )
    if save_at is not None:
        raise InvalidInputError("save_at needs an adaptive solver; with a fixed-step solver use save='steps'")
    g = check_grid(grid)
    n_steps = g.numel() - 1
    if n_steps > max_steps:
        raise MaxStepsExceeded(
            f"the grid has {n_steps} steps, more than max_steps = {max_steps}",
            partial=Solution(x=x, ts=g[:1].clone(), xs=x.unsqueeze(0), stats=Stats()),
            t=float(g[0]),
            step=0,
        )
    times = g.tolist()
    save_steps = save == "steps"
    x_end, xs, stats, _ = _fixed_loop(solver, field, x, times, save_steps, False, options)
    if not bool(torch.isfinite(x_end).all()):
        x_good, xs_good, stats_bad, bad = _fixed_loop(solver, field, x, times, save_steps, True, options)
        bad = n_steps - 1 if bad is None else bad
        partial = Solution(x=x_good, ts=g[: bad + 1].clone(), xs=torch.stack(xs_good[: bad + 1]), stats=stats_bad)
        raise NonFiniteError(
            f"the state became non-finite in step {bad} (from t = {times[bad]:g} to t = {times[bad + 1]:g}) "
            f"with {type(solver).__name__}; the partial solution up to t = {times[bad]:g} is in .partial",
            partial=partial,
            t=times[bad + 1],
            step=bad,
        )
    if save_steps:
        return Solution(x=x_end, ts=g.clone(), xs=torch.stack(xs), stats=stats)
    return Solution(x=x_end, stats=stats)
