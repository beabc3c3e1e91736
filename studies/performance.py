r"""Performance study: what our solvers cost and what each NFE buys, side by side with the peers.

Three parts, each a set of cells of the sweep runner (`studies.runner`):

**(a) overhead** — the same field, the same grid, the same NFE, timed in one process:
our `solve` (Euler, Heun, RK4, RK3/8) against a hand-written torch loop
(`studies.peers.hand_loop`), ``torchdiffeq.odeint`` on the same grid (its ``rk4`` is the 3/8
rule), flow_matching's ``ODESolver`` (time axis flipped) and, for Euler, a pipeline-style loop
over diffusers' ``FlowMatchEulerDiscreteScheduler``. Fields: the exact 8-Gaussians mixture field
and a small random MLP (`models.nets.TimeMLP`), float32, at each of ``overhead_batches`` (a large batch,
where the field dominates, and a small one, where per-step overhead shows). With ``compile`` two more
rows run our solve and torchdiffeq on `solvers.compiled.compile_field` of the same field. Timing:
`studies.bench.time_interleaved` (warm-up, interleaved rounds, GC off), reported as paired ratios
``ours / peer`` (median over rounds). The field is shared, so a ratio below 1 is overhead saved.

**(b) adaptive** — work at equal endpoint error: our Dopri5 (per-sample and RMS norms) and Tsit5
against ``torchdiffeq`` dopri5 and scipy RK45/DOP853 over a tolerance sweep, on exact mixture
fields, float64. Each curve (error, NFE, time) is interpolated log–log at the errors torchdiffeq
reached, giving NFE and time ratios at equal error.

**(c) accuracy** — endpoint RMSE at NFE 4, 8, 16 on exact rectified-flow (linear path) fields:
every listed solver of ours on the uniform grid and on `solvers.grids.optimized` grids (tuned on a
probe batch drawn independently of the evaluation batch) against the peers with their default
schedules: diffusers Euler / DPM-Solver++ (2M) / UniPC (bh2) in flow mode, flow_matching
euler/midpoint/rk4 and torchdiffeq euler/midpoint/heun2/heun3/rk4 (uniform grids). The table
compares the best of ours with the best peer at each NFE.

References are tight float64 solves (our DOP853, ``rtol = atol = reference_tol``) from the same
starting points (common random numbers). Wall-clock columns (``*_wall_s``, incl. the paired
ratios ``ratio_wall_s``) go to ``timings.csv``; ``results.csv`` holds NFE and errors only.
Threads: whatever the runner pins (``odeflow study performance --threads N``; default 1),
recorded in the ``threads`` column.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath
from studies import peers
from studies.bench import interpolate_loglog, paired_ratio, time_interleaved
from studies.problems import get_problem, problem_names
from studies.report import Summary, loglog_axes, new_figure, save_figure
from studies.runner import derive_seed

NAME = "performance"
TITLE = "Performance: overhead, adaptive work at equal error, accuracy per NFE (side by side with the peers)"
CACHE_VERSION = 1

PARTS = ("overhead", "adaptive", "accuracy")
OVERHEAD_FIELDS = ("8gaussians", "mlp")
OVERHEAD_METHODS = ("euler", "heun", "rk4", "rk38")
# peer method names for each of our fixed-step methods (None: the peer has no such method)
TORCHDIFFEQ_OF = {"euler": "euler", "heun": "heun2", "midpoint": "midpoint", "rk4": "rk4", "rk38": "rk4"}
FLOW_MATCHING_OF = {"euler": "euler", "heun": "heun2", "midpoint": "midpoint", "rk4": "rk4", "rk38": "rk4"}
OURS_ADAPTIVE = {
    "ours dopri5": ("dopri5", {}),
    "ours dopri5 (rms)": ("dopri5", {"norm": "rms"}),
    "ours tsit5 (rms)": ("tsit5", {"norm": "rms"}),
}
PEERS_ADAPTIVE = ("torchdiffeq dopri5", "scipy RK45", "scipy DOP853")


@dataclass(frozen=True)
class Config:
    """Performance sweep; ``parts`` chooses among ``overhead``, ``adaptive`` and ``accuracy``."""

    parts: tuple[str, ...] = PARTS
    # (a) overhead
    overhead_fields: tuple[str, ...] = OVERHEAD_FIELDS
    overhead_methods: tuple[str, ...] = ("euler", "heun", "rk4")
    overhead_batches: tuple[int, ...] = (65536, 1024)
    overhead_nfe: int = 8
    compile: bool = True
    mlp_width: int = 64
    mlp_depth: int = 2
    repeats: int = 7
    warmup: int = 1
    # (b) adaptive
    adaptive_problems: tuple[str, ...] = ("8gaussians", "checkerboard")
    adaptive_batch: int = 512
    tolerances: tuple[float, ...] = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
    adaptive_repeats: int = 3
    # (c) accuracy
    accuracy_problems: tuple[str, ...] = ("8gaussians", "checkerboard", "mixture64")
    accuracy_nfe: tuple[int, ...] = (4, 8, 16)
    accuracy_batch: int = 4096
    probe_batch: int = 2048
    highdim_batch: int = 512
    highdim_probe_batch: int = 256
    ours: tuple[str, ...] = ("euler", "heun", "midpoint", "rk4", "rk38", "ddim", "dpm_solver_pp", "unipc")
    optimize: tuple[str, ...] = ("midpoint", "unipc")
    optimize_evals: int = 12
    optimize_max_evals: int = 100
    reference_tol: float = 1e-10
    plots: bool = True
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {v!r}")

        if not self.parts or any(p not in PARTS for p in self.parts):
            raise InvalidInputError(f"parts must be a non-empty subset of {', '.join(PARTS)}; got {self.parts}")
        for name in (
            "overhead_nfe",
            "mlp_width",
            "mlp_depth",
            "repeats",
            "adaptive_batch",
            "adaptive_repeats",
            "accuracy_batch",
            "probe_batch",
            "highdim_batch",
            "highdim_probe_batch",
            "optimize_evals",
            "optimize_max_evals",
        ):
            positive_int(name)
        if not self.overhead_batches or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.overhead_batches
        ):
            raise InvalidInputError(f"overhead_batches must be positive integers, got {self.overhead_batches}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise InvalidInputError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        for f in self.overhead_fields:
            if f not in OVERHEAD_FIELDS:
                raise InvalidInputError(f"unknown overhead field {f!r}; valid: {', '.join(OVERHEAD_FIELDS)}")
        for m in self.overhead_methods:
            if m not in OVERHEAD_METHODS:
                raise InvalidInputError(f"unknown overhead method {m!r}; valid: {', '.join(OVERHEAD_METHODS)}")
        if self.overhead_nfe % 4:
            raise InvalidInputError(
                f"overhead_nfe must be a multiple of 4 (Euler, Heun and RK4 at equal NFE), got {self.overhead_nfe}"
            )
        if not self.tolerances or any(not (isinstance(t, float | int) and 0 < t < 1) for t in self.tolerances):
            raise InvalidInputError(f"tolerances must lie in (0, 1), got {self.tolerances}")
        if not 0 < self.reference_tol <= 1e-8:
            raise InvalidInputError(f"reference_tol must lie in (0, 1e-8], got {self.reference_tol!r}")
        if not self.accuracy_nfe or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.accuracy_nfe
        ):
            raise InvalidInputError(f"accuracy_nfe must be positive integers, got {self.accuracy_nfe}")
        for p in (*self.adaptive_problems, *self.accuracy_problems):
            if p not in problem_names():
                raise InvalidInputError(f"unknown problem {p!r}; valid problems are: {', '.join(problem_names())}")
        for s in self.optimize:
            if s not in self.ours:
                raise InvalidInputError(f"optimize lists {s!r}, which is not in ours {self.ours}")

    @classmethod
    def quick(cls) -> Config:
        return cls(
            overhead_fields=("8gaussians",),
            overhead_methods=("euler", "rk4"),
            overhead_batches=(8192,),
            overhead_nfe=8,
            compile=False,
            repeats=5,
            adaptive_problems=("8gaussians",),
            adaptive_batch=512,
            tolerances=(1e-3, 1e-4, 1e-5, 1e-6),
            adaptive_repeats=1,
            accuracy_problems=("8gaussians",),
            accuracy_nfe=(4, 8),
            accuracy_batch=2048,
            probe_batch=512,
            highdim_batch=128,
            highdim_probe_batch=64,
            ours=("euler", "midpoint", "rk4", "dpm_solver_pp", "unipc"),
            optimize=("unipc",),
            optimize_evals=8,
        )


def validate(config: Config) -> None:
    """Check the solver names against the registry (needs the solvers imported)."""
    import solvers  # noqa: PLC0415

    names = solvers.solver_names()
    for s in config.ours:
        if s not in names:
            raise InvalidInputError(f"unknown solver {s!r} in ours; valid solvers are: {', '.join(names)}")
        if getattr(solvers.get_solver(s), "adaptive", False):
            raise InvalidInputError(f"ours lists the adaptive solver {s!r}; part (c) compares fixed-step solvers")


def cells(config: Config) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "overhead" in config.parts:
        for b in config.overhead_batches:
            for f in config.overhead_fields:
                for m in config.overhead_methods:
                    out.append({"part": "overhead", "problem": f, "method": m, "batch": b})
    if "adaptive" in config.parts:
        for p in config.adaptive_problems:
            out.append({"part": "adaptive", "problem": p})
    if "accuracy" in config.parts:
        for p in config.accuracy_problems:
            for n in config.accuracy_nfe:
                out.append({"part": "accuracy", "problem": p, "nfe": n})
    return out


# ----------------------------------------------------------------------------------------------
# shared pieces
# ----------------------------------------------------------------------------------------------
PATH = LinearPath()


def _mlp_field(width: int, depth: int, seed: int) -> Any:
    """A random (not trained) TimeMLP velocity field: the cost of a small learned field."""
    from models.nets import TimeMLP  # noqa: PLC0415

    net = TimeMLP(2, width=width, depth=depth, seed=derive_seed(seed, "mlp"))
    gen = torch.Generator().manual_seed(derive_seed(seed, "mlp-out"))
    with torch.no_grad():  # the last layer starts at zero: give it weights so the field is not trivial
        last = net.net[-1]
        last.weight.copy_(0.3 * torch.randn(last.weight.shape, generator=gen))
    net.eval()
    return net.flow(PATH)


@functools.lru_cache(maxsize=16)
def _reference(
    problem: str, n: int, seed: int, tol: float, role: str = "eval"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Starting points (float64) and their tight reference end points; cached per process."""
    from solvers import solve  # noqa: PLC0415
    from solvers.runge_kutta import DOP853  # noqa: PLC0415

    prob = get_problem(problem)
    x1, _ = prob.start(n, PATH, derive_seed(seed, role, problem), dtype=torch.float64)
    field = prob.field(PATH)
    sol = solve(field, x1, solver=DOP853(rtol=tol, atol=tol), t_span=(1.0, 0.0))
    return x1, sol.x, sol.stats.nfe


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((a.to(torch.float64) - b.to(torch.float64)) ** 2)))


