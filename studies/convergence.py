r"""Convergence study: endpoint error versus work for every ODE solver, grid and path.

For each problem (exact fields) × path × grid × solver the PF-ODE is solved from exact samples
of the $t = 1$ marginal to $t = 0$ with a sweep of step counts, and the endpoint error is
measured against a reference:

* **references**: the closed-form flow map for single Gaussians (`odeflow.gaussian`); for
  mixtures a tight float64 solve with scipy's DOP853 (``rtol = atol = reference_tol``), whose
  own error is estimated by repeating it at 100× the tolerance and reported as ``ref_err``
  (the fits ignore errors within 10× of it);
* **error**: RMSE over all coordinates of all ``n_samples`` endpoints (`odeflow.metrics.endpoint_rmse`),
  the samples shared by every solver (common random numbers);
* **fixed-step solvers** (kind ``"ode"`` and ``"exponential"``) run on ``steps`` intervals of each
  grid; embedded pairs (Dopri5, …) run there too, driven through the step API without error
  control (mode ``fixed``), and also adaptively with a tolerance sweep ``rtol = atol = tol``
  (mode ``adaptive``, drawn on the same axes);
* **orders**: `odeflow.metrics.fit_order` on log error vs log NFE in the asymptotic range
  (floor and pre-asymptotic points dropped) gives the observed order and its standard error;
  ``NFE@target`` is the work to reach ``target_error`` (log–log interpolation).

Plots: error vs NFE and error vs wall time (work–precision diagrams, DiffEqDevTools style) per
problem and path, one panel per grid. Solver specs are registry names, optionally with
constructor options: ``dpm_solver:order=3``, ``dpm_solver_pp:order=3;multistep=false``.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odeflow import metrics
from odeflow.errors import InvalidInputError, OdeflowError
from odeflow.paths import GaussianPath, get_path, path_names
from studies.problems import get_problem, problem_names
from studies.report import Summary, loglog_axes, new_figure, plot_fitted, save_figure

NAME = "convergence"
TITLE = "Convergence: endpoint error vs NFE"
CACHE_VERSION = 1

GRID_OPTIONS: dict[str, dict[str, Any]] = {
    "shifted": {"shift": 3.0},  # SD3's default resolution shift
    "flux": {"image_seq_len": 4096},  # a 1024² image
}
PATH_GRIDS = ("karras", "log_snr_uniform")  # grids that take the path


@dataclass(frozen=True)
class Config:
    """Convergence sweep. ``solvers=("all",)`` means every registered ODE and exponential solver.

    The defaults are the full sweep (930 cells; one to two hours of one core, estimated from
    per-cell times: ~10 s per cell on ``mixture64``, 1–5 s on the 2-d problems) — shard it with
    ``torchrun`` or narrow it with ``--set``. `quick` is the 18-cell demo.
    """

    problems: tuple[str, ...] = ("gaussian_aniso", "smooth3", "8gaussians", "checkerboard", "mixture64")
    paths: tuple[str, ...] = ("linear", "vp", "cosine")
    grids: tuple[str, ...] = ("uniform", "log_snr_uniform")
    solvers: tuple[str, ...] = ("all",)
    steps: tuple[int, ...] = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    tolerances: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
    adaptive_fixed: bool = True
    n_samples: int = 64
    dtype: str = "float64"
    reference_tol: float = 1e-12
    target_error: float = 1e-3
    plots: bool = True
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.problems or not self.paths or not self.grids or not self.solvers:
            raise InvalidInputError("problems, paths, grids and solvers must each name at least one entry")
        if not self.steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.steps):
            raise InvalidInputError(f"steps must be positive integers (grid intervals), got {self.steps}")
        if any(not (isinstance(t, float | int) and 0 < t < 1) for t in self.tolerances):
            raise InvalidInputError(f"tolerances must lie in (0, 1), got {self.tolerances}")
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise InvalidInputError(f"n_samples must be a positive integer, got {self.n_samples!r}")
        if self.dtype not in ("float32", "float64"):
            raise InvalidInputError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0 < self.reference_tol < 1e-6:
            raise InvalidInputError(f"reference_tol must lie in (0, 1e-6), got {self.reference_tol!r}")
        if not self.target_error > 0:
            raise InvalidInputError(f"target_error must be > 0, got {self.target_error!r}")
        for p in self.paths:
            if p not in path_names():
                raise InvalidInputError(f"unknown path {p!r}; valid paths are: {', '.join(path_names())}")

    @classmethod
    def quick(cls) -> Config:
        return cls(
            problems=("gaussian_aniso", "8gaussians"),
            paths=("linear",),
            grids=("uniform",),
            solvers=("euler", "heun", "midpoint", "rk4", "dopri5", "ddim", "dpm_solver_pp", "torchdiffeq:method=rk4"),
            steps=(4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
            tolerances=(1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9),
            n_samples=128,
            reference_tol=1e-11,
        )


# ----------------------------------------------------------------------------------------------
# solvers and grids by name
# ----------------------------------------------------------------------------------------------
def _registry() -> tuple[dict[str, Any], list[str]]:
    import solvers  # noqa: PLC0415

    return solvers.SOLVERS, solvers.solver_names()


def ode_solver_names() -> list[str]:
    """Registered solvers of kind ``"ode"`` or ``"exponential"`` (what this study can run)."""
    registry, names = _registry()
    return [n for n in names if getattr(registry[n], "kind", "ode") in ("ode", "exponential")]


def _parse_option(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value;key=value"`` → (name, options)."""
    name, _, opts = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(";")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidInputError(f"bad solver spec {spec!r}: options are key=value separated by ';'")
        options[key.strip()] = _parse_option(value.strip())
    return name.strip(), options


