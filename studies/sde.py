r"""SDE study: strong and weak error of SDE solvers, and ODE vs SDE samplers at equal NFE.

**Part 1 — strong and weak error vs steps.** The reverse SDE $dx = (v - \tfrac12\gamma^2 s)\,dt
+ \gamma\,d\bar W$ with $\gamma = $ ``gamma``$\cdot g$ (``gamma = 1``: the classic reverse SDE of Song
et al. 2021) is integrated from exact samples of the $t = 1$ marginal to $t = 0$ on a smooth
problem (a single Gaussian, exact score), every solver driven by the **same** Brownian paths
(`solvers.brownian.BrownianPath`, one per sample, consistent under refinement):

* strong error $\big(\mathbb E\lVert X_N - X_{\text{ref}}\rVert^2/d\big)^{1/2}$ against a fine reference
  (stochastic Heun with ``reference_steps`` steps on the same paths);
* weak error $|\mathbb E\lVert X_N\rVert^2 - \mathbb E\lVert x_0\rVert^2|$ against the exact data law
  (the reverse SDE with the exact score preserves the marginals), computed **exactly**: on
  Gaussian data every scheme here is affine in (state, noise), so the law of $X_N$ is Gaussian
  and one batched solve with probe increments gives its mean and covariance (`exact_law`), with
  no Monte Carlo error; also the $W_2$ distance between that Gaussian and the data law.

Theory for additive noise (every reverse SDE of a Gaussian path): Euler–Maruyama strong 1,
weak 1; stochastic Heun strong 1, weak at least 1 (Kloeden & Platen 1992; it is measured at 2
here, the known weak order of Heun's method with additive noise). DDIM with $\eta = 1$ (DDPM
ancestral) discretises the same SDE.

**Part 2 — distributions at equal NFE.** Samplers ``solver@path`` (ODE solvers on the PF-ODE,
SDE solvers on the reverse SDE, DDIM with ``eta`` > 0 on the flow) draw ``n_samples`` points of
a toy for each NFE budget; the samples are scored by sliced $W_2$, energy distance, mean NLL
under the exact density and a k-NN estimate of KL(q‖p) (`odeflow.metrics`), each beside its
**sample-size floor** (the same metric between independent samples of the data, mean ± std of 3
draws). ``NFE@target`` is the smallest work at which the sliced $W_2$ falls below
``target_factor`` × its floor — the primer's "a flow needs a few steps, diffusion 20–50",
measured on exact fields (no training error).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odeflow import metrics
from odeflow.dynamics import ReverseSDE
from odeflow.errors import InvalidInputError, OdeflowError
from odeflow.paths import get_path, path_names
from studies.convergence import nfe_at, parse_spec
from studies.problems import get_problem, problem_names
from studies.report import Summary, loglog_axes, markdown_table, new_figure, plot_fitted, save_figure
from studies.runner import derive_seed

NAME = "sde"
TITLE = "SDE vs ODE: strong/weak error and distribution error at equal NFE"
CACHE_VERSION = 1


@dataclass(frozen=True)
class Config:
    """SDE study: part 1 on ``sde_problem``/``sde_path``, part 2 on ``dist_problems`` with ``samplers``."""

    sde_problem: str = "gaussian_aniso"
    sde_path: str = "vp"
    sde_solvers: tuple[str, ...] = ("euler_maruyama", "sde_heun", "ddim:eta=1")
    steps: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
    reference_steps: int = 4096
    n_paths: int = 1000
    gamma: float = 1.0
    dist_problems: tuple[str, ...] = ("8gaussians", "checkerboard")
    samplers: tuple[str, ...] = (
        "euler@linear",
        "heun@linear",
        "dpm_solver_pp@vp",
        "euler@vp",
        "ddim:eta=1@vp",
        "euler_maruyama@vp",
        "sde_heun@vp",
    )
    nfe: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    n_samples: int = 2000
    target_factor: float = 2.0
    kl_tol: float = 0.05
    floor_repeats: int = 10
    plots: bool = True
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        def positive_ints(name: str, values: tuple[int, ...]) -> None:
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise InvalidInputError(f"{name} must be positive integers, got {values}")

        positive_ints("steps", self.steps)
        positive_ints("nfe", self.nfe)
        for name in ("reference_steps", "n_paths", "n_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InvalidInputError(f"{name} must be an integer >= 2, got {value!r}")
        if self.reference_steps < 4 * max(self.steps):
            raise InvalidInputError(
                f"reference_steps ({self.reference_steps}) must be >= 4 × the largest of steps ({max(self.steps)})"
            )
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise InvalidInputError(f"gamma must be a positive number (γ = gamma·g), got {self.gamma!r}")
        if not self.target_factor > 1:
            raise InvalidInputError(f"target_factor must be > 1 (a multiple of the floor), got {self.target_factor!r}")
        if not self.kl_tol > 0:
            raise InvalidInputError(f"kl_tol must be > 0 (nats above the KL floor), got {self.kl_tol!r}")
        if isinstance(self.floor_repeats, bool) or not isinstance(self.floor_repeats, int) or self.floor_repeats < 2:
            raise InvalidInputError(f"floor_repeats must be an integer >= 2, got {self.floor_repeats!r}")
        if self.sde_path not in path_names():
            raise InvalidInputError(f"unknown path {self.sde_path!r}; valid paths are: {', '.join(path_names())}")

    @classmethod
    def quick(cls) -> Config:
        return cls(
            steps=(8, 16, 32, 64, 128),
            reference_steps=1024,
            n_paths=256,
            dist_problems=("8gaussians",),
            nfe=(1, 2, 4, 8, 16, 32, 64),
            n_samples=1000,
        )


# ----------------------------------------------------------------------------------------------
# solvers and samplers
# ----------------------------------------------------------------------------------------------
def _make(spec: str, kinds: tuple[str, ...]) -> Any:
    import solvers  # noqa: PLC0415

    name, options = parse_spec(spec)
    valid = [n for n in solvers.solver_names() if getattr(solvers.SOLVERS[n], "kind", "ode") in kinds]
    if name not in valid:
        raise InvalidInputError(f"unknown solver {name!r} in {spec!r}; valid solvers here are: {', '.join(valid)}")
    return solvers.get_solver(name, **options)


def _is_stochastic(solver: Any) -> bool:
    return solver.kind == "sde" or float(getattr(solver, "eta", 0.0)) > 0.0


def parse_sampler(sampler: str) -> tuple[str, str]:
    """``"solver_spec@path"`` → (solver spec, path name)."""
    spec, at, path = sampler.rpartition("@")
    if not at or not spec:
        raise InvalidInputError(f"bad sampler {sampler!r}: write solver@path, e.g. 'heun@linear' or 'sde_heun@vp'")
    if path not in path_names():
        raise InvalidInputError(
            f"unknown path {path!r} in sampler {sampler!r}; valid paths are: {', '.join(path_names())}"
        )
    return spec, path


def validate(config: Config) -> None:
    valid = problem_names()
    for p in (config.sde_problem, *config.dist_problems):
        if p not in valid:
            raise InvalidInputError(f"unknown problem {p!r}; valid problems are: {', '.join(valid)}")
    if not get_problem(config.sde_problem).has_density:
        raise InvalidInputError(f"sde_problem {config.sde_problem!r} has no density (a point mass); pick another")
    for spec in config.sde_solvers:
        solver = _make(spec, ("sde", "exponential"))
        if not _is_stochastic(solver):
            raise InvalidInputError(f"sde_solvers entry {spec!r} is not stochastic (use an SDE solver or ddim:eta>0)")
    for sampler in config.samplers:
        spec, _ = parse_sampler(sampler)
        _make(spec, ("ode", "exponential", "sde"))
    for p in config.dist_problems:
        if not get_problem(p).has_density:
            raise InvalidInputError(f"dist problem {p!r} has no density, so NLL/KL are undefined; pick another")


def cells(config: Config) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"part": "strong", "problem": config.sde_problem, "path": config.sde_path, "solver": s}
        for s in config.sde_solvers
    ]
    for problem in config.dist_problems:
        for sampler in config.samplers:
            spec, path = parse_sampler(sampler)
            out.append({"part": "dist", "problem": problem, "path": path, "solver": spec})
    return out


def _sample(
    spec: str,
    problem_name: str,
    path_name: str,
    x1: torch.Tensor,
    grid: torch.Tensor,
    gamma: float,
    noise: int | Any,
) -> tuple[torch.Tensor, int]:
    """One sampler run from ``x1`` over ``grid``: ODE solvers on the PF-ODE, SDE solvers on the reverse SDE.

    ``noise`` is a seed (a `BrownianPath` is built from it) or a ready path object.
    """
    from solvers import solve  # noqa: PLC0415
    from solvers.brownian import BrownianPath  # noqa: PLC0415

    solver = _make(spec, ("ode", "exponential", "sde"))
    flow = get_problem(problem_name).field(get_path(path_name))
    options: dict[str, Any] = {}
    if _is_stochastic(solver):
        if isinstance(noise, int):
            noise = BrownianPath(noise, x1.shape, dtype=x1.dtype, device=x1.device)
        options["brownian"] = noise
    field = ReverseSDE(flow, gamma) if solver.kind == "sde" else flow
    sol = solve(field, x1, solver=solver, grid=grid, **options)
    return sol.x, sol.stats.nfe


class ProbePath:
    """A deterministic stand-in for a Brownian path: step ``k`` returns ``increments[k]`` (shape of the state).

    Used to read off the exact law of a scheme that is affine in (state, noise) — see `exact_law`.
    """

    def __init__(self, times: list[float], increments: torch.Tensor) -> None:
        self.shape = increments.shape[1:]
        self._index = {(a, b): k for k, (a, b) in enumerate(zip(times[:-1], times[1:]))}
        self._increments = increments

    def __call__(self, t0: float, t1: float) -> torch.Tensor:
        k = self._index.get((float(t0), float(t1)))
        if k is None:
            raise InvalidInputError(f"ProbePath was asked for ({t0}, {t1}), which is not a step of its grid")
        return self._increments[k]


def exact_law(spec: str, problem_name: str, path_name: str, steps: int, gamma: float) -> tuple[torch.Tensor, ...]:
    r"""Exact mean and covariance of a stochastic scheme's output on single-Gaussian data.

    For Gaussian data the reverse-SDE drift is affine in $x$ and the noise additive, so one step of
    Euler–Maruyama, stochastic Heun or DDIM is affine in $(x, \Delta W)$ and the output after $N$
    steps is $X_N = m_N + M(x_1 - m_1) + \sum_k B_k\,\Delta W_k$. One batched solve reads it off:
    row 0 starts at the mean $m_1$ with zero noise ($m_N$); rows $1..d$ start at $m_1 + L e_j$
    ($P_1 = LL^\top$ the covariance at $t = 1$) with zero noise (columns of $ML$); row $(k, j)$
    starts at $m_1$ with the increment $\sqrt{|\Delta t_k|}\,e_j$ at step $k$ only. Then
    $\operatorname{Cov} X_N = (ML)(ML)^\top + \sum_{k,j} c_{kj}c_{kj}^\top$ — no Monte Carlo error.
    Returns ``(mean, cov, data_mean, data_cov)`` (float64).
    """
    from solvers.grids import uniform  # noqa: PLC0415

    problem, path = get_problem(problem_name), get_path(path_name)
    if not problem.closed_form:
        raise InvalidInputError(f"exact_law needs single-Gaussian data; {problem_name!r} is a mixture")
    mu, sigma_data = problem.data.mean(), problem.data.covariance()
    d = mu.numel()
    a1, s1 = float(path.alpha(1.0)), float(path.sigma(1.0))
    m1 = a1 * mu
    chol = torch.linalg.cholesky(a1**2 * sigma_data + s1**2 * torch.eye(d, dtype=torch.float64))
    grid = uniform(steps)
    times = grid.tolist()
    dts = (grid[1:] - grid[:-1]).abs().sqrt()
    rows = 1 + d + steps * d
    x = m1.repeat(rows, 1)
    x[1 : 1 + d] += chol.T
    inc = torch.zeros(steps, rows, d, dtype=torch.float64)
    for k in range(steps):
        for j in range(d):
            inc[k, 1 + d + k * d + j, j] = dts[k]
    out, _ = _sample(spec, problem_name, path_name, x, grid, gamma, ProbePath(times, inc))
    out = out.to(torch.float64)
    mean = out[0]
    cols = out[1:] - mean
    return mean, cols.T @ cols, mu, sigma_data


def gaussian_w2(m1: torch.Tensor, c1: torch.Tensor, m2: torch.Tensor, c2: torch.Tensor) -> float:
    r"""$W_2$ between Gaussians.

    $W_2^2 = \lVert m_1 - m_2\rVert^2 + \operatorname{tr}\big(C_1 + C_2 - 2(C_2^{1/2}C_1C_2^{1/2})^{1/2}\big)$.
    """

    def sqrtm(c: torch.Tensor) -> torch.Tensor:
        w, v = torch.linalg.eigh(0.5 * (c + c.T))
        return (v * w.clamp_min(0).sqrt()) @ v.T

    r = sqrtm(c2)
    cross = sqrtm(r @ c1 @ r)
    sq = float(((m1 - m2) ** 2).sum() + torch.trace(c1 + c2 - 2 * cross))
    return math.sqrt(max(sq, 0.0))


# ----------------------------------------------------------------------------------------------
# part 1: strong and weak error
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _sde_reference(problem: str, path: str, n: int, steps: int, gamma: float, seed: int) -> tuple[torch.Tensor, ...]:
    """(x1, X_ref, X_ref at half the steps) on the common Brownian paths (float64, CPU)."""
    from solvers.grids import uniform  # noqa: PLC0415

    x1, _ = get_problem(problem).start(n, get_path(path), derive_seed(seed, "sde"), dtype=torch.float64)
    noise = derive_seed(seed, "brownian", problem)
    ref, _ = _sample("sde_heun", problem, path, x1, uniform(steps), gamma, noise)
    half, _ = _sample("sde_heun", problem, path, x1, uniform(steps // 2), gamma, noise)
    return x1, ref, half


def _strong_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    from solvers.grids import uniform  # noqa: PLC0415

    problem, path = cell["problem"], cell["path"]
    x1, ref, half = _sde_reference(problem, path, config.n_paths, config.reference_steps, config.gamma, config.seed)
    noise = derive_seed(config.seed, "brownian", problem)
    solver = _make(cell["solver"], ("sde", "exponential"))
    rows = []
    for n in config.steps:
        status, strong, weak, w2, nfe = "ok", math.nan, math.nan, math.nan, None
        try:
            x, nfe = _sample(cell["solver"], problem, path, x1, uniform(n), config.gamma, noise)
            strong = metrics.endpoint_rmse(x.to(torch.float64), ref)
            mean, cov, mu, sig = exact_law(cell["solver"], problem, path, n, config.gamma)
            weak = abs(float(torch.trace(cov) + (mean**2).sum() - torch.trace(sig) - (mu**2).sum()))
            w2 = gaussian_w2(mean, cov, mu, sig)
        except OdeflowError as exc:
            status = type(exc).__name__
        rows.append(
            {
                "steps": n,
                "nfe": nfe,
                "strong_err": strong,
                "weak_err": weak,
                "law_w2": w2,
                "ref_err": metrics.endpoint_rmse(half, ref),
                "strong_theory": float(getattr(solver, "strong_order_additive", math.nan)),
                "weak_theory": float(getattr(solver, "weak_order", 1.0)),
                "status": status,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------
# part 2: distribution error at equal NFE
# ----------------------------------------------------------------------------------------------
def _scores(x: torch.Tensor, problem_name: str, n: int, seed: int) -> dict[str, float]:
    problem = get_problem(problem_name)
    data = problem.sample_data(n, derive_seed(seed, "data", problem_name))
    return {
        "sw2": metrics.sliced_w2(x, data, seed=seed),
        "energy": metrics.energy_distance(x, data),
        "nll": metrics.mean_nll(x, problem.log_prob),
        "kl": metrics.kl_estimate(x, problem.log_prob),
    }


@functools.lru_cache(maxsize=8)
def floors(problem_name: str, n: int, seed: int, repeats: int) -> dict[str, metrics.Floor]:
    """Sample-size floors of the four metrics at sample size ``n`` (mean ± std over ``repeats`` draws)."""
    problem = get_problem(problem_name)

    def sample(m: int, s: int) -> torch.Tensor:
        return problem.sample_data(m, derive_seed(seed, "floor", s))

    one = {"two_sample": False, "repeats": repeats}
    return {
        "sw2": metrics.sample_size_floor(lambda a, b: metrics.sliced_w2(a, b, seed=seed), sample, n, repeats=repeats),
        "energy": metrics.sample_size_floor(metrics.energy_distance, sample, n, repeats=repeats),
        "nll": metrics.sample_size_floor(lambda a: metrics.mean_nll(a, problem.log_prob), sample, n, **one),
        "kl": metrics.sample_size_floor(lambda a: metrics.kl_estimate(a, problem.log_prob), sample, n, **one),
    }


def _dist_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    from solvers.grids import uniform  # noqa: PLC0415

    problem, path, spec = cell["problem"], cell["path"], cell["solver"]
    solver = _make(spec, ("ode", "exponential", "sde"))
    x1, _ = get_problem(problem).start(config.n_samples, get_path(path), derive_seed(config.seed, "dist"))
    fl = floors(problem, config.n_samples, config.seed, config.floor_repeats)
    per_step = int(getattr(solver, "nfe_per_step", 1))
    rows = []
    for budget in config.nfe:
        steps = budget // per_step
        if steps < 1:
            continue
        row: dict[str, Any] = {"nfe_budget": budget, "steps": steps, "stochastic": _is_stochastic(solver)}
        status, nfe, scores = "ok", None, dict.fromkeys(("sw2", "energy", "nll", "kl"), math.nan)
        try:
            x, nfe = _sample(spec, problem, path, x1, uniform(steps), config.gamma, derive_seed(config.seed, "noise"))
            if bool(torch.isfinite(x).all()):
                scores = _scores(x.to(torch.float64), problem, config.n_samples, config.seed)
            else:
                status = "nonfinite"
        except OdeflowError as exc:
            status = type(exc).__name__
        row.update({"nfe": nfe, **scores})
        row.update({f"{k}_floor": f.mean for k, f in fl.items()})
        row.update({f"{k}_floor_std": f.std for k, f in fl.items()})
        row["status"] = status
        rows.append(row)
    return rows


def run_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    return _strong_cell(config, cell) if cell["part"] == "strong" else _dist_cell(config, cell)


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _fit(nfe: np.ndarray, err: np.ndarray, floor: float) -> metrics.OrderFit | None:
    """`fit_order` with the reference's error as the floor (points within 3× of it dropped), or None."""
    try:
        return metrics.fit_order(nfe, err, floor=floor, floor_factor=3.0)
    except InvalidInputError:
        return None