def _mean_err(a: torch.Tensor, b: torch.Tensor) -> float:
    d = (a.to(torch.float64) - b.to(torch.float64)).reshape(a.shape[0], -1)
    return float(torch.linalg.vector_norm(d, dim=1).mean())


# ----------------------------------------------------------------------------------------------
# (a) overhead
# ----------------------------------------------------------------------------------------------
def _overhead_impls(field: Any, x: torch.Tensor, method: str, nfe: int, compiled: Any = None) -> dict[str, Any]:
    """The implementations compared in part (a), as zero-argument callables on ``field``.

    With ``compiled`` (a `solvers.compiled.CompiledField` of the same field) two more rows:
    our solve and torchdiffeq, each on the compiled field.
    """
    from solvers import get_solver, grids, solve  # noqa: PLC0415

    solver = get_solver(method)
    steps = nfe // solver.nfe_per_step
    grid = grids.uniform(steps)
    runs: dict[str, Any] = {
        "ours": lambda: solve(field, x, solver=solver, grid=grid).x,
        "hand-written loop": lambda: peers.hand_loop(field, x, grid, method),
        "torchdiffeq": lambda: peers.torchdiffeq_fixed(field, x, grid, TORCHDIFFEQ_OF[method]),
        "flow_matching": lambda: peers.flow_matching_fixed(field, x, method=FLOW_MATCHING_OF[method], steps=steps),
    }
    if method == "euler":
        runs["diffusers"] = lambda: peers.diffusers_flow_euler(field, x, grid=grid)
    if compiled is not None:
        runs["ours, compiled field"] = lambda: solve(compiled, x, solver=solver, grid=grid).x
        runs["torchdiffeq, compiled field"] = lambda: peers.torchdiffeq_fixed(compiled, x, grid, TORCHDIFFEQ_OF[method])
    return runs


