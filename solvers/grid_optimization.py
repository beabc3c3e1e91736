r"""Time grids tuned to one field and one solver: the machinery behind `solvers.grids.optimized`.

A fixed-step sampler spends its budget of $n$ steps where the grid puts them; the best place
depends on the field (where it bends) *and* on the solver (its order and error constants). Given
a probe batch $x^{(1)}, \dots, x^{(m)}$ at ``t_start`` this module finds a grid of $n$ steps
that minimises the endpoint error of *that* solver on the probe,

$$J(t_0, \dots, t_n) = \Big(\frac1{md}\sum_{j}\big\|\Phi^{S}(x^{(j)}) - \Phi(x^{(j)})\big\|^2\Big)^{1/2},$$

where $\Phi^S$ is the solver on the grid and $\Phi$ the exact flow from ``t_start`` to ``t_end``
(a tight adaptive solve).

**Pilot.** One float64 adaptive solve of the probe (`Dopri5`, ``pilot_tol``) gives the reference
end points and, by dense output, the reference states at ``candidates`` + 1 equally spaced times
$c_k$. Cost: the pilot's NFE on the probe (a few hundred for the toy fields).

**Equidistribution.** From each $c_k$ the solver takes one step to $c_{k+1}$ and its local error
$e_k = \mathrm{rms}(S(x(c_k)) - x(c_{k+1}))$ is measured. A method of order $p$ has local error
$\approx C(t)h^{p+1}$; for a fixed number of steps the sum of local errors is smallest when every
step makes the same local error, i.e. step density $\rho(t) \propto C(t)^{1/(p+1)}$ (the
equidistribution principle; de Boor 1973; Hairer, Nørsett & Wanner I §II.4). The grid puts $n$
steps at equal quantiles of $\int\rho$. Cost: ``candidates`` × (stages) NFE on the probe.

**Search.** The local picture ignores how errors are propagated (flows into narrow modes
contract early errors) and how they cancel, so the grid is then tuned on $J$ itself: starting
from the best of the equidistributed grid, the uniform grid and SD3-shifted grids
($s \in \{\tfrac14, \tfrac12, 2, 4\}$), a coordinate search moves one interior point at a time
inside its neighbours' interval (bounded Brent, in the fraction $u \in (0, 1)$ of that interval)
for up to ``sweeps`` sweeps or ``max_evals`` evaluations of $J$. Each evaluation is one solve of
the probe: $n \times$ (NFE per step). The result is never worse on the probe than the best start.

**Total cost** (all on the probe batch, reported by `optimize_grid` in `GridInfo`):
pilot NFE + ``candidates`` × stages + evaluations × $n$ × (NFE per step) field evaluations —
typically $10^3$–$10^4$ evaluations of a 1–2k point probe: seconds on a CPU for the toy fields,
paid once per (field, solver, $n$): results are cached in memory.

**Honest use.** The grid is fitted to the probe; measure it on samples drawn independently of the
probe (the performance study does). Heavy-tailed errors (samples near a watershed between modes
end in a different mode at any affordable NFE) make $J$ noisy on small probes: use ≳ 1000 points.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive, check_state
from odeflow.errors import InvalidInputError, OdeflowError
from solvers.base import Solver, get_solver
from solvers.solve import check_grid, solve

__all__ = ["GridInfo", "optimize_grid", "clear_cache", "LOSSES", "equidistributed"]

LOSSES = ("rmse", "mean")
START_SHIFTS = (0.25, 0.5, 2.0, 4.0)
_CACHE_SIZE = 128
_CACHE: OrderedDict[tuple, tuple[Any, torch.Tensor, GridInfo]] = OrderedDict()
_PILOTS: OrderedDict[tuple, tuple[Any, torch.Tensor, torch.Tensor, int]] = OrderedDict()


@dataclass
class GridInfo:
    """What an optimisation did and cost (all NFE on the probe batch).

    ``pilot_nfe``: the reference solve; ``local_nfe``: the local-error scan; ``search_nfe``: all
    solves of the probe during the search (``evaluations`` of them); ``loss_start``: $J$ of the
    best starting grid (named ``start``); ``loss_uniform``: $J$ of the uniform grid; ``loss``: $J$
    of the result; ``cached``: served from the cache.
    """

    n: int
    solver: str
    pilot_nfe: int = 0
    local_nfe: int = 0
    search_nfe: int = 0
    evaluations: int = 0
    start: str = ""
    loss_uniform: float = math.nan
    loss_start: float = math.nan
    loss: float = math.nan
    cached: bool = False
    starts: dict[str, float] = field(default_factory=dict)

    @property
    def total_nfe(self) -> int:
        """All field evaluations spent, on the probe batch."""
        return self.pilot_nfe + self.local_nfe + self.search_nfe


def clear_cache() -> None:
    """Forget every cached optimised grid and pilot solve."""
    _CACHE.clear()
    _PILOTS.clear()


def _probe_digest(x: torch.Tensor) -> str:
    data = x.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    return hashlib.sha1(data + str(tuple(x.shape)).encode()).hexdigest()[:16]


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((a - b) ** 2)))


def _loss_fn(loss: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    if loss == "rmse":
        return _rms

    def mean_error(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm((a - b).reshape(a.shape[0], -1), dim=1).mean())

    return mean_error


def _interior_to_grid(t_start: float, t_end: float, interior: list[float]) -> torch.Tensor:
    return torch.tensor([t_start, *interior, t_end], dtype=torch.float64)


def equidistributed(times: torch.Tensor, density: torch.Tensor, n: int) -> torch.Tensor:
    r"""$n$ steps at equal quantiles of a piecewise-constant density on the cells of ``times``.

    ``times``: the $M + 1$ cell edges (monotone); ``density``: $M$ non-negative values, one per
    cell. Returns $n + 1$ points with the end points of ``times``.
    """
    times = times.to(torch.float64)
    density = density.to(torch.float64).clamp_min(0.0)
    widths = (times[1:] - times[:-1]).abs()
    mass = density * widths
    if not bool(torch.isfinite(mass).all()) or float(mass.sum()) <= 0.0:
        mass = widths.clone()
    cum = torch.cat([mass.new_zeros(1), torch.cumsum(mass, 0)])
    cum = cum / cum[-1]
    targets = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    # invert the piecewise-linear cumulative mass
    idx = torch.searchsorted(cum, targets, right=True).clamp(1, len(times) - 1)
    c0, c1 = cum[idx - 1], cum[idx]
    frac = torch.where(c1 > c0, (targets - c0) / (c1 - c0), torch.zeros_like(targets))
    pts = times[idx - 1] + frac * (times[idx] - times[idx - 1])
    pts[0], pts[-1] = times[0], times[-1]
    return pts


def _strictly_monotone(g: torch.Tensor) -> bool:
    d = g[1:] - g[:-1]
    return bool((d < 0).all()) or bool((d > 0).all())


class _Problem:
    """The probe, its reference, the solver and the objective J (counts its solves)."""

    def __init__(self, fld: Any, x: torch.Tensor, solver: Solver, ref: torch.Tensor, loss: str) -> None:
        self.field, self.x, self.solver, self.ref = fld, x, solver, ref
        self.loss = _loss_fn(loss)
        self.evaluations = 0
        self.nfe = 0

    def __call__(self, grid: torch.Tensor) -> float:
        if not _strictly_monotone(grid):
            return math.inf
        self.evaluations += 1
        try:
            sol = solve(self.field, self.x, solver=self.solver, grid=grid)
        except OdeflowError:
            return math.inf
        self.nfe += sol.stats.nfe
        value = self.loss(sol.x, self.ref)
        return value if math.isfinite(value) else math.inf


def _pilot(
    fld: Any, x: torch.Tensor, digest: str, t_start: float, t_end: float, candidates: int, tol: float, cache: bool
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Reference states of the probe at ``candidates + 1`` equally spaced times (float64 Dopri5).

    Cached per (field, probe, span, candidates, tol): every solver and ``n`` share one pilot.
    Returns ``(times, states, nfe)``; ``nfe`` is 0 when served from the cache.
    """
    from solvers.runge_kutta import Dopri5  # noqa: PLC0415 (avoid an import cycle at module load)

    key = (id(fld), digest, t_start, t_end, candidates, tol)
    if cache and key in _PILOTS and _PILOTS[key][0] is fld:
        _PILOTS.move_to_end(key)
        _, times, states, _ = _PILOTS[key]
        return times, states.to(x.dtype), 0
    times = torch.linspace(t_start, t_end, candidates + 1, dtype=torch.float64)
    times[0], times[-1] = t_start, t_end
    x64 = x.detach().to(torch.float64)
    sol = solve(fld, x64, solver=Dopri5(rtol=tol, atol=tol), save_at=times, t_span=(t_start, t_end))
    if cache:
        _PILOTS[key] = (fld, times, sol.xs, sol.stats.nfe)
        while len(_PILOTS) > _CACHE_SIZE // 4:
            _PILOTS.popitem(last=False)
    return times, sol.xs.to(x.dtype), sol.stats.nfe