def make_solver(spec: str, **extra: Any) -> Any:
    """A solver instance from a spec (raises `InvalidInputError` for unknown names or options)."""
    from solvers import get_solver  # noqa: PLC0415

    name, options = parse_spec(spec)
    valid = ode_solver_names()
    if name not in valid:
        raise InvalidInputError(f"unknown ODE solver {name!r} in solvers; valid ODE solvers are: {', '.join(valid)}")
    return get_solver(name, **options, **extra)


BACKENDS = ("torchdiffeq", "scipy")
EXTRA_SPECS = (
    "dpm_solver:order=1",
    "dpm_solver:order=3",
    "dpm_solver_pp:order=3",
    "unipc:order=3",
    "torchdiffeq:method=euler",
    "torchdiffeq:method=rk4",
    "torchdiffeq:method=dopri5",
    "scipy:method=RK45",
    "scipy:method=DOP853",
)


def expand_solvers(config: Config) -> list[str]:
    """The solver specs of a config: ``("all",)`` is every registered ODE/exponential solver with its
    defaults, plus `EXTRA_SPECS` (higher orders of the exponential integrators, backend methods)."""
    if tuple(config.solvers) != ("all",):
        return list(config.solvers)
    names = [n for n in ode_solver_names() if n not in BACKENDS]
    return names + [s for s in EXTRA_SPECS if parse_spec(s)[0] in ode_solver_names()]


def is_adaptive(solver: Any) -> bool:
    """Adaptive: our embedded pairs (``adaptive``) and whole-solve backends run with tolerances."""
    if getattr(solver, "adaptive", False):
        return True
    return callable(getattr(solver, "solve_full", None)) and not getattr(solver, "fixed", False)


def make_grid(name: str, n: int, path: GaussianPath) -> torch.Tensor:
    from solvers.grids import get_grid  # noqa: PLC0415

    kwargs = dict(GRID_OPTIONS.get(name, {}))
    if name in PATH_GRIDS:
        kwargs["path"] = path
    return get_grid(name, n, **kwargs)


def validate(config: Config) -> None:
    from solvers.grids import grid_names  # noqa: PLC0415

    valid_problems = problem_names()
    for p in config.problems:
        if p not in valid_problems:
            raise InvalidInputError(f"unknown problem {p!r}; valid problems are: {', '.join(valid_problems)}")
    for g in config.grids:
        if g not in grid_names():
            raise InvalidInputError(f"unknown grid {g!r}; valid grids are: {', '.join(grid_names())}")
    for spec in expand_solvers(config):
        make_solver(spec)


def cells(config: Config) -> list[dict[str, Any]]:
    out = []
    for problem in config.problems:
        for path in config.paths:
            for spec in expand_solvers(config):
                solver = make_solver(spec)
                fixed_ok = not is_adaptive(solver) or (getattr(solver, "adaptive", False) and config.adaptive_fixed)
                for grid in config.grids if fixed_ok else ():
                    out.append({"problem": problem, "path": path, "grid": grid, "solver": spec, "mode": "fixed"})
                if is_adaptive(solver):
                    out.append({"problem": problem, "path": path, "grid": "-", "solver": spec, "mode": "adaptive"})
    return out


