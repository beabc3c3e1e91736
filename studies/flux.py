r"""Study ``flux``: FLUX.1 as an ODE — error vs NFE, straightness and cost of every solver.

For each available variant (dev, schnell; or the tiny random stand-ins of ``--quick``) and each
(prompt, seed) cell:

1. **reference**: RK4 on the checkpoint's own grid (``grids.flux`` for dev, uniform for
   schnell) with ``reference_steps`` steps (64 → 256 NFE), its trajectory saved; its own error
   is estimated by Richardson's rule from the same solve at half the steps,
   $\lVert x_{n/2} - x_n\rVert / (2^4 - 1)$;
2. **straightness** along the reference (Liu et al. 2022): $S = \int_0^1 \mathbb E\lVert(x_1 -
   x_0) - v(x_t, t)\rVert^2 dt$ by the trapezoid rule on the reference grid (one extra transformer
   call per grid point), its normalised form $S / \mathbb E\lVert x_1 - x_0\rVert^2$ and the
   path-length ratio $\mathbb E\int\lVert v\rVert dt / \mathbb E\lVert x_1 - x_0\rVert$;
3. **error vs NFE**: every solver (Euler — the pipeline default —, Heun, RK4, DPM-Solver++ 2M,
   UniPC, Adams–Bashforth, and an adaptive pair over a tolerance sweep) on the default and
   alternative grids, at NFE budgets (steps = budget / NFE-per-step), measured against the
   reference by the RMSE of the packed latents and the PSNR of the decoded images;
4. **cost**: wall time per solve and per NFE, the time of one bare transformer call, the
   solver-overhead fraction $1 - \text{NFE}\cdot t_\text{call} / t_\text{solve}$ and the peak GPU
   memory of each solve (CUDA only).

The report writes a PSNR table (NFE budgets as columns) per variant and grid, RMSE, adaptive,
reference/straightness and cost tables in the notes, log–log error plots and image grids across
step counts. schnell is adversarially distilled (LADD) to sample in 1–4 steps: its network is
not the marginal velocity field of the data, so "error against a 64-step reference" measures
distance to an ODE solution schnell was never trained to follow; it is reported apart.

Weights are read from local folders or the Hugging Face cache (``dev_weights``,
``schnell_weights``; never downloaded); variants without weights are skipped with a note, and a
run with no variant available stops at once with the expected layout. Under
``torchrun --nproc-per-node N`` the (prompt, seed) cells shard across GPUs through the runner;
each rank encodes the prompts (cached on disk), frees the text encoders, then loads the
transformer, so T5 and the transformer are never resident together.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odeflow._checks import check_choice
from odeflow.errors import InvalidInputError, OdeflowError
from studies.report import Summary, markdown_table, new_figure, save_figure
from studies.runner import derive_seed, finite_or_nan, run_study

NAME = "flux"
TITLE = "FLUX.1 as a rectified-flow ODE: error vs NFE, straightness and cost"
CACHE_VERSION = 1

# A small fixed prompt set (cells take the first ``n_prompts``).
PROMPTS: tuple[str, ...] = (
    "a red fox sitting in the snow in the morning light",
    "an old stone castle on a misty lake at sunrise",
    "a watercolor painting of a city street in the rain",
    "a close-up photo of a small owl with big golden eyes",
    "a wooden house in a green forest under a blue sky",
    "a portrait of an old man reading a book by the window",
    "a white horse running on a beach at sunset",
    "a bowl of fruit on a wooden table, studio lighting",
)

VARIANTS = ("dev", "schnell", "tiny-dev", "tiny-schnell")
FAMILY = {
    "dev": "guidance-distilled flow (dev)",
    "tiny-dev": "tiny random model (dev architecture)",
    "schnell": "adversarially distilled (schnell)",
    "tiny-schnell": "tiny random model (schnell architecture)",
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
GRID_CHOICES = ("default", "uniform", "flux", "shifted", "quadratic", "karras", "log_snr_uniform")

# study label -> (registered solver name, constructor options)
SOLVER_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("euler", {}),
    "heun": ("heun", {}),
    "midpoint": ("midpoint", {}),
    "rk4": ("rk4", {}),
    "dpmpp_2m": ("dpm_solver_pp", {"order": 2, "multistep": True}),
    "dpmpp_3m": ("dpm_solver_pp", {"order": 3, "multistep": True}),
    "unipc": ("unipc", {"order": 2}),
    "ddim": ("ddim", {}),
    "ab2": ("adams_bashforth", {"order": 2}),
    "ab3": ("adams_bashforth", {"order": 3}),
    "ab4": ("adams_bashforth", {"order": 4}),
    "bosh3": ("bosh3", {}),
    "dopri5": ("dopri5", {}),
    "tsit5": ("tsit5", {}),
}

SCHNELL_NOTE = (
    "**schnell is reported apart.** FLUX.1 [schnell] is adversarially distilled (latent adversarial "
    "diffusion distillation) to sample in 1–4 steps; its network is not the marginal velocity field "
    "of the data, so its ODE is not the probability-flow ODE of a data distribution. Its errors "
    "below measure the distance to a {steps}-step RK4 solution of an ODE it was never trained to follow — a "
    "small error does not mean a better image, and its 4-step Euler samples are the intended output."
)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Config:
    """The flux study. Budgets are NFE per solve; steps = budget // (NFE per step of the solver)."""

    variants: tuple[str, ...] = ("dev", "schnell")
    dev_weights: str = "black-forest-labs/FLUX.1-dev"
    schnell_weights: str = "black-forest-labs/FLUX.1-schnell"
    n_prompts: int = 4
    n_seeds: int = 2
    height: int = 1024
    width: int = 1024
    guidance: float = 3.5
    dtype: str = "bfloat16"
    reference_steps: int = 64
    solvers: tuple[str, ...] = ("euler", "heun", "rk4", "dpmpp_2m", "unipc", "ab3", "dopri5")
    grids: tuple[str, ...] = ("default", "uniform", "flux", "log_snr_uniform")
    nfe: tuple[int, ...] = (4, 8, 16, 32, 64)
    schnell_nfe: tuple[int, ...] = (1, 2, 4, 8, 16)
    tolerances: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
    max_adaptive_steps: int = 200
    image_solvers: tuple[str, ...] = ("euler", "heun", "dpmpp_2m")
    images: bool = True
    timing_repeats: int = 5
    embedding_cache: str = ""
    seed: int = 0
    device: str = field(default_factory=_default_device)

    def __post_init__(self) -> None:
        for name in ("variants", "solvers", "grids", "nfe", "schnell_nfe", "tolerances", "image_solvers"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or (not value and name not in ("image_solvers", "tolerances")):
                raise InvalidInputError(f"{name} must be a non-empty tuple, got {value!r}")
        for v in self.variants:
            check_choice(v, VARIANTS, "variant")
        if len(set(self.variants)) != len(self.variants):
            raise InvalidInputError(f"variants repeat: {self.variants}")
        for g in self.grids:
            check_choice(g, GRID_CHOICES, "grid")
        for s in (*self.solvers, *self.image_solvers):
            check_choice(s, list(SOLVER_SPECS), "solver label")
        for name in ("n_prompts", "n_seeds", "reference_steps", "max_adaptive_steps", "timing_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {v!r}")
        if self.n_prompts > len(PROMPTS):
            raise InvalidInputError(f"n_prompts must be <= {len(PROMPTS)} (the embedded prompt list)")
        if self.reference_steps % 2:
            raise InvalidInputError(f"reference_steps must be even (its half checks it), got {self.reference_steps}")
        for name in ("nfe", "schnell_nfe"):
            if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in getattr(self, name)):
                raise InvalidInputError(f"{name} must hold integers >= 1 (NFE budgets), got {getattr(self, name)}")
        if any(not (isinstance(t, float) and 0.0 < t < 1.0) for t in self.tolerances):
            raise InvalidInputError(f"tolerances must be numbers in (0, 1), got {self.tolerances}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidInputError(f"{name} must be a positive integer (pixels), got {v!r}")
        if not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance) and self.guidance >= 0):
            raise InvalidInputError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        check_choice(self.dtype, DTYPES, "dtype")

    @classmethod
    def quick(cls) -> Config:
        """The tiny random models on CPU: the whole pipeline in seconds (numbers mean nothing)."""
        return cls(
            variants=("tiny-dev", "tiny-schnell"),
            n_prompts=1,
            n_seeds=1,
            height=16,
            width=16,
            dtype="float32",
            reference_steps=16,
            grids=("default", "uniform"),
            nfe=(2, 4, 8),
            schnell_nfe=(1, 2, 4),
            tolerances=(1e-2,),
            max_adaptive_steps=50,
            image_solvers=("euler", "heun"),
            timing_repeats=2,
            device="cpu",
        )