def strong_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for solver, g in df.groupby("solver", sort=False):
        steps = g["steps"].to_numpy(dtype=float)
        floor = float(g["ref_err"].iloc[0])
        fs = _fit(steps, g["strong_err"].to_numpy(dtype=float), floor)  # errors > 3× the reference's
        fw = _fit(steps, g["weak_err"].to_numpy(dtype=float), 0.0)
        rows.append(
            {
                "solver": solver,
                "strong theory": float(g["strong_theory"].iloc[0]),
                "strong order": fs.order if fs else math.nan,
                "strong ±": fs.stderr if fs else math.nan,
                "weak theory": float(g["weak_theory"].iloc[0]),
                "weak order": fw.order if fw else math.nan,
                "weak ±": fw.stderr if fw else math.nan,
                "strong err @max steps": float(g["strong_err"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows)


def dist_table(df: pd.DataFrame, factor: float, kl_tol: float) -> pd.DataFrame:
    """Per sampler: work to reach the targets, and the scores at the largest budget, beside the floors."""
    rows = []
    for (problem, path, solver), g in df.groupby(["problem", "path", "solver"], sort=False):
        nfe = g["nfe"].to_numpy(dtype=float)
        sw2_floor, kl_floor = float(g["sw2_floor"].iloc[0]), float(g["kl_floor"].iloc[0])
        last = g.iloc[-1]
        rows.append(
            {
                "problem": problem,
                "sampler": f"{solver}@{path}",
                "kind": "SDE" if bool(g["stochastic"].iloc[0]) else "ODE",
                f"NFE: sW2 ≤ {factor:g}×floor": nfe_at(nfe, g["sw2"].to_numpy(dtype=float), factor * sw2_floor),
                f"NFE: KL ≤ floor+{kl_tol:g}": nfe_at(nfe, g["kl"].to_numpy(dtype=float), kl_floor + kl_tol),
                "max NFE": last["nfe"],
                "sW2": float(last["sw2"]),
                "sW2 floor": sw2_floor,
                "sW2 floor ±": float(g["sw2_floor_std"].iloc[0]),
                "KL": float(last["kl"]),
                "KL floor": kl_floor,
                "NLL": float(last["nll"]),
                "NLL floor (H)": float(g["nll_floor"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def report(df: pd.DataFrame, out: Path, config: Config) -> Summary:
    strong = df[df["part"] == "strong"]
    dist = df[df["part"] == "dist"]
    plots = []
    st = strong_table(strong) if not strong.empty else pd.DataFrame()
    dt = dist_table(dist, config.target_factor, config.kl_tol) if not dist.empty else pd.DataFrame()
    if config.plots and not strong.empty:
        plots.append(_strong_plot(strong, out))
    for problem in dist["problem"].unique() if config.plots and not dist.empty else []:
        plots.append(_dist_plot(dist[dist["problem"] == problem], problem, config, out))
    notes = [
        f"Strong/weak error on `{config.sde_problem}`, {config.sde_path} path, reverse SDE γ = {config.gamma:g}·g, "
        f"{config.n_paths} common Brownian paths, reference: stochastic Heun with {config.reference_steps} steps. "
        "Orders are −slopes vs steps (asymptotic range, `fit_order`). Strong: RMS pathwise error against the "
        "reference on the same Brownian paths. Weak: |E‖X_N‖² − E‖x₀‖²| from the scheme's exact Gaussian law "
        "(no Monte Carlo error). Additive noise: theory strong 1 and weak 1 for Euler–Maruyama; stochastic Heun "
        "has weak order 2 with additive noise (the solver's `weak_order` attribute states the general 1). "
        "DDIM η = 1 (DDPM ancestral) converges slowly on a uniform grid of the VP path.",
        "### Distribution error at equal NFE\n\n" + (markdown_table(dt) if not dt.empty else "_(no samplers)_"),
        f"Targets: the work (NFE, log–log interpolated) at which the sliced W2 to fresh data samples falls below "
        f"{config.target_factor:g}× its sample-size floor (the sliced W2 between two data samples of the same "
        f"size, n = {config.n_samples}, mean of {config.floor_repeats} draws), and at which the KL estimate "
        f"comes within {config.kl_tol:g} nats of its floor; `–` if no budget reached it. Scores are at the "
        "largest budget. `NLL floor (H)` is the data entropy: a sampler can go below it by collapsing onto "
        "the modes, which the KL estimate (k-NN entropy, biased; floor beside it) exposes. Fields are exact, "
        "so this measures discretisation error only.",
    ]
    return Summary(table=st, notes=notes, plots=plots, title=TITLE)


def _strong_plot(df: pd.DataFrame, out: Path) -> Path:
    fig, axes = new_figure(ncols=2, size=(5.0, 4.2))
    for i, (solver, g) in enumerate(df.groupby("solver", sort=False)):
        steps = g["steps"].to_numpy(dtype=float)
        for ax, col, floor in ((axes[0], "strong_err", float(g["ref_err"].iloc[0])), (axes[1], "weak_err", 0.0)):
            fit = _fit(steps, g[col].to_numpy(dtype=float), floor)
            plot_fitted(
                ax, steps, g[col], solver, slope=fit.slope if fit else None, stderr=fit.stderr if fit else None,
                used=fit.used if fit else None, color=f"C{i}",
            )
    loglog_axes(axes[0], "steps (uniform grid)", "strong error: RMS ‖X_N − X_ref‖ per coordinate", "strong error")
    loglog_axes(axes[1], "steps (uniform grid)", "weak error: |E‖X_N‖² − E‖X_ref‖²|", "weak error (paired)")
    for ax in axes:
        ax.legend(fontsize=7)
    return save_figure(fig, out / "sde_strong_weak.png")


def _dist_plot(df: pd.DataFrame, problem: str, config: Config, out: Path) -> Path:
    fig, axes = new_figure(ncols=3, size=(4.6, 4.0))
    for i, ((solver, path), g) in enumerate(df.groupby(["solver", "path"], sort=False)):
        style = "--" if bool(g["stochastic"].iloc[0]) else "-"
        for ax, col in zip(axes, ("sw2", "energy", "kl")):
            ax.plot(g["nfe"], g[col], style, marker="o", ms=3, color=f"C{i % 10}", label=f"{solver}@{path}")
    for ax, col, label in (
        (axes[0], "sw2", "sliced W2 to data (units of x)"),
        (axes[1], "energy", "energy distance D² (U-statistic)"),
        (axes[2], "kl", "KL(q‖p), k-NN estimate (nats)"),
    ):
        floor = float(df[f"{col}_floor"].iloc[0])
        std = float(df[f"{col}_floor_std"].iloc[0])
        if col == "sw2":
            loglog_axes(ax, "NFE (model evaluations)", label)
        else:  # values near or below 0 at the floor: linear around 0, logarithmic above
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=max(abs(floor), 1e-4))
            ax.set_xlabel("NFE (model evaluations)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            lo = float(np.nanmin(df[col])) if np.isfinite(df[col]).any() else 0.0
            ax.set_ylim(bottom=min(lo, 0.0) - 0.5 * max(abs(floor), 1e-4))
        ax.axhline(floor, color="k", lw=0.8, ls=":", label=f"floor {floor:.3g} ± {std:.2g}")
        ax.legend(fontsize=6, loc="upper right", handles=ax.get_lines()[-1:])
    axes[0].legend(fontsize=6, title="solid: ODE, dashed: SDE", title_fontsize=6)
    fig.suptitle(f"{problem}: distribution error vs NFE (n = {config.n_samples}, exact fields)", fontsize=11)
    return save_figure(fig, out / f"sde_distribution_{problem}.png")


def run(config: Config | None = None, out: str | Path | None = None, **kw: Any) -> pd.DataFrame:
    """Run the study through `studies.runner.run_study` and return its rows."""
    from studies.runner import run_study  # noqa: PLC0415

    return run_study(sys.modules[__name__], config or Config(), out, **kw).df
