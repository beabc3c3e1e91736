r"""The peers the performance study measures against, each as a plain sampler on our fields.

Every function here runs somebody else's integrator (or a hand-written loop) on one of our
fields, ``field(t, x)`` with our time axis ($t = 1$ noise → $t = 0$ data), and returns the final
state. They are written the way a user of that library would write them, so the study measures
what users would otherwise get:

| function | what runs | time axis |
|---|---|---|
| `hand_loop` | a plain torch loop of Euler / Heun / midpoint / RK4 / RK3/8 (no solver library) | ours |
| `torchdiffeq_fixed` | ``torchdiffeq.odeint(method=…)`` on our grid (``grid_constructor``) | ours (flipped inside) |
| `flow_matching_fixed` | ``flow_matching.solver.ODESolver.sample`` | theirs: $t' = 1 - t$, $v' = -v$ |
| `diffusers_flow_euler` | a pipeline-style loop over ``FlowMatchEulerDiscreteScheduler`` | $\sigma = t$ |
| `diffusers_multistep` | ``DPMSolverMultistepScheduler`` / ``UniPCMultistepScheduler`` in flow mode | $\sigma = t$ |
| `torchdiffeq_adaptive` | ``odeint(method="dopri5", rtol, atol)`` | ours |
| `scipy_adaptive` | ``scipy.integrate.solve_ivp(method="RK45"/"DOP853")`` on the flattened batch | ours |

`CountingField` counts field evaluations, so every peer's NFE is measured, not assumed.
The diffusers schedulers are used with their default options in flow mode
(``use_flow_sigmas=True, prediction_type="flow_prediction"``); their default schedules are
``linspace(1, 1/1000, n)`` + 0 (flow-match Euler) and ``1 − linspace(0, 0.999, n + 1)``
(multistep; it starts at $\sigma = 0.999$, not 1). The model is evaluated at the scheduler's own
``sigmas`` (diffusers truncates the multistep schedulers' ``timesteps`` to integers).

The imports of torchdiffeq, flow_matching, diffusers and scipy happen inside the functions,
so importing this module costs nothing and works without them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from odeflow.errors import InvalidInputError

__all__ = [
    "CountingField",
    "HAND_METHODS",
    "hand_loop",
    "TORCHDIFFEQ_FIXED",
    "torchdiffeq_fixed",
    "FLOW_MATCHING_METHODS",
    "flow_matching_fixed",
    "diffusers_flow_euler",
    "DIFFUSERS_MULTISTEP",
    "diffusers_multistep",
    "torchdiffeq_adaptive",
    "scipy_adaptive",
    "nfe_per_step",
]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# torchdiffeq's fixed-grid methods and their evaluations per step ("rk4" is the 3/8 rule).
TORCHDIFFEQ_FIXED = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
FLOW_MATCHING_METHODS = {"euler": 1, "midpoint": 2, "heun2": 2, "rk4": 4}
HAND_METHODS = {"euler": 1, "heun": 2, "midpoint": 2, "rk4": 4, "rk38": 4}
DIFFUSERS_MULTISTEP = ("dpmsolver++", "unipc")


def nfe_per_step(library: str, method: str) -> int:
    """Field evaluations per step of a peer's fixed-step method."""
    table = {"torchdiffeq": TORCHDIFFEQ_FIXED, "flow_matching": FLOW_MATCHING_METHODS, "hand": HAND_METHODS}
    if library not in table:
        raise InvalidInputError(f"unknown library {library!r}; valid: {', '.join(table)}")
    methods = table[library]
    if method not in methods:
        raise InvalidInputError(f"unknown {library} method {method!r}; valid: {', '.join(methods)}")
    return methods[method]


class CountingField:
    """Wrap a field and count its evaluations in ``nfe`` (reset with `reset`)."""

    def __init__(self, field: Field) -> None:
        self.field = field
        self.nfe = 0

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.field(t, x)

    def reset(self) -> None:
        self.nfe = 0


def _times(grid: torch.Tensor | Sequence[float]) -> list[float]:
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.dim() != 1 or g.numel() < 2:
        raise InvalidInputError("grid must be a 1-d sequence of at least 2 times")
    return g.tolist()