# ----------------------------------------------------------------------------------------------
# variants and weights
# ----------------------------------------------------------------------------------------------
def _weights(config: Config, variant: str) -> str:
    return config.dev_weights if variant == "dev" else config.schnell_weights


def availability(config: Config) -> dict[str, str | None]:
    """Per variant: ``None`` if it can run here, else why not (missing weights …). File system only."""
    from models.flux import resolve_weights  # noqa: PLC0415 (no diffusers import)

    status: dict[str, str | None] = {}
    for v in config.variants:
        if v.startswith("tiny-"):
            status[v] = None
            continue
        try:
            resolve_weights(_weights(config, v), local_files_only=True)
            status[v] = None
        except InvalidInputError as exc:
            status[v] = str(exc)
    return status


def validate(config: Config) -> None:
    """Solver names registered, a device that exists, and at least one variant with weights."""
    import solvers  # noqa: PLC0415

    for label in (*config.solvers, *(config.image_solvers if config.images else ())):
        name = SOLVER_SPECS[label][0]
        if name not in solvers.SOLVERS:
            raise InvalidInputError(
                f"solver {label!r} needs the registered solver {name!r}, which is not available; "
                f"registered: {', '.join(solvers.solver_names())}"
            )
    if str(config.device).startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {config.device!r} asked for but CUDA is not available; use cpu")
    status = availability(config)
    if all(reason is not None for reason in status.values()):
        details = "\n".join(f"- {v}: {reason}" for v, reason in status.items())
        raise InvalidInputError(
            "no FLUX.1 variant can run: weights are loaded only from local folders or the Hugging Face "
            "cache (set --set dev_weights=DIR / schnell_weights=DIR), or use --quick for the tiny models.\n" + details
        )