_COMPILED: dict[tuple[str, int], Any] = {}


def _compiled_field(key: tuple[str, int], field: Any) -> Any:
    """One `compile_field` wrapper per (field name, batch) for the whole process (compiles once)."""
    import logging  # noqa: PLC0415

    from solvers.compiled import compile_field  # noqa: PLC0415

    # the fields' host-side input checks are graph breaks by design; do not print dynamo's advice
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    if key not in _COMPILED:
        _COMPILED[key] = compile_field(field)
    return _COMPILED[key]


def _overhead(config: Config, problem: str, method: str, batch: int) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(derive_seed(config.seed, "overhead", problem))
    x = torch.randn(batch, 2, generator=gen, dtype=torch.float32)
    field = _overhead_field(config, problem)
    compiled = _compiled_field((problem, batch), field) if config.compile else None
    peer_method = {
        "ours": method,
        "hand-written loop": method,
        "torchdiffeq": TORCHDIFFEQ_OF[method],
        "flow_matching": FLOW_MATCHING_OF[method],
        "diffusers": "FlowMatchEulerDiscrete",
        "ours, compiled field": method,
        "torchdiffeq, compiled field": TORCHDIFFEQ_OF[method],
    }
    nfe = config.overhead_nfe
    with torch.no_grad():
        outputs, nfes = {}, {}
        for name in _overhead_impls(field, x, method, nfe):  # one counted, untimed run each: NFE and agreement
            counted = peers.CountingField(field)
            outputs[name] = _overhead_impls(counted, x, method, nfe)[name]()
            nfes[name] = counted.nfe
        runs = _overhead_impls(field, x, method, nfe, compiled)
        compile_s = math.nan
        if compiled is not None:  # compile outside the timed rounds (first call per signature)
            start = time.perf_counter()
            outputs["ours, compiled field"] = runs["ours, compiled field"]()
            compile_s = time.perf_counter() - start
            outputs["torchdiffeq, compiled field"] = runs["torchdiffeq, compiled field"]()
            nfes["ours, compiled field"] = nfes["ours"]
            nfes["torchdiffeq, compiled field"] = nfes["torchdiffeq"]
        timings = time_interleaved(runs, repeats=config.repeats, warmup=config.warmup)
    rows = []
    for name in runs:
        rows.append(
            {
                "impl": name,
                "peer_method": peer_method[name],
                "nfe": nfes[name],
                "threads": torch.get_num_threads(),
                "max_diff_vs_ours": float((outputs[name] - outputs["ours"]).abs().max()),
                "median_wall_s": timings[name].median,
                "min_wall_s": timings[name].min,
                "ratio_wall_s": paired_ratio(timings["ours"], timings[name]),
                "compiled_ratio_wall_s": (
                    paired_ratio(timings["ours, compiled field"], timings[name]) if compiled is not None else math.nan
                ),
                "first_call_wall_s": compile_s if name == "ours, compiled field" else math.nan,
            }
        )
    return rows