def _local_density(
    fld: Any, solver: Solver, times: torch.Tensor, states: torch.Tensor, floor: float = 0.05
) -> tuple[torch.Tensor, int]:
    """Step density $\\propto e_k^{1/(p+1)}/\\delta_k$ from one-step local errors on the candidate cells."""
    p = float(getattr(solver, "order", 1) or 1)
    ts = times.tolist()
    dens, nfe = [], 0
    for k in range(len(ts) - 1):
        state = solver.init(fld, ts[k], states[k])
        try:
            x1, state = solver.step(fld, ts[k], ts[k + 1], states[k], state)
            e = _rms(x1, states[k + 1])
        except OdeflowError:
            e = math.nan
        nfe += state.nfe
        delta = abs(ts[k + 1] - ts[k])
        dens.append(e ** (1.0 / (p + 1.0)) / delta if math.isfinite(e) else math.nan)
    d = torch.tensor(dens, dtype=torch.float64)
    good = torch.isfinite(d)
    if not bool(good.any()):
        return torch.ones_like(d), nfe
    d = torch.where(good, d, d[good].max())
    d = torch.maximum(d, floor * d.mean())
    return d, nfe


def _coordinate_search(
    J: _Problem, grid: torch.Tensor, best: float, sweeps: int, max_evals: int, xatol: float
) -> tuple[torch.Tensor, float]:
    from scipy.optimize import minimize_scalar  # noqa: PLC0415 (scipy is a dependency; keep import lazy)

    t = grid.tolist()
    n = len(t) - 1
    for _ in range(sweeps):
        before = best
        for i in range(n - 1, 0, -1):  # interior points, from the data end back
            if J.evaluations >= max_evals:
                break
            lo, hi = t[i + 1], t[i - 1]

            def f(u: float, i: int = i, lo: float = lo, hi: float = hi) -> float:
                trial = list(t)
                trial[i] = lo + u * (hi - lo)
                return J(torch.tensor(trial, dtype=torch.float64))

            budget = max(3, min(12, max_evals - J.evaluations))
            res = minimize_scalar(f, bounds=(0.02, 0.98), method="bounded", options={"xatol": xatol, "maxiter": budget})
            if res.fun < best:
                best = float(res.fun)
                t[i] = lo + float(res.x) * (hi - lo)
        if J.evaluations >= max_evals or best > before * (1.0 - 1e-3):
            break
    return torch.tensor(t, dtype=torch.float64), best