def cells(config: Config) -> list[dict[str, Any]]:
    """One cell per (variant, prompt, seed) of each runnable variant: the unit of sharding."""
    status = availability(config)
    return [
        {"variant": v, "prompt": p, "seed": s}
        for v in config.variants
        if status[v] is None
        for p in range(config.n_prompts)
        for s in range(config.n_seeds)
    ]


# ----------------------------------------------------------------------------------------------
# the loaded model, kept across cells of one process
# ----------------------------------------------------------------------------------------------
@dataclass
class _Session:
    key: tuple[Any, ...]
    model: Any
    conds: Any  # FluxCondition of all prompts


_SESSION: dict[str, _Session] = {}


def _device(config: Config) -> torch.device:
    from models.flux import default_device  # noqa: PLC0415

    dev = torch.device(config.device)
    if dev.type == "cuda" and dev.index is None:
        return default_device()  # cuda:LOCAL_RANK under torchrun
    return dev


def _session(config: Config, variant: str) -> _Session:
    """Load a variant once per process: encode all prompts, free the encoders, load the transformer."""
    from models.flux import FluxModel  # noqa: PLC0415

    device = _device(config)
    key = (variant, _weights(config, variant), config.dtype, str(device), config.n_prompts, config.embedding_cache)
    current = _SESSION.get("current")
    if current is not None and current.key == key:
        return current
    _SESSION.clear()  # one model at a time: a second 12 B transformer would not fit
    current = None
    import gc  # noqa: PLC0415

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    dtype = DTYPES[config.dtype]
    prompts = list(PROMPTS[: config.n_prompts])
    if variant.startswith("tiny-"):
        model = FluxModel.tiny(
            seed=0 if variant == "tiny-dev" else 1,
            guidance_embeds=variant == "tiny-dev",
            torch_dtype=dtype,
            device=device,
        )
        conds = model.encode(prompts, cache_dir=False)
    else:
        model = FluxModel.from_pretrained(
            _weights(config, variant),
            torch_dtype=dtype,
            device=device,
            components=(),
            embedding_cache=config.embedding_cache or True,
        )
        conds = model.encode(prompts, free_encoders=True)  # T5 leaves before the transformer arrives
        model.load("transformer", "vae")
    session = _Session(key, model, conds)
    _SESSION["current"] = session
    return session