@functools.lru_cache(maxsize=4)
def _overhead_field_cached(problem: str, width: int, depth: int, seed: int) -> Any:
    if problem == "mlp":
        return _mlp_field(width, depth, seed)
    return get_problem(problem).field(PATH)


def _overhead_field(config: Config, problem: str) -> Any:
    """The field of part (a), one object per process (so its compiled code is reused)."""
    return _overhead_field_cached(problem, config.mlp_width, config.mlp_depth, config.seed)


# ----------------------------------------------------------------------------------------------
# (b) adaptive
# ----------------------------------------------------------------------------------------------
def _adaptive(config: Config, problem: str) -> list[dict[str, Any]]:
    from solvers import get_solver, solve  # noqa: PLC0415

    x1, ref, ref_nfe = _reference(problem, config.adaptive_batch, config.seed, config.reference_tol, "adaptive")
    field = get_problem(problem).field(PATH)
    rows = []
    for tol in config.tolerances:
        runs: dict[str, Any] = {}
        for label, (name, opts) in OURS_ADAPTIVE.items():
            solver = get_solver(name, rtol=tol, atol=tol, **opts)
            runs[label] = functools.partial(
                lambda s: (lambda r: (r.x, r.stats.nfe))(solve(field, x1, solver=s)), solver
            )
        runs["torchdiffeq dopri5"] = functools.partial(peers.torchdiffeq_adaptive, field, x1, rtol=tol, atol=tol)
        runs["scipy RK45"] = functools.partial(peers.scipy_adaptive, field, x1, rtol=tol, atol=tol, method="RK45")
        runs["scipy DOP853"] = functools.partial(peers.scipy_adaptive, field, x1, rtol=tol, atol=tol, method="DOP853")
        with torch.no_grad():
            results = {name: fn() for name, fn in runs.items()}
            timings = time_interleaved(runs, repeats=config.adaptive_repeats, warmup=0)
        for name, (x, nfe) in results.items():
            rows.append(
                {
                    "impl": name,
                    "tol": float(tol),
                    "batch": config.adaptive_batch,
                    "nfe": int(nfe),
                    "err": _rmse(x, ref),
                    "ref_nfe": ref_nfe,
                    "threads": torch.get_num_threads(),
                    "median_wall_s": timings[name].median,
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------
# (c) accuracy per NFE
# ----------------------------------------------------------------------------------------------
def _peer_runs(field: Any, x: torch.Tensor, nfe: int) -> dict[str, Any]:
    from solvers import grids  # noqa: PLC0415

    runs: dict[str, Any] = {
        "diffusers FlowMatchEuler": lambda f: peers.diffusers_flow_euler(f, x, steps=nfe),
        "diffusers DPM-Solver++ 2M": lambda f: peers.diffusers_multistep(f, x, nfe, "dpmsolver++"),
        "diffusers UniPC bh2": lambda f: peers.diffusers_multistep(f, x, nfe, "unipc"),
    }
    for m, k in peers.FLOW_MATCHING_METHODS.items():
        if nfe % k == 0:
            runs[f"flow_matching {m}"] = functools.partial(
                lambda f, m, n: peers.flow_matching_fixed(f, x, method=m, steps=n), m=m, n=nfe // k
            )
    for m, k in peers.TORCHDIFFEQ_FIXED.items():
        if nfe % k == 0:
            g = grids.uniform(nfe // k)
            runs[f"torchdiffeq {m}"] = functools.partial(lambda f, m, g: peers.torchdiffeq_fixed(f, x, g, m), m=m, g=g)
    return runs


def steps_for_nfe(field: Any, x: torch.Tensor, solver: Any, nfe: int) -> int | None:
    """The number of uniform-grid steps at which ``solver`` spends exactly ``nfe`` evaluations.

    Counted by dry runs on ``x`` (two points suffice), so start-up costs (Adams–Bashforth's
    Runge–Kutta start, FSAL) are included. ``None`` if no step count gives exactly ``nfe``.
    """
    from solvers import grids, solve  # noqa: PLC0415

    for n in range(nfe, 0, -1):
        used = solve(field, x, solver=solver, grid=grids.uniform(n)).stats.nfe
        if used == nfe:
            return n
        if used < nfe:
            return None
    return None


def _accuracy(config: Config, problem: str, nfe: int) -> list[dict[str, Any]]:
    from solvers import get_solver, grids, solve  # noqa: PLC0415

    prob = get_problem(problem)
    high = prob.dim > 2  # a full-covariance 64-d mixture costs ~500x more per point than a 2-d toy
    batch = config.highdim_batch if high else config.accuracy_batch
    probe_batch = config.highdim_probe_batch if high else config.probe_batch
    x1, ref, ref_nfe = _reference(problem, batch, config.seed, config.reference_tol)
    # the probe runs in float32 (twice as fast; errors here are >= 1e-4); the pilot inside is float64
    probe, _ = prob.start(probe_batch, PATH, derive_seed(config.seed, "probe", problem), dtype=torch.float32)
    field = get_problem(problem).field(PATH)
    rows = []
    with torch.no_grad():
        for name, run in _peer_runs(field, x1, nfe).items():
            counted = peers.CountingField(field)
            out = run(counted)
            rows.append(
                {
                    "impl": name,
                    "side": "peer",
                    "grid": "default",
                    "nfe_used": counted.nfe,
                    "err": _rmse(out, ref),
                    "mean_err": _mean_err(out, ref),
                }
            )
        for name in config.ours:
            solver = get_solver(name)
            n = steps_for_nfe(field, x1[:2], solver, nfe)
            if n is None:
                continue
            grid_list = [("uniform", grids.uniform(n), {})]
            if name in config.optimize and n > 1:
                evals = min(config.optimize_evals * (n - 1) + 8, config.optimize_max_evals)
                g, info = grids.optimized(field, n, probe, solver, return_info=True, max_evals=evals)
                extra = {
                    "probe_nfe": info.total_nfe,
                    "probe_loss_uniform": info.loss_uniform,
                    "probe_loss": info.loss,
                    "start": info.start,
                }
                grid_list.append(("optimized", g, extra))
            for gname, g, extra in grid_list:
                sol = solve(field, x1, solver=solver, grid=g)
                rows.append(
                    {
                        "impl": f"ours {name}",
                        "side": "ours",
                        "grid": gname,
                        "nfe_used": sol.stats.nfe,
                        "err": _rmse(sol.x, ref),
                        "mean_err": _mean_err(sol.x, ref),
                        "grid_points": " ".join(f"{v:.4f}" for v in g.tolist()),
                        **extra,
                    }
                )
    for r in rows:
        r["batch"] = batch
        r["probe_batch"] = probe_batch
        r["ref_nfe"] = ref_nfe
    return rows


def run_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    if cell["part"] == "overhead":
        return _overhead(config, cell["problem"], cell["method"], int(cell["batch"]))
    if cell["part"] == "adaptive":
        return _adaptive(config, cell["problem"])
    return _accuracy(config, cell["problem"], int(cell["nfe"]))


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def overhead_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (field, method): our time and the paired ratios ours / peer."""
    d = df[df["part"] == "overhead"]
    rows = []
    for (problem, method, batch), g in d.groupby(["problem", "method", "batch"], sort=False):
        by = g.set_index("impl")
        row = {
            "field": problem,
            "method": method,
            "batch": int(batch),
            "NFE": int(by.loc["ours", "nfe"]),
            "ours ms": 1e3 * float(by.loc["ours", "median_wall_s"]),
        }
        for impl, label in (
            ("hand-written loop", "ours/hand"),
            ("torchdiffeq", "ours/torchdiffeq"),
            ("flow_matching", "ours/flow_matching"),
            ("diffusers", "ours/diffusers"),
        ):
            row[label] = float(by.loc[impl, "ratio_wall_s"]) if impl in by.index else math.nan
        if "ours, compiled field" in by.index:
            row["compiled ours/torchdiffeq"] = float(by.loc["torchdiffeq", "compiled_ratio_wall_s"])
            row["compiled ours/compiled torchdiffeq"] = float(
                by.loc["torchdiffeq, compiled field", "compiled_ratio_wall_s"]
            )
        rows.append(row)
    return pd.DataFrame(rows)


def adaptive_table(df: pd.DataFrame) -> pd.DataFrame:
    """NFE and time ratios of each of ours vs each peer at the errors torchdiffeq reached."""
    d = df[df["part"] == "adaptive"]
    rows = []
    for problem, g in d.groupby("problem", sort=False):
        curves = {impl: c.sort_values("tol") for impl, c in g.groupby("impl", sort=False)}
        base = curves.get("torchdiffeq dopri5")
        if base is None:
            continue
        for ours in OURS_ADAPTIVE:
            if ours not in curves:
                continue
            c = curves[ours]
            for peer in PEERS_ADAPTIVE:
                if peer not in curves:
                    continue
                p = curves[peer]
                nfe_r, time_r = [], []
                for e in base["err"]:
                    on, ot = (interpolate_loglog(c["err"], c[col], e) for col in ("nfe", "median_wall_s"))
                    pn, pt = (interpolate_loglog(p["err"], p[col], e) for col in ("nfe", "median_wall_s"))
                    if all(math.isfinite(v) for v in (on, ot, pn, pt)):
                        nfe_r.append(on / pn)
                        time_r.append(ot / pt)
                rows.append(
                    {
                        "problem": problem,
                        "ours": ours,
                        "peer": peer,
                        "points": len(nfe_r),
                        "NFE ratio (median)": float(np.median(nfe_r)) if nfe_r else math.nan,
                        "NFE ratio (max)": float(np.max(nfe_r)) if nfe_r else math.nan,
                        "time ratio (median)": float(np.median(time_r)) if time_r else math.nan,
                        "time ratio (max)": float(np.max(time_r)) if time_r else math.nan,
                    }
                )
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Best of ours vs best peer at each (problem, NFE)."""
    d = df[df["part"] == "accuracy"]
    rows = []
    for (problem, nfe), g in d.groupby(["problem", "nfe"], sort=False):
        g = g[g["nfe_used"] == nfe]
        peer = g[g["side"] == "peer"].sort_values("err")
        ours = g[g["side"] == "ours"].sort_values("err")
        ours_u = ours[ours["grid"] == "uniform"]
        if peer.empty or ours.empty:
            continue
        bp, bo = peer.iloc[0], ours.iloc[0]
        rows.append(
            {
                "problem": problem,
                "NFE": int(nfe),
                "best peer": bp["impl"],
                "peer err": float(bp["err"]),
                "best ours": f"{bo['impl'][5:]} ({bo['grid']})",
                "ours err": float(bo["err"]),
                "ours/peer": float(bo["err"] / bp["err"]),
                "ours uniform best": float(ours_u["err"].min()) if not ours_u.empty else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _plots(df: pd.DataFrame, out: Path) -> list[Path]:
    paths: list[Path] = []
    ad = df[df["part"] == "adaptive"]
    if not ad.empty:
        probs = list(dict.fromkeys(ad["problem"]))
        fig, axes = new_figure(2, len(probs), size=(5.0, 4.0))
        axes = np.asarray(axes).reshape(len(probs), 2)
        for j, p in enumerate(probs):
            g = ad[ad["problem"] == p]
            for col, (ycol, ylab) in enumerate((("nfe", "NFE"), ("median_wall_s", "wall time (s)"))):
                ax = axes[j][col]
                for impl, c in g.groupby("impl", sort=False):
                    c = c.sort_values("err")
                    ax.plot(c["err"], c[ycol], "o-", ms=3, label=impl)
                loglog_axes(ax, "endpoint RMSE", ylab, f"{p}: {ylab} vs error (adaptive)")
            axes[j][1].legend(fontsize=7)
        paths.append(save_figure(fig, out / "adaptive_work_precision.png"))
    ac = df[df["part"] == "accuracy"]
    if not ac.empty:
        probs = list(dict.fromkeys(ac["problem"]))
        fig, axes = new_figure(len(probs), 1, size=(5.0, 4.0))
        axes = np.asarray(axes).reshape(1, len(probs))
        for j, p in enumerate(probs):
            ax = axes[0][j]
            g = ac[(ac["problem"] == p) & (ac["nfe_used"] == ac["nfe"])]
            for label, sel in (
                ("best peer", g["side"] == "peer"),
                ("best of ours, uniform grid", (g["side"] == "ours") & (g["grid"] == "uniform")),
                ("best of ours, optimised grid", (g["side"] == "ours") & (g["grid"] == "optimized")),
            ):
                best = g[sel].groupby("nfe")["err"].min()
                if not best.empty:
                    ax.plot(best.index, best.values, "o-", label=label)
            loglog_axes(ax, "NFE", "endpoint RMSE", f"{p} (rectified flow, exact field)")
            ax.legend(fontsize=7)
        paths.append(save_figure(fig, out / "accuracy_per_nfe.png"))
    return paths


def report(df: pd.DataFrame, out: Path, config: Config) -> Summary:
    parts = []
    notes = []
    if "overhead" in set(df.get("part", [])):
        t = overhead_table(df)
        notes.append(
            "**(a) Overhead** (paired ratios of wall time, ours / peer, median over rounds; < 1: ours is faster):"
            "\n\n" + _md(t)
        )
        parts.append(t.assign(part="overhead"))
    if "adaptive" in set(df.get("part", [])):
        t = adaptive_table(df)
        notes.append(
            "**(b) Adaptive, at equal endpoint error** (ours / peer, interpolated at torchdiffeq's errors):\n\n"
            + _md(t)
        )
    if "accuracy" in set(df.get("part", [])):
        t = accuracy_table(df)
        notes.append(
            "**(c) Accuracy per NFE** (endpoint RMSE against a tight reference; optimised grids tuned on an "
            "independent probe batch):\n\n" + _md(t)
        )
    plots = _plots(df, out) if config.plots else []
    summary_rows = _headline(df)
    return Summary(table=summary_rows, notes=notes, plots=plots, title=TITLE)


def _md(t: pd.DataFrame) -> str:
    from studies.report import markdown_table  # noqa: PLC0415

    return markdown_table(t)


def _headline(df: pd.DataFrame) -> pd.DataFrame:
    """The judged ratios in one small table."""
    rows = []
    parts = set(df.get("part", []))
    if "overhead" in parts:
        t = overhead_table(df)
        for _, r in t[t["method"] == "rk4"].iterrows():
            where = f"({r['field']}, batch {r['batch']})"
            rows.append({"measure": f"(a) RK4 time, ours/hand-written {where}", "value": r["ours/hand"]})
            rows.append({"measure": f"(a) RK4 time, ours/torchdiffeq {where}", "value": r["ours/torchdiffeq"]})
            if "compiled ours/torchdiffeq" in r and math.isfinite(r["compiled ours/torchdiffeq"]):
                rows.append(
                    {
                        "measure": f"(a) RK4 time, ours with compile_field/torchdiffeq {where}",
                        "value": r["compiled ours/torchdiffeq"],
                    }
                )
    if "adaptive" in parts:
        t = adaptive_table(df)
        t = t[t["peer"] == "torchdiffeq dopri5"]
        for _, r in t.iterrows():
            who = f"{r['ours']}/torchdiffeq dopri5 ({r['problem']}"
            rows.append({"measure": f"(b) NFE at equal error, {who}, max)", "value": r["NFE ratio (max)"]})
            rows.append({"measure": f"(b) time at equal error, {who}, median)", "value": r["time ratio (median)"]})
    if "accuracy" in parts:
        t = accuracy_table(df)
        for _, r in t.iterrows():
            measure = f"(c) error at NFE {r['NFE']}, best ours/best peer ({r['problem']})"
            rows.append({"measure": measure, "value": r["ours/peer"]})
    return pd.DataFrame(rows)


def run(config: Config | None = None, out: str | Path | None = None, **kw: Any):
    """Run the study with the sweep runner (see `studies.runner.run_study`)."""
    from studies.runner import run_study  # noqa: PLC0415

    return run_study(__import__(__name__, fromlist=["_"]), config or Config(), out, **kw)