# ----------------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------------
def _scipy_solve(field: Any, x1: torch.Tensor, tol: float) -> torch.Tensor:
    from scipy.integrate import solve_ivp  # noqa: PLC0415

    shape = x1.shape

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).view(shape)
        return field(t, x).reshape(-1).numpy()

    sol = solve_ivp(rhs, (1.0, 0.0), x1.reshape(-1).numpy(), method="DOP853", rtol=tol, atol=tol)
    if not sol.success:
        raise OdeflowError(f"the reference solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1].copy()).view(shape)


@functools.lru_cache(maxsize=32)
def reference(
    problem_name: str, path_name: str, n: int, seed: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(x1, x0_ref, ref_err)`` in float64 on the CPU: exact flow map, or DOP853 at ``tol``.

    ``ref_err`` is 0 for the closed form, else the RMSE between the solves at ``tol`` and ``100·tol``
    (an upper estimate of the reference's own error).
    """
    problem, path = get_problem(problem_name), get_path(path_name)
    x1, _ = problem.start(n, path, seed, dtype=torch.float64)
    if problem.closed_form:
        return x1, problem.flow_map(x1, 1.0, 0.0, path), 0.0
    field = problem.field(path)
    ref = _scipy_solve(field, x1, tol)
    loose = _scipy_solve(field, x1, 100.0 * tol)
    return x1, ref, metrics.endpoint_rmse(loose, ref)


# ----------------------------------------------------------------------------------------------
# one cell
# ----------------------------------------------------------------------------------------------
def _fixed(solver: Any, field: Any, x: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Solve on ``grid``: `solve` for fixed-step solvers; the step API for embedded pairs (no control)."""
    from solvers import solve  # noqa: PLC0415

    if not solver.adaptive:
        sol = solve(field, x, solver=solver, grid=grid)
        return sol.x, sol.stats.nfe
    times = grid.tolist()
    state = solver.init(field, times[0], x)
    for t0, t1 in zip(times[:-1], times[1:]):
        x, state = solver.step(field, t0, t1, x, state)
    if not bool(torch.isfinite(x).all()):
        raise OdeflowError("non-finite state")
    return x, state.nfe


def run_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    from solvers import solve  # noqa: PLC0415

    dtype = getattr(torch, config.dtype)
    path = get_path(cell["path"])
    field = get_problem(cell["problem"]).field(path)
    x1_64, ref, ref_err = reference(cell["problem"], cell["path"], config.n_samples, config.seed, config.reference_tol)
    x1 = x1_64.to(device=config.device, dtype=dtype)
    theory = float(getattr(make_solver(cell["solver"]), "order", math.nan))
    rows = []
    sweep = config.steps if cell["mode"] == "fixed" else config.tolerances
    for value in sweep:
        row: dict[str, Any] = {"steps": None, "tol": None}
        status, err, err_max, nfe = "ok", math.nan, math.nan, None
        start = time.perf_counter()
        try:
            if cell["mode"] == "fixed":
                row["steps"] = int(value)
                solver = make_solver(cell["solver"])
                x, nfe = _fixed(solver, field, x1, make_grid(cell["grid"], int(value), path))
            else:
                row["tol"] = float(value)
                solver = make_solver(cell["solver"], rtol=float(value), atol=float(value))
                sol = solve(field, x1, solver=solver, t_span=(1.0, 0.0))
                x, nfe = sol.x, sol.stats.nfe
            wall = time.perf_counter() - start
            x64 = x.detach().to("cpu", torch.float64)
            if bool(torch.isfinite(x64).all()):
                err = metrics.endpoint_rmse(x64, ref)
                err_max = metrics.endpoint_max_error(x64, ref)
            else:
                status = "nonfinite"
        except OdeflowError as exc:
            wall = time.perf_counter() - start
            status = type(exc).__name__
        row.update(
            {"nfe": nfe, "err": err, "err_max": err_max, "ref_err": ref_err, "theory_order": theory,
             "status": status, "wall_s": wall}
        )
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def nfe_at(nfe: np.ndarray, err: np.ndarray, target: float) -> float:
    """Work to reach ``err <= target``: log–log interpolation at the first crossing (NaN if never)."""
    order = np.argsort(nfe, kind="stable")
    n, e = nfe[order], err[order]
    ok = np.isfinite(e) & (e > 0)
    n, e = n[ok], e[ok]
    hit = np.flatnonzero(e <= target)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(n[0])
    la, lb = math.log(e[i - 1]), math.log(e[i])
    frac = (la - math.log(target)) / (la - lb)
    return float(math.exp(math.log(n[i - 1]) + frac * (math.log(n[i]) - math.log(n[i - 1]))))


FLOAT_FLOOR = {"float64": 1e-14, "float32": 1e-6}  # round-off floor of an O(1) solution


def fits(df: pd.DataFrame, target: float, dtype: str = "float64") -> pd.DataFrame:
    """One row per (problem, path, grid, solver, mode): fitted order ± stderr, points, best error, NFE@target.

    The error floor handed to `fit_order` is the larger of the reference's error and the round-off
    floor of ``dtype``.
    """
    keys = ["problem", "path", "grid", "solver", "mode"]
    out = []
    for key, g in df.groupby(keys, sort=False):
        nfe = g["nfe"].to_numpy(dtype=float)
        err = g["err"].to_numpy(dtype=float)
        ref_err = float(g["ref_err"].iloc[0])
        floor = max(ref_err, FLOAT_FLOOR[dtype])
        try:
            fit = metrics.fit_order(nfe, err, floor=floor)
            order, stderr, used = fit.order, fit.stderr, fit.n_used
            mask = fit.used
        except InvalidInputError:
            order, stderr, used, mask = math.nan, math.nan, 0, tuple(False for _ in err)
        finite = err[np.isfinite(err)]
        out.append(
            dict(
                zip(keys, key),
                theory=float(g["theory_order"].iloc[0]),
                order=order,
                stderr=stderr,
                points=used,
                best_err=float(finite.min()) if finite.size else math.nan,
                **{f"NFE@{target:g}": nfe_at(nfe, err, target)},
                _used=mask,
            )
        )
    return pd.DataFrame(out)


def report(df: pd.DataFrame, out: Path, config: Config) -> Summary:
    table = fits(df, config.target_error, config.dtype)
    plots = []
    for (problem, path), sub in df.groupby(["problem", "path"], sort=False) if config.plots else []:
        fsub = table[(table["problem"] == problem) & (table["path"] == path)]
        plots.append(_plot(sub, fsub, problem, path, config, x="nfe", out=out))
        if "wall_s" in sub:
            plots.append(_plot(sub, fsub, problem, path, config, x="wall_s", out=out))
    notes = [
        f"Observed order = −slope of log RMSE vs log NFE, fitted on the asymptotic range (`odeflow.metrics."
        f"fit_order`; errors within 10× of the reference error and stalled points dropped); ± is its standard "
        f"error. `NFE@{config.target_error:g}`: work to reach RMSE {config.target_error:g} (log–log "
        "interpolation). Mode `fixed` runs embedded pairs on the grid without error control; mode `adaptive` "
        "sweeps rtol = atol over the tolerances (its slope is a work–precision slope, not a method order).",
        "Exponential integrators starting at t = 1 on the linear path take a first step with infinite "
        "log-SNR step, which limits their global order to 2 there (see `solvers.exponential`). Narrow mixture "
        "components (sd ≤ 0.1) stretch the pre-asymptotic range: their fitted orders at these step counts are "
        "lower than the theory. The orders are checked against theory on the smooth `gaussian_aniso` problem.",
    ]
    show = table.drop(columns=["_used"])
    return Summary(table=show, notes=notes, plots=plots, title=TITLE)


def _plot(
    df: pd.DataFrame, fits_df: pd.DataFrame, problem: str, path: str, config: Config, *, x: str, out: Path
) -> Path:
    grids = [g for g in df["grid"].unique() if g != "-"] or ["-"]
    fig, axes = new_figure(ncols=len(grids), size=(5.2, 5.6))
    axes = np.atleast_1d(axes)
    solvers = list(dict.fromkeys(df["solver"]))
    colors = {s: f"C{i % 10}" for i, s in enumerate(solvers)}
    markers = "os^vD<>pPX*h"
    adaptive = df[df["mode"] == "adaptive"]
    for ax, grid in zip(axes, grids):
        for i, solver in enumerate(solvers):
            sub = df[(df["grid"] == grid) & (df["solver"] == solver) & (df["mode"] == "fixed")]
            if sub.empty:
                continue
            f = fits_df[(fits_df["grid"] == grid) & (fits_df["solver"] == solver) & (fits_df["mode"] == "fixed")]
            fit = f.iloc[0] if not f.empty else None
            slope = -fit["order"] if fit is not None and x == "nfe" else None
            plot_fitted(
                ax, sub[x], sub["err"], solver, slope=slope, stderr=fit["stderr"] if slope is not None else None,
                used=fit["_used"] if fit is not None and x == "nfe" else None, marker=markers[i % len(markers)],
                color=colors[solver],
            )
        for solver in adaptive["solver"].unique():
            sub = adaptive[adaptive["solver"] == solver]
            ax.plot(sub[x], sub["err"], "--", color=colors[solver], marker="x", ms=4, label=f"{solver} (adaptive)")
        xlabel = "NFE (field evaluations)" if x == "nfe" else "wall time per solve (s)"
        title = f"{problem}, {path} path, {grid} grid" if grid != "-" else f"{problem}, {path} path"
        loglog_axes(ax, xlabel, f"endpoint RMSE vs reference ({config.dtype})", title)
        ax.legend(
            fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
            title="fitted slope ± s.e. (filled points entered the fit)", title_fontsize=6,
        )
    name = "error_vs_nfe" if x == "nfe" else "error_vs_time"
    return save_figure(fig, out / f"{name}_{problem}_{path}.png")


def run(config: Config | None = None, out: str | Path | None = None, **kw: Any) -> pd.DataFrame:
    """Run the study through `studies.runner.run_study` and return its rows."""
    from studies.runner import run_study  # noqa: PLC0415

    return run_study(sys.modules[__name__], config or Config(), out, **kw).df