# ----------------------------------------------------------------------------------------------
# one cell
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _grid(field: Any, name: str, n: int) -> torch.Tensor:
    from odeflow.paths import LinearPath  # noqa: PLC0415
    from solvers import grids  # noqa: PLC0415

    if name == "default":
        return field.default_grid(n)
    if name == "flux":
        return grids.flux(n, field.seq_len)
    if name == "shifted":
        return grids.shifted(n, 3.0)  # SD3's shift
    if name in ("karras", "log_snr_uniform"):
        return grids.get_grid(name, n, path=LinearPath())
    return grids.get_grid(name, n)


def _grid_names(field: Any, config: Config) -> tuple[list[str], str]:
    """The config's grids with ``default`` resolved to the checkpoint's own (no duplicates)."""
    own = "flux" if field.schedule.get("use_dynamic_shifting") else "uniform"
    names = []
    for g in config.grids:
        actual = own if g == "default" else g
        if actual not in names:
            names.append(actual)
    return names, own


def _solver(label: str, **kw: Any) -> Any:
    from solvers import get_solver  # noqa: PLC0415

    name, opts = SOLVER_SPECS[label]
    return get_solver(name, **opts, **kw)


_STEPS_FOR_BUDGET: dict[tuple[str, int], int] = {}


def steps_for_budget(label: str, budget: int) -> int:
    """The most steps of solver ``label`` whose solve costs at most ``budget`` NFE (0 if none).

    NFE of a fixed-step solve depends only on the step count (e.g. Adams–Bashforth 3 spends
    3 NFE on each of its two Runge–Kutta start steps, then 1 per step), so it is found by
    counting on a zero field — no transformer call.
    """
    key = (label, budget)
    if key not in _STEPS_FOR_BUDGET:
        from odeflow.dynamics import ProbabilityFlow  # noqa: PLC0415
        from odeflow.paths import LinearPath  # noqa: PLC0415
        from solvers import grids, solve  # noqa: PLC0415

        zero = ProbabilityFlow(lambda t, x: torch.zeros_like(x), LinearPath(), "velocity")
        x = torch.zeros(1, 1, dtype=torch.float64)
        best = 0
        for steps in range(1, budget + 1):
            if solve(zero, x, solver=_solver(label), grid=grids.uniform(steps)).stats.nfe > budget:
                break
            best = steps
        _STEPS_FOR_BUDGET[key] = best
    return _STEPS_FOR_BUDGET[key]


def _psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(((img.float() - ref.float()) ** 2).mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def _rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((x.float() - ref.float()) ** 2).mean().sqrt())


def _timed_solve(field: Any, x1: torch.Tensor, device: torch.device, **kw: Any) -> tuple[Any, float, float]:
    from solvers import solve  # noqa: PLC0415

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    sol = solve(field, x1, **kw)
    _sync(device)
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return sol, wall, peak