def optimize_grid(
    field: Any,
    n: int,
    x_probe: torch.Tensor,
    solver: str | Solver,
    *,
    t_start: float = 1.0,
    t_end: float = 0.0,
    reference: torch.Tensor | None = None,
    loss: str = "rmse",
    candidates: int = 48,
    sweeps: int = 3,
    max_evals: int | None = None,
    pilot_tol: float = 1e-8,
    cache: bool = True,
) -> tuple[torch.Tensor, GridInfo]:
    """Optimise a grid of ``n`` steps for ``solver`` on ``field`` (see the module docstring).

    Returns ``(grid, info)``: the float64 grid of ``n + 1`` points from ``t_start`` to ``t_end``
    and a `GridInfo` with the costs and probe losses. ``reference``: the exact end points of
    ``x_probe`` if known (skips the pilot solve; then the equidistributed start is skipped too).
    ``loss``: ``"rmse"`` (root mean square over all entries, the endpoint RMSE) or ``"mean"``
    (mean per-sample Euclidean error, robust to a few samples that end in another mode).
    ``max_evals`` defaults to ``12 (n - 1) + 8`` evaluations of the objective.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"n (number of steps) must be a positive integer, got {n!r}")
    if not callable(field):
        raise InvalidInputError(f"field must be callable as field(t, x), got {type(field).__name__}")
    check_state(x_probe, "x_probe")
    solver = get_solver(solver)
    if getattr(solver, "adaptive", False) or getattr(solver, "kind", "ode") == "sde":
        raise InvalidInputError(
            f"optimized grids are for fixed-step ODE solvers (euler, heun, rk4, dpm_solver_pp, unipc, ...); "
            f"got {type(solver).__name__}"
        )
    check_choice(loss, LOSSES, "loss")
    check_positive(candidates, "candidates", integer=True)
    check_positive(sweeps, "sweeps", integer=True, allow_zero=True)
    check_positive(pilot_tol, "pilot_tol")
    if max_evals is not None:
        check_positive(max_evals, "max_evals", integer=True)
    ends = check_grid([t_start, t_end], "t_start/t_end")
    t_start, t_end = float(ends[0]), float(ends[1])
    if reference is not None:
        check_state(reference, "reference")
        if reference.shape != x_probe.shape:
            raise InvalidInputError(
                f"reference has shape {tuple(reference.shape)} but x_probe has {tuple(x_probe.shape)}; they must match"
            )
    max_evals = 12 * (n - 1) + 8 if max_evals is None else max_evals

    key = (
        id(field),
        repr(solver),
        type(solver).__qualname__,
        n,
        t_start,
        t_end,
        _probe_digest(x_probe),
        None if reference is None else _probe_digest(reference),
        str(x_probe.dtype),
        loss,
        candidates,
        sweeps,
        max_evals,
        pilot_tol,
    )
    if cache and key in _CACHE and _CACHE[key][0] is field:
        _CACHE.move_to_end(key)
        _, grid, info = _CACHE[key]
        return grid.clone(), GridInfo(**{**info.__dict__, "cached": True})

    info = GridInfo(n=n, solver=repr(solver))
    uniform = torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)
    uniform[0], uniform[-1] = t_start, t_end
    if n == 1:
        grid = uniform
    else:
        starts: dict[str, torch.Tensor] = {"uniform": uniform}
        if reference is None:
            times, states, info.pilot_nfe = _pilot(
                field, x_probe, key[6], t_start, t_end, candidates, pilot_tol, cache
            )
            reference = states[-1]
            density, info.local_nfe = _local_density(field, solver, times, states)
            starts["equidistributed"] = equidistributed(times, density, n)
        u = (uniform - t_end) / (t_start - t_end)  # 1 → 0
        for s in START_SHIFTS:
            warped = s * u / (1.0 + (s - 1.0) * u)
            starts[f"shift{s:g}"] = t_end + (t_start - t_end) * warped
        J = _Problem(field, x_probe, solver, reference, loss)
        scores = {name: J(g) for name, g in starts.items()}
        info.starts = scores
        info.loss_uniform = scores["uniform"]
        info.start = min(scores, key=lambda k: scores[k])
        info.loss_start = scores[info.start]
        if not math.isfinite(info.loss_start):
            raise OdeflowError(f"every starting grid failed for {solver!r} on the probe (non-finite endpoint error)")
        grid, best = _coordinate_search(
            J, starts[info.start].clone(), info.loss_start, sweeps, max_evals + len(starts), xatol=0.01
        )
        info.loss = best
        info.evaluations = J.evaluations
        info.search_nfe = J.nfe
    if n == 1:
        info.loss = info.loss_start = info.loss_uniform = math.nan
    grid[0], grid[-1] = t_start, t_end
    grid = check_grid(grid, "optimised grid")
    if cache:
        _CACHE[key] = (field, grid.clone(), info)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return grid, info