# ----------------------------------------------------------------------------------------------
# hand-written loops: what a user writes without a solver library
# ----------------------------------------------------------------------------------------------
def hand_loop(field: Field, x: torch.Tensor, grid: torch.Tensor | Sequence[float], method: str = "rk4") -> torch.Tensor:
    r"""A plain torch loop, written the obvious way (no fused kernels, no buffer reuse).

    ``method``: ``"euler"``, ``"heun"``, ``"midpoint"``, ``"rk4"`` (classic) or ``"rk38"``
    (Kutta's 3/8 rule). The time is passed as a 0-d tensor of ``x``'s dtype.
    """
    nfe_per_step("hand", method)
    ts = _times(grid)

    def tt(t: float) -> torch.Tensor:
        return torch.tensor(t, dtype=x.dtype, device=x.device)

    for t0, t1 in zip(ts[:-1], ts[1:]):
        h = t1 - t0
        if method == "euler":
            x = x + h * field(tt(t0), x)
        elif method == "heun":
            k1 = field(tt(t0), x)
            k2 = field(tt(t1), x + h * k1)
            x = x + h / 2 * (k1 + k2)
        elif method == "midpoint":
            k1 = field(tt(t0), x)
            x = x + h * field(tt(t0 + h / 2), x + h / 2 * k1)
        elif method == "rk4":
            k1 = field(tt(t0), x)
            k2 = field(tt(t0 + h / 2), x + h / 2 * k1)
            k3 = field(tt(t0 + h / 2), x + h / 2 * k2)
            k4 = field(tt(t1), x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        else:  # rk38
            k1 = field(tt(t0), x)
            k2 = field(tt(t0 + h / 3), x + h / 3 * k1)
            k3 = field(tt(t0 + 2 * h / 3), x + h * (k2 - k1 / 3))
            k4 = field(tt(t1), x + h * (k1 - k2 + k3))
            x = x + h / 8 * (k1 + 3 * (k2 + k3) + k4)
    return x


# ----------------------------------------------------------------------------------------------
# torchdiffeq and flow_matching (fixed grids)
# ----------------------------------------------------------------------------------------------
def torchdiffeq_fixed(
    field: Field, x: torch.Tensor, grid: torch.Tensor | Sequence[float], method: str = "rk4"
) -> torch.Tensor:
    """``torchdiffeq.odeint`` with a fixed-grid ``method`` on exactly ``grid`` (via ``grid_constructor``).

    Only the end points are requested as outputs, so torchdiffeq stores no intermediate states.
    """
    from torchdiffeq import odeint  # noqa: PLC0415 (optional peer)

    nfe_per_step("torchdiffeq", method)
    g = torch.as_tensor(grid, dtype=x.dtype, device=x.device)
    span = g[[0, -1]]
    return odeint(field, x, span, method=method, options={"grid_constructor": lambda f, y0, t: g})[-1]


class _FlowMatchingAxis(torch.nn.Module):
    """Our field in flow_matching's convention: ``model(x=x, t=t')`` $= -v(1 - t', x)$."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: Any) -> torch.Tensor:
        return -self.field(1.0 - t, x)


def flow_matching_fixed(
    field: Field,
    x: torch.Tensor,
    grid: torch.Tensor | Sequence[float] | None = None,
    method: str = "euler",
    steps: int | None = None,
) -> torch.Tensor:
    r"""flow_matching's ``ODESolver.sample`` (which runs torchdiffeq) with the time axis flipped.

    flow_matching integrates from $t' = 0$ (noise) to $t' = 1$ (data): the model is wrapped as
    $v'(t', x) = -v(1 - t', x)$. With ``steps`` it is called as its users do,
    ``step_size = 1/steps`` on ``time_grid = [0, 1]``; with ``grid`` (ours, decreasing) it gets
    ``time_grid = 1 - grid`` and ``step_size = None``.
    """
    from flow_matching.solver import ODESolver  # noqa: PLC0415 (optional peer)

    nfe_per_step("flow_matching", method)
    solver = ODESolver(velocity_model=_FlowMatchingAxis(field))
    if steps is not None:
        tg = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        return solver.sample(x_init=x, step_size=1.0 / steps, method=method, time_grid=tg)
    if grid is None:
        raise InvalidInputError("flow_matching_fixed needs grid= or steps=")
    tg = 1.0 - torch.as_tensor(grid, dtype=x.dtype, device=x.device)
    return solver.sample(x_init=x, step_size=None, method=method, time_grid=tg)


# ----------------------------------------------------------------------------------------------
# diffusers schedulers
# ----------------------------------------------------------------------------------------------
def diffusers_flow_euler(
    field: Field,
    x: torch.Tensor,
    *,
    steps: int | None = None,
    grid: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """A pipeline-style loop over ``FlowMatchEulerDiscreteScheduler`` (default config: shift 1).

    ``steps``: its default schedule (``linspace(1, 1/1000, steps)`` then 0); ``grid``: our grid
    passed as ``sigmas=grid[:-1]`` (the grid must end at 0: the scheduler appends it).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: PLC0415 (optional peer)

    sched = FlowMatchEulerDiscreteScheduler()
    if grid is not None:
        ts = _times(grid)
        if ts[-1] != 0.0:
            raise InvalidInputError("diffusers_flow_euler: the grid must end at t = 0 (the scheduler appends sigma 0)")
        sched.set_timesteps(sigmas=ts[:-1], device=x.device)
    elif steps is not None:
        sched.set_timesteps(num_inference_steps=steps, device=x.device)
    else:
        raise InvalidInputError("diffusers_flow_euler needs steps= or grid=")
    sigmas = sched.sigmas.to(x.dtype)
    for i, t in enumerate(sched.timesteps):
        v = field(sigmas[i], x)
        x = sched.step(v, t, x, return_dict=False)[0]
    return x


def diffusers_multistep(field: Field, x: torch.Tensor, steps: int, scheduler: str = "unipc") -> torch.Tensor:
    """diffusers' DPM-Solver++ (2M) or UniPC (bh2, order 2) in flow mode, default options and schedule.

    ``steps`` model evaluations; the model is called at the scheduler's ``sigmas`` (σ = our t).
    """
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler  # noqa: PLC0415

    if scheduler not in DIFFUSERS_MULTISTEP:
        raise InvalidInputError(f"unknown scheduler {scheduler!r}; valid: {', '.join(DIFFUSERS_MULTISTEP)}")
    cls = DPMSolverMultistepScheduler if scheduler == "dpmsolver++" else UniPCMultistepScheduler
    sched = cls(use_flow_sigmas=True, prediction_type="flow_prediction")
    sched.set_timesteps(num_inference_steps=steps, device=x.device)
    sigmas = sched.sigmas.to(x.dtype)
    for i, t in enumerate(sched.timesteps):
        v = field(sigmas[i], x)
        x = sched.step(v, t, x, return_dict=False)[0]
    return x


# ----------------------------------------------------------------------------------------------
# adaptive peers
# ----------------------------------------------------------------------------------------------
def torchdiffeq_adaptive(
    field: Field,
    x: torch.Tensor,
    *,
    rtol: float,
    atol: float,
    method: str = "dopri5",
    t_span: tuple[float, float] = (1.0, 0.0),
) -> tuple[torch.Tensor, int]:
    """``torchdiffeq.odeint(method, rtol, atol)`` from ``t_span[0]`` to ``t_span[1]``; returns (x, NFE).

    Run with ``options={"step_t": [t_end]}`` so the last step ends exactly at ``t_end`` (by
    default torchdiffeq overshoots and interpolates, evaluating the field beyond the interval).
    """
    from torchdiffeq import odeint  # noqa: PLC0415

    counted = CountingField(field)
    span = torch.tensor(t_span, dtype=x.dtype, device=x.device)
    # step_t: land exactly on the end point. Without it torchdiffeq steps past t_end and
    # interpolates back, evaluating the field outside [0, 1] where our fields are undefined.
    options = {"step_t": span[1:]}
    out = odeint(counted, x, span, method=method, rtol=rtol, atol=atol, options=options)[-1]
    return out, counted.nfe


def scipy_adaptive(
    field: Field,
    x: torch.Tensor,
    *,
    rtol: float,
    atol: float,
    method: str = "RK45",
    t_span: tuple[float, float] = (1.0, 0.0),
) -> tuple[torch.Tensor, int]:
    """``scipy.integrate.solve_ivp`` on the flattened batch (float64, numpy ↔ torch each call).

    Returns (x, NFE) with NFE = ``sol.nfev`` (one field call per scipy evaluation).
    """
    from scipy.integrate import solve_ivp  # noqa: PLC0415

    shape, dtype, device = x.shape, x.dtype, x.device

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(y).to(dtype=dtype, device=device).view(shape)
        return field(torch.tensor(t, dtype=dtype, device=device), xt).reshape(-1).to(torch.float64).cpu().numpy()

    y0 = x.detach().reshape(-1).to(torch.float64).cpu().numpy()
    sol = solve_ivp(rhs, t_span, y0, method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"scipy {method} failed: {sol.message}")
    out = torch.from_numpy(sol.y[:, -1].copy()).to(dtype=dtype, device=device).view(shape)
    return out, int(sol.nfev)
