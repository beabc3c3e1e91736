r"""Time grids: float64 1-d tensors of ``n + 1`` strictly monotone points in $[0, 1]$.

Sampling runs from noise ($t = 1$) to data ($t = 0$), so by default every grid starts at
``t_start = 1.0`` and ends at ``t_end = 0.0``. Every grid function takes ``t_start`` and
``t_end``; with ``t_start < t_end`` (encoding) the grid is the same *set* of points as for
``(t_end, t_start)``, in increasing order — the spacing is a property of the time axis, not
of the direction of travel. The end points are always exactly ``t_start`` and ``t_end``.

| grid | points $t_i$, $u_i = 1 - i/n$ (decreasing case) |
|---|---|
| `uniform` | $t_e + (t_s - t_e)\,u_i$ |
| `quadratic` | $t_e + (t_s - t_e)\,u_i^2$ — dense near $t_e$ (DDIM's "quad" spacing) |
| `shifted` | uniform, then $t' = s t / (1 + (s - 1) t)$ (SD3, Esser et al. 2024) |
| `flux` | uniform, then $t' = e^\mu / (e^\mu + 1/t - 1)$, $\mu$ linear in the token count (Flux) |
| `karras` | $r_i = (r_{\max}^{1/\rho} + \tfrac in (r_{\min}^{1/\rho} - r_{\max}^{1/\rho}))^\rho$, $r = \sigma/\alpha$ |
| `log_snr_uniform` | uniform in $\lambda = \log\alpha - \log\sigma$ (DPM-Solver's "logSNR" spacing) |

`karras` and `log_snr_uniform` depend on the `GaussianPath`. Where $\lambda$ is infinite at an
end ($\lambda(0) = +\infty$ for every path with $\sigma(0) = 0$, $\lambda(1) = -\infty$ on the
linear path) the spacing is computed between *clipped* values and the exact end point is
kept: see the ``sigma_max`` / ``lambda_min`` / ``lambda_max`` arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from solvers.solve import check_grid

__all__ = [
    "uniform",
    "quadratic",
    "shifted",
    "flux",
    "flux_mu",
    "karras",
    "log_snr_uniform",
    "GRIDS",
    "get_grid",
    "grid_names",
]

# EDM's range of the noise-to-signal ratio sigma/alpha (Karras et al. 2022, Table 1).
EDM_SIGMA_MIN = 0.002
EDM_SIGMA_MAX = 80.0


def _check_n(n: Any) -> int:
    check_positive(n, "n (number of steps)", integer=True)
    return n


def _check_ends(t_start: Any, t_end: Any) -> tuple[float, float]:
    out = []
    for name, v in (("t_start", t_start), ("t_end", t_end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidInputError(f"{name} must be a number in [0, 1], got {v!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0.0 or v > 1.0:
            raise InvalidInputError(f"{name} = {v!r} is outside [0, 1] (t = 0 is data, t = 1 noise)")
        out.append(v)
    if out[0] == out[1]:
        raise InvalidInputError(f"t_start and t_end are both {out[0]!r}; a grid needs two distinct end points")
    return out[0], out[1]


def _finish(points: torch.Tensor, t_start: float, t_end: float) -> torch.Tensor:
    """Points given from ``hi`` down to ``lo``: pin the ends, orient them, validate."""
    points = points.to(torch.float64)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    points[0], points[-1] = hi, lo
    if t_start < t_end:
        points = points.flip(0)
    return check_grid(points, "grid")


def _unit(n: int) -> torch.Tensor:
    """$u_i = 1 - i/n$, $i = 0..n$, exactly 1 and 0 at the ends."""
    return 1.0 - torch.arange(n + 1, dtype=torch.float64) / n


def uniform(n: int, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    """``n`` equal steps from ``t_start`` to ``t_end`` (``n + 1`` points)."""
    n = _check_n(n)
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    return _finish(lo + (hi - lo) * _unit(n), t_start, t_end)


def quadratic(n: int, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    r"""Quadratic spacing $t_i = t_{lo} + (t_{hi} - t_{lo})(1 - i/n)^2$: small steps near the data end.

    The continuous-time form of DDIM's ``"quad"`` timestep selection (Song et al. 2021).
    """
    n = _check_n(n)
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    return _finish(lo + (hi - lo) * _unit(n) ** 2, t_start, t_end)


def _shift_map(t: torch.Tensor, shift: float) -> torch.Tensor:
    return (shift * t / (1.0 + (shift - 1.0) * t)).clamp(0.0, 1.0)  # clamp: 1 + 1 ulp at t = 1


def shifted(n: int, shift: float, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    r"""SD3's resolution shift of the uniform grid: $t' = s t / (1 + (s - 1) t)$ (Esser et al. 2024).

    $s > 1$ spends more steps at high noise; $s = 1$ is `uniform`. SD3 uses
    $s = \sqrt{m/n}$ for $m$ pixels against a base resolution of $n$ (3.0 at 1024²). The
    end points are mapped too ($t' = t$ at 0 and 1).
    """
    n = _check_n(n)
    check_positive(shift, "shift")
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    pts = _shift_map(lo + (hi - lo) * _unit(n), float(shift))
    s_hi, s_lo = float(_shift_map(torch.tensor(hi, dtype=torch.float64), shift)), float(
        _shift_map(torch.tensor(lo, dtype=torch.float64), shift)
    )
    a, b = (s_hi, s_lo) if t_start > t_end else (s_lo, s_hi)
    return _finish(pts, a, b)


def flux_mu(image_seq_len: int, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    r"""Flux's shift $\mu$: linear in the token count, ``base_shift`` at 256 and ``max_shift`` at 4096 tokens.

    Not clipped outside [256, 4096] (as in diffusers/BFL). 1024² images have 4096 tokens.
    """
    check_positive(image_seq_len, "image_seq_len", integer=True)
    for name, v in (("base_shift", base_shift), ("max_shift", max_shift)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
    slope = (max_shift - base_shift) / (4096 - 256)
    return base_shift + slope * (image_seq_len - 256)


def flux(
    n: int,
    image_seq_len: int,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> torch.Tensor:
    r"""Flux's time-shifted grid: $t' = e^\mu / (e^\mu + 1/t - 1)$ on the uniform grid, $t' = 0$ at $t = 0$.

    $\mu$ = `flux_mu` (``image_seq_len`` tokens; 1.15 at 1024², ≈ 0.63 at 512²). This is BFL's
    reference schedule (shift of ``linspace(1, 0, n + 1)``); diffusers' FluxPipeline instead
    shifts ``linspace(1, 1/n, n)`` and appends 0, which differs slightly — see docs/flux.md.
    The map is the SD3 shift with $s = e^\mu$.
    """
    n = _check_n(n)
    mu = flux_mu(image_seq_len, base_shift, max_shift)
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    s = math.exp(mu)
    pts = _shift_map(lo + (hi - lo) * _unit(n), s)  # e^mu/(e^mu + 1/t - 1) == s t / (1 + (s-1) t)
    s_hi, s_lo = (min(1.0, max(0.0, s * v / (1.0 + (s - 1.0) * v))) for v in (hi, lo))
    a, b = (s_hi, s_lo) if t_start > t_end else (s_lo, s_hi)
    return _finish(pts, a, b)


def _check_path(path: Any) -> GaussianPath:
    if not isinstance(path, GaussianPath):
        raise InvalidInputError(
            f"path must be an odeflow.paths.GaussianPath (e.g. LinearPath(), VPPath()), got {type(path).__name__}"
        )
    return path


def _spread(lo_val: float, hi_val: float, m: int) -> torch.Tensor:
    """``m`` values from ``hi_val`` down to ``lo_val`` (the midpoint if ``m == 1``)."""
    if m == 1:
        return torch.tensor([0.5 * (lo_val + hi_val)], dtype=torch.float64)
    u = 1.0 - torch.arange(m, dtype=torch.float64) / (m - 1)
    return lo_val + (hi_val - lo_val) * u


def _assemble(free_t: torch.Tensor, clip_hi: bool, clip_lo: bool, hi: float, lo: float) -> torch.Tensor:
    parts = []
    if clip_hi:
        parts.append(torch.tensor([hi], dtype=torch.float64))
    parts.append(free_t)
    if clip_lo:
        parts.append(torch.tensor([lo], dtype=torch.float64))
    return torch.cat(parts)


def karras(
    n: int,
    path: GaussianPath,
    rho: float = 7.0,
    t_start: float = 1.0,
    t_end: float = 0.0,
    sigma_max: float = EDM_SIGMA_MAX,
) -> torch.Tensor:
    r"""EDM's grid (Karras et al. 2022, eq. 5) in the noise-to-signal ratio $r = \sigma/\alpha = e^{-\lambda}$.

    $r_i = \big(r_{\max}^{1/\rho} + \tfrac{i}{m-1}(r_{\min}^{1/\rho} - r_{\max}^{1/\rho})\big)^\rho$
    mapped back with $t = \lambda^{-1}(-\log r)$; $\rho = 7$ as in EDM. $r_{\min} = r(t_{lo})$
    (0 at $t = 0$, which the formula handles exactly). **Clipping:** if $r(t_{hi})$ exceeds
    ``sigma_max`` (always on the linear path at $t = 1$, where $r = \infty$) the spacing starts
    at $r_{\max} =$ ``sigma_max`` (EDM's 80; raised to $10\,r(t_{lo})$ if the whole interval lies
    above it) and the exact end point $t_{hi}$ is prepended, so the
    first step jumps from $t_{hi}$ to $\lambda^{-1}(-\log r_{\max})$; then $m = n$ spaced points,
    otherwise $m = n + 1$.
    """
    n = _check_n(n)
    path = _check_path(path)
    check_positive(rho, "rho")
    check_positive(sigma_max, "sigma_max")
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    if n == 1:
        return _finish(torch.tensor([hi, lo], dtype=torch.float64), t_start, t_end)
    lam_hi, lam_lo = float(path.log_snr(hi)), float(path.log_snr(lo))
    r_hi = math.exp(-lam_hi) if lam_hi > -700 else math.inf
    r_lo = math.exp(-lam_lo) if lam_lo < 700 else 0.0
    r_cap = max(sigma_max, 10.0 * r_lo)  # the cap must lie above the data end of the interval
    clip_hi = r_hi > r_cap
    r_max = r_cap if clip_hi else r_hi
    m = n + 1 - int(clip_hi)
    inv = 1.0 / rho
    w = _spread(r_lo**inv, r_max**inv, m)
    r = w**rho
    lam = -torch.log(r)  # r = 0 gives +inf, which λ⁻¹ maps to the data end
    free_t = path.t_from_log_snr(lam)
    return _finish(_assemble(free_t, clip_hi, False, hi, lo), t_start, t_end)


def log_snr_uniform(
    n: int,
    path: GaussianPath,
    t_start: float = 1.0,
    t_end: float = 0.0,
    lambda_min: float = -math.log(EDM_SIGMA_MAX),
    lambda_max: float = -math.log(EDM_SIGMA_MIN),
) -> torch.Tensor:
    r"""Uniform steps in the half log-SNR $\lambda = \log\alpha - \log\sigma$ (Lu et al. 2022, DPM-Solver).

    $\lambda_i$ equally spaced between $\lambda(t_{hi})$ and $\lambda(t_{lo})$, mapped back with
    $\lambda^{-1}$. **Clipping:** an end whose $\lambda$ lies outside
    [``lambda_min``, ``lambda_max``] (default $[-\log 80, -\log 0.002] \approx [-4.38, 6.21]$,
    EDM's range; $\lambda = \pm\infty$ at $t = 0$ and, on the linear path, $t = 1$) is clipped
    to that bound for the spacing and the exact end point is added, so the first (last) step
    goes from $t_{hi}$ to $\lambda^{-1}(\lambda_{\min})$ (from $\lambda^{-1}(\lambda_{\max})$ to
    $t_{lo}$). The uniformly spaced points number $n + 1$ minus the clipped ends.
    """
    n = _check_n(n)
    path = _check_path(path)
    for name, v in (("lambda_min", lambda_min), ("lambda_max", lambda_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
    if not lambda_min < lambda_max:
        raise InvalidInputError(f"need lambda_min < lambda_max, got {lambda_min!r} and {lambda_max!r}")
    t_start, t_end = _check_ends(t_start, t_end)
    hi, lo = max(t_start, t_end), min(t_start, t_end)
    lam_hi, lam_lo = float(path.log_snr(hi)), float(path.log_snr(lo))
    clip_hi, clip_lo = lam_hi < lambda_min, lam_lo > lambda_max
    n_clip = int(clip_hi) + int(clip_lo)
    if n + 1 - n_clip < 1:  # n == 1 with both ends clipped: just the two end points
        return _finish(torch.tensor([hi, lo], dtype=torch.float64), t_start, t_end)
    a = max(lam_hi, lambda_min)
    b = min(lam_lo, lambda_max)
    if not a < b:
        raise InvalidInputError(
            f"log_snr_uniform: after clipping to [{lambda_min:g}, {lambda_max:g}] the log-SNR range "
            f"[{a:g}, {b:g}] of t in [{lo:g}, {hi:g}] is empty; widen lambda_min/lambda_max"
        )
    lam = _spread(b, a, n + 1 - n_clip)  # from a (high t) up to b (low t)
    free_t = path.t_from_log_snr(lam)
    return _finish(_assemble(free_t, clip_hi, clip_lo, hi, lo), t_start, t_end)


GRIDS: dict[str, Callable[..., torch.Tensor]] = {
    "uniform": uniform,
    "quadratic": quadratic,
    "shifted": shifted,
    "flux": flux,
    "karras": karras,
    "log_snr_uniform": log_snr_uniform,
}


def grid_names() -> list[str]:
    """Names accepted by `get_grid`."""
    return list(GRIDS)


def get_grid(name: str, n: int, **kwargs: Any) -> torch.Tensor:
    """The grid ``name`` with ``n`` steps; ``kwargs`` go to the grid function (``path=``, ``shift=`` …)."""
    check_choice(name, GRIDS, "grid")
    try:
        return GRIDS[name](n, **kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"bad arguments for grid {name!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Grids tuned to a field and a solver (implementation: solvers/grid_optimization.py)
# ---------------------------------------------------------------------------------------------
def optimized(
    field: Any,
    n: int,
    x_probe: torch.Tensor,
    solver: Any,
    *,
    t_start: float = 1.0,
    t_end: float = 0.0,
    return_info: bool = False,
    **options: Any,
) -> Any:
    r"""A grid of ``n`` steps tuned to ``field`` for ``solver``, minimising the endpoint RMSE on ``x_probe``.

    NFE of a solve on it = ``n`` × the solver's evaluations per step, as for any grid. Method
    (`solvers.grid_optimization`): a float64 pilot solve of the probe (Dopri5, ``pilot_tol``)
    gives reference states; one-step local errors $e_k$ on ``candidates`` cells give the
    equidistributed grid (step density $\propto e_k^{1/(p+1)}/\delta_k$); a coordinate search
    (bounded Brent on one interior point at a time) then minimises the probe's endpoint RMSE
    starting from the best of that grid, the uniform grid and SD3-shifted grids.

    **Cost** (field evaluations on the probe batch, paid once and cached per (field, solver,
    ``n``, probe, options)): pilot NFE (a few hundred) + ``candidates`` × stages + evaluations ×
    ``n`` × NFE per step, evaluations ≤ ``max_evals`` (default ``12 (n - 1) + 8``). Use
    ``return_info=True`` to get ``(grid, GridInfo)`` with these counts and the probe losses.
    Measure the result on samples independent of the probe. Options: ``reference``, ``loss``
    (``"rmse"``/``"mean"``), ``candidates``, ``sweeps``, ``max_evals``, ``pilot_tol``, ``cache``.
    """
    from solvers.grid_optimization import optimize_grid  # noqa: PLC0415 (imports solve; avoids a cycle)

    grid, info = optimize_grid(field, n, x_probe, solver, t_start=t_start, t_end=t_end, **options)
    return (grid, info) if return_info else grid


__all__ += ["optimized"]