def _eval_cost(field: Any, x: torch.Tensor, device: torch.device, repeats: int) -> float:
    """Seconds of one bare transformer call: the median of ``repeats`` timed calls after a warm-up."""
    t = torch.tensor(0.5, dtype=x.dtype, device=x.device)
    field(t, x)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        field(t, x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_cell(config: Config, cell: dict[str, Any]) -> list[dict[str, Any]]:
    from odeflow.metrics import normalized_straightness, path_length_ratio, straightness  # noqa: PLC0415

    variant = cell["variant"]
    session = _session(config, variant)
    model = session.model
    device = torch.device(model.device)
    field = model.field(session.conds.select(cell["prompt"]), config.height, config.width, guidance=config.guidance)
    gen = torch.Generator().manual_seed(derive_seed(config.seed, "noise", cell["seed"]))  # shared by variants
    x1 = field.noise(1, gen)
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        eval_s = _eval_cost(field, x1, device, config.timing_repeats)
        grid_names, own = _grid_names(field, config)

        # 1. reference and its Richardson error estimate
        n_ref = config.reference_steps
        ref_grid = field.default_grid(n_ref)
        ref, ref_wall, ref_peak = _timed_solve(field, x1, device, solver=_solver("rk4"), grid=ref_grid, save="steps")
        half = _timed_solve(field, x1, device, solver=_solver("rk4"), grid=field.default_grid(n_ref // 2))[0]
        x_ref = ref.x
        img_ref = model.decode(x_ref, config.height, config.width)

        # 2. straightness along the reference (one transformer call per grid point)
        vs = torch.stack([field(torch.tensor(float(t), dtype=x1.dtype), x) for t, x in zip(ref.ts, ref.xs)])
        ts = ref.ts
        rows.append(
            {
                "kind": "reference",
                "grid": own,
                "solver": "rk4",
                "steps": n_ref,
                "nfe": ref.stats.nfe,
                "ref_error_est": _rmse(half.x, x_ref) / 15.0,
                "straightness": straightness(ts, ref.xs, vs),
                "normalized_straightness": normalized_straightness(ts, ref.xs, vs),
                "path_length_ratio": path_length_ratio(ts, ref.xs, vs),
                "chord_norm": float((ref.xs[0] - ref.xs[-1]).flatten(1).norm(dim=1).mean()),
                "peak_mem_gb": ref_peak,
                "eval_wall_s": eval_s,
                "solve_wall_s": ref_wall,
            }
        )
        del vs, ref

        # 3. every solver on every grid
        budgets = config.schnell_nfe if "schnell" in variant else config.nfe
        for grid_name in grid_names:
            for label in config.solvers:
                probe = _solver(label)
                if getattr(probe, "adaptive", False):
                    if grid_name != own:
                        continue  # adaptive solvers choose their own steps: one grid is enough
                    for tol in config.tolerances:
                        rows.append(
                            _solve_row(
                                field, model, x1, x_ref, img_ref, config, device, eval_s,
                                grid=grid_name, label=label, budget=None, tol=tol,
                                solver=_solver(label, rtol=tol, atol=tol),
                                kw={"t_span": (1.0, 0.0), "max_steps": config.max_adaptive_steps},
                            )
                        )  # fmt: skip
                    continue
                for budget in budgets:
                    steps = steps_for_budget(label, budget)
                    if steps < 1:
                        continue
                    try:
                        grid = _grid(field, grid_name, steps)
                    except OdeflowError as exc:
                        rows.append(_failed(grid_name, label, budget, steps, exc))
                        continue
                    rows.append(
                        _solve_row(
                            field, model, x1, x_ref, img_ref, config, device, eval_s,
                            grid=grid_name, label=label, budget=budget, tol=None,
                            solver=probe, kw={"grid": grid}, steps=steps,
                        )
                    )  # fmt: skip
                    probe = _solver(label)  # a fresh instance per solve (multistep history)
    for r in rows:
        r["prompt_text"] = PROMPTS[cell["prompt"]]
    return rows


def _failed(grid: str, label: str, budget: int | None, steps: int | None, exc: Exception) -> dict[str, Any]:
    return {
        "kind": "solve",
        "grid": grid,
        "solver": label,
        "budget": budget,
        "steps": steps,
        "status": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
    }


def _solve_row(
    field: Any,
    model: Any,
    x1: torch.Tensor,
    x_ref: torch.Tensor,
    img_ref: torch.Tensor,
    config: Config,
    device: torch.device,
    eval_s: float,
    *,
    grid: str,
    label: str,
    budget: int | None,
    tol: float | None,
    solver: Any,
    kw: dict[str, Any],
    steps: int | None = None,
) -> dict[str, Any]:
    try:
        sol, wall, peak = _timed_solve(field, x1, device, solver=solver, **kw)
    except OdeflowError as exc:
        row = _failed(grid, label, budget, steps, exc)
        row["tol"] = tol
        return row
    img = model.decode(sol.x, config.height, config.width)
    return {
        "kind": "solve",
        "grid": grid,
        "solver": label,
        "budget": budget,
        "tol": tol,
        "steps": sol.stats.steps,
        "nfe": sol.stats.nfe,
        "rejected": sol.stats.rejected,
        "latent_rmse": finite_or_nan(_rmse(sol.x, x_ref)),
        "psnr_db": _psnr(img, img_ref),
        "status": "ok",
        "peak_mem_gb": peak,
        "eval_wall_s": eval_s,
        "solve_wall_s": wall,
    }


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _family_order(variants: Sequence[str]) -> list[str]:
    """dev-like variants first, schnell-like after (reported apart)."""
    return sorted(variants, key=lambda v: ("schnell" in v, VARIANTS.index(v)))


def _pivot(solves: pd.DataFrame, value: str) -> pd.DataFrame:
    fixed = solves[solves["budget"].notna()].copy()
    if fixed.empty:
        return pd.DataFrame()
    fixed["budget"] = fixed["budget"].astype(int)
    table = fixed.pivot_table(index=["variant", "grid", "solver"], columns="budget", values=value, aggfunc="mean")
    table = table.dropna(axis=1, how="all")
    table.columns = [f"NFE {c}" for c in table.columns]
    table = table.reset_index()
    order = {v: i for i, v in enumerate(_family_order(list(table["variant"].unique())))}
    table["_o"] = table["variant"].map(order)
    return table.sort_values(["_o", "grid", "solver"], kind="stable").drop(columns="_o").reset_index(drop=True)


def report(df: pd.DataFrame, out: Path, config: Config) -> Summary:
    out = Path(out)
    if df.empty:
        return Summary(table=pd.DataFrame({"note": ["no cells ran"]}))
    for col in ("budget", "tol", "latent_rmse", "psnr_db", "nfe", "status"):
        if col not in df.columns:
            df[col] = np.nan
    refs = df[df["kind"] == "reference"]
    solves = df[df["kind"] == "solve"].copy()
    ok = solves[solves["status"] == "ok"]
    notes: list[str] = []
    variants = _family_order(list(df["variant"].unique()))

    is_schnell = ok["variant"].str.contains("schnell")
    main_ok, schnell_ok = ok[~is_schnell], ok[is_schnell]
    if main_ok.empty:  # only schnell ran: its table is the main one, the note says what it means
        main_ok, schnell_ok = schnell_ok, schnell_ok.iloc[0:0]
        notes.append(SCHNELL_NOTE.format(steps=config.reference_steps))
    table = _pivot(main_ok, "psnr_db")
    if not table.empty:
        table.insert(1, "family", table["variant"].map(FAMILY))
    notes.append(
        "Mean PSNR (dB) of the decoded images against the reference solve (RK4, "
        f"{config.reference_steps} steps on the checkpoint's grid), per NFE budget; higher is closer. "
        "A budget is the most transformer calls a solve may make: each solver takes the most steps that fit "
        "(Heun 2 and RK4 4 NFE per step; Adams–Bashforth pays for its Runge–Kutta start); results.csv has "
        "the exact NFE of every solve. "
        f"{config.n_prompts} prompt(s) × {config.n_seeds} seed(s) per variant, {config.height}×{config.width} images, "
        f"{config.dtype} transformer, "
        "float32 solver state."
    )
    rmse = _pivot(main_ok, "latent_rmse")
    if not rmse.empty:
        notes.append(
            "**Latent RMSE** against the reference (packed latents), mean over cells:\n\n" + markdown_table(rmse)
        )
    if not schnell_ok.empty:
        notes.append(
            "## schnell, reported apart\n\n"
            + SCHNELL_NOTE.format(steps=config.reference_steps)
            + "\n\n**PSNR (dB)** against the reference:\n\n"
            + markdown_table(_pivot(schnell_ok, "psnr_db"))
            + "\n\n**Latent RMSE** against the reference:\n\n"
            + markdown_table(_pivot(schnell_ok, "latent_rmse"))
        )

    adaptive = ok[ok["budget"].isna() & ok["tol"].notna()]
    if not adaptive.empty:
        ad = (
            adaptive.groupby(["variant", "solver", "tol"], sort=False)
            .agg(nfe=("nfe", "mean"), rejected=("rejected", "mean"), latent_rmse=("latent_rmse", "mean"),
                 psnr_db=("psnr_db", "mean"))
            .reset_index()
        )  # fmt: skip
        notes.append("**Adaptive solvers** (rtol = atol = tol; NFE is what they chose):\n\n" + markdown_table(ad))

    ref_table = (
        refs.groupby("variant", sort=False)
        .agg(
            cells=("nfe", "size"),
            reference_nfe=("nfe", "mean"),
            ref_error_est=("ref_error_est", "mean"),
            straightness=("straightness", "mean"),
            normalized_straightness=("normalized_straightness", "mean"),
            path_length_ratio=("path_length_ratio", "mean"),
        )
        .reset_index()
    )
    notes.append(
        "**Reference and straightness** along it (Liu et al. 2022; trapezoid rule on the reference grid). "
        "ref_error_est is the Richardson estimate of the reference's own latent RMSE, ‖x_{n/2} − x_n‖/15: "
        "errors below about 10× it are not resolved.\n\n" + markdown_table(ref_table)
    )

    timing = _cost_table(df)
    if not timing.empty:
        notes.append(
            "**Cost.** s_per_nfe = solve wall time / NFE (median over solves); call_s = one bare transformer "
            "call; overhead = 1 − NFE·call_s / solve time (the solver's share, median); peak_mem_gb = peak "
            "CUDA memory of a solve (max; NaN on CPU). Wall times are in timings.csv, not results.csv.\n\n"
            + markdown_table(timing)
        )

    failed = solves[solves["status"] != "ok"]
    if not failed.empty:
        fails = failed.groupby(["variant", "grid", "solver", "status"], sort=False).size().reset_index(name="count")
        notes.append("**Failed solves** (recorded, not hidden):\n\n" + markdown_table(fails))

    skipped = {v: r for v, r in availability(config).items() if r is not None}
    for v, reason in skipped.items():
        notes.append(f"Variant {v} was skipped: {reason.splitlines()[0]}")
    if any(v.startswith("tiny-") for v in variants):
        notes.append(
            "Tiny variants are random untrained models of the FLUX.1 architecture (CPU smoke run): their "
            "numbers check the pipeline, not Flux."
        )

    plots = []
    for v in variants:
        plots += _plot_errors(ok[ok["variant"] == v], out, v)
    if config.images:
        threads = torch.get_num_threads()
        if _device(config).type == "cpu":
            torch.set_num_threads(1)  # as the runner runs cells: oversubscribed CPU threads are 10x slower
        try:
            for v in variants:
                try:
                    plots.append(_image_grid(config, v, out))
                except OdeflowError as exc:  # weights gone since the cells ran: say so, keep the report
                    notes.append(f"No image grid for {v}: {exc}")
        finally:
            torch.set_num_threads(threads)
    return Summary(table=table, notes=notes, plots=plots, title=TITLE)


def _cost_table(df: pd.DataFrame) -> pd.DataFrame:
    if "solve_wall_s" not in df.columns:
        return pd.DataFrame()
    d = df[(df["kind"] == "solve") & (df["status"] == "ok")].copy()
    if d.empty:
        return pd.DataFrame()
    d["s_per_nfe"] = d["solve_wall_s"] / d["nfe"]
    d["overhead"] = 1.0 - d["nfe"] * d["eval_wall_s"] / d["solve_wall_s"]
    return (
        d.groupby(["variant", "solver"], sort=False)
        .agg(
            s_per_nfe=("s_per_nfe", "median"),
            call_s=("eval_wall_s", "median"),
            overhead=("overhead", "median"),
            peak_mem_gb=("peak_mem_gb", "max"),
        )
        .reset_index()
    )


def _plot_errors(ok: pd.DataFrame, out: Path, variant: str) -> list[Path]:
    from odeflow.metrics import fit_order  # noqa: PLC0415
    from studies.report import loglog_axes, plot_fitted  # noqa: PLC0415

    if ok.empty:
        return []
    grids_ = list(dict.fromkeys(ok["grid"]))
    fig, axes = new_figure(ncols=len(grids_), nrows=2, size=(4.6, 3.6))
    axes = np.asarray(axes).reshape(2, len(grids_))
    for j, g in enumerate(grids_):
        sub = ok[ok["grid"] == g]
        for label in dict.fromkeys(sub["solver"]):
            s = sub[sub["solver"] == label]
            key = "budget" if s["budget"].notna().any() else "tol"
            agg = s.groupby(key).agg(nfe=("nfe", "mean"), rmse=("latent_rmse", "mean"), psnr=("psnr_db", "mean"))
            agg = agg.sort_values("nfe")
            slope = stderr = used = None
            if len(agg) >= 2:
                try:
                    fit = fit_order(agg["nfe"].to_numpy(), agg["rmse"].to_numpy())
                    slope, stderr, used = fit.slope, fit.stderr, fit.used
                except InvalidInputError:
                    pass
            marker = "s" if key == "tol" else "o"
            plot_fitted(
                axes[0, j], agg["nfe"], agg["rmse"], label, slope=slope, stderr=stderr, used=used, marker=marker
            )
            psnr = agg["psnr"].replace([np.inf], np.nan)
            axes[1, j].plot(agg["nfe"], psnr, marker=marker, label=label, alpha=0.8)
        loglog_axes(axes[0, j], "NFE (transformer calls)", "latent RMSE vs reference", f"{variant}: {g} grid")
        axes[0, j].legend(fontsize=7)
        axes[1, j].set_xscale("log")
        for ax in axes[:, j]:
            ticks = sorted({int(round(n)) for n in sub["nfe"].dropna()})
            if len(ticks) <= 8:
                ax.set_xticks(ticks, [str(n) for n in ticks])
                ax.minorticks_off()
        axes[1, j].set_xlabel("NFE (transformer calls)")
        axes[1, j].set_ylabel("PSNR vs reference (dB)")
        axes[1, j].grid(True, alpha=0.3)
        axes[1, j].legend(fontsize=7)
    return [save_figure(fig, out / f"error_vs_nfe_{variant}.png")]


def _to_display(img: torch.Tensor, size: int = 256) -> np.ndarray:
    """(3, H, W) in [0, 1] → (h, w, 3) uint8-ready float array, downsampled for the figure."""
    x = img[None].float()
    if max(x.shape[-2:]) > size:
        scale = size / max(x.shape[-2:])
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True)
    return x[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()


def _image_grid(config: Config, variant: str, out: Path) -> Path:
    """Images of the first (prompt, seed) for ``image_solvers`` across the NFE budgets, and the reference."""
    from solvers import solve  # noqa: PLC0415

    session = _session(config, variant)
    model = session.model
    field = model.field(session.conds.select(0), config.height, config.width, guidance=config.guidance)
    x1 = field.noise(1, torch.Generator().manual_seed(derive_seed(config.seed, "noise", 0)))
    budgets = config.schnell_nfe if "schnell" in variant else config.nfe
    labels = [s for s in config.image_solvers if not getattr(_solver(s), "adaptive", False)] or ["euler"]
    fig, axes = new_figure(ncols=len(budgets) + 1, nrows=len(labels), size=(1.9, 2.0))
    axes = np.asarray(axes).reshape(len(labels), len(budgets) + 1)
    with torch.no_grad():
        ref = solve(field, x1, solver=_solver("rk4"), grid=field.default_grid(config.reference_steps)).x
        ref_img = _to_display(model.decode(ref, config.height, config.width)[0])
        for i, label in enumerate(labels):
            for j, budget in enumerate(budgets):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                steps = steps_for_budget(label, budget)
                if i == 0:
                    ax.set_title(f"NFE {budget}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(label, fontsize=8)
                if steps < 1:
                    ax.set_facecolor("0.9")
                    continue
                try:
                    x = solve(field, x1, solver=_solver(label), grid=field.default_grid(steps)).x
                except OdeflowError:
                    ax.set_facecolor("0.9")
                    continue
                ax.imshow(_to_display(model.decode(x, config.height, config.width)[0]), interpolation="nearest")
            ax = axes[i, -1]
            ax.imshow(ref_img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"reference\nRK4 × {config.reference_steps}", fontsize=8)
    fig.suptitle(f"{variant}: “{PROMPTS[0]}” (seed 0, default grid)", fontsize=9)
    return save_figure(fig, out / f"images_{variant}.png")


def run(config: Config | None = None, out: str | Path | None = None, **kw: Any) -> Any:
    """Run the study through the resumable runner (see `studies.runner.run_study`)."""
    return run_study(sys.modules[__name__], config or Config(), out, **kw)
