r"""Adaptive step-size control for embedded Runge–Kutta pairs (`Bosh3`, `Dopri5`, `Tsit5`, …).

One step from $(t, x)$ with size $h$ produces $x_1$ and an error estimate $\hat e = h\sum_i e_i k_i$.

**Error norm.** With the scale $s = \mathrm{atol} + \mathrm{rtol}\cdot\max(|x|, |x_1|)$
(elementwise), the default norm is per sample — the RMS of $\hat e/s$ over each sample's
entries, then the **maximum over the batch**, so every sample meets the tolerance by itself and
the result of one sample does not depend on the others' scale. ``norm="rms"`` takes the RMS
over the whole tensor, as scipy and torchdiffeq do. DOP853 combines its 5th- and 3rd-order
estimates as $\|e_5\|^2/\sqrt{\|e_5\|^2 + 0.01\|e_3\|^2}$ (Hairer's code, scipy).

**Controller.** A step is accepted when the norm $\varepsilon \le 1$. The next step is
$h \cdot \mathrm{clip}(\text{safety}\cdot\varepsilon_n^{-\beta_1/k}\,\varepsilon_{n-1}^{\beta_2/k},
\text{factor\_min}, \text{factor\_max})$ with $k$ the method's order (scipy's exponent
$-1/(\hat p + 1)$ with $\hat p = p - 1$): a PI controller (Gustafsson 1991; Hairer & Wanner II
§IV.2; default $\beta_1 = 0.85$, $\beta_2 = 0.2$ as in Hairer's DOPRI5 code);
$\beta_2 = 0, \beta_1 = 1$ is the classic I controller
of scipy/torchdiffeq. After a rejection the step shrinks by
$\max(\text{factor\_min}, \text{safety}\cdot\varepsilon^{-1/k})$ and the next accepted step may
not grow.

**Initial step.** Hairer, Nørsett & Wanner I §II.4 (as in scipy): from
$d_0 = \|x_0\|$, $d_1 = \|f_0\|$, an explicit Euler probe and $d_2 = \|f_1 - f_0\|/h_0$,
$h = \min(100 h_0, (0.01/\max(d_1, d_2))^{1/k})$ — one extra field evaluation, counted.

**FSAL** tableaux reuse their last stage. **Dense output** for ``save_at``: the tableau's own
interpolant (Dopri5: Shampine's; Tsit5: Tsitouras's; both 4th order, free), DOP853's 7th-order
interpolant (3 extra evaluations in each step that contains a save time, counted), or else the
cubic Hermite interpolant through $(x_0, f_0, x_1, f_1)$ (3rd order, Bosh3/HeunEuler; for the
non-FSAL HeunEuler $f_1$ is evaluated only when a save time falls inside the step and is then
reused by the next step).

**Cost.** Exactly one host synchronisation per attempted step (reading $\varepsilon$, which is
also the finiteness check). The batch shares one step size, as in torchdiffeq.

**Failures.** ``max_steps`` attempted steps → `MaxStepsExceeded`; a step below ``dt_min`` (or
below the float resolution of $t$) → `StepSizeTooSmall`; a non-finite error estimate rejects the
step and shrinks it by ``factor_min``; if that repeats ``max_nonfinite`` times in a row, or the
step becomes too small while the last failure was non-finite, → `NonFiniteError`. Each carries
the partial `Solution` up to the last accepted step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive
from odeflow.errors import InvalidInputError, MaxStepsExceeded, NonFiniteError, StepSizeTooSmall
from solvers.base import Field, Solution, Stats
from solvers.runge_kutta import EmbeddedRungeKutta, _combine, _compiled, rk_error, rk_step, time_tensor
from solvers.solve import check_grid
from solvers.tableaux import DOP853 as DOP853_TABLEAU
from solvers.tableaux import DOP853_INTERPOLANT, ButcherTableau

__all__ = ["PIController", "solve_adaptive", "check_adaptive_options", "error_norm", "initial_step", "NORMS"]

NORMS = ("max_sample", "rms")
ADAPTIVE_OPTIONS = ("rtol", "atol", "norm", "controller", "dt0", "dt_min", "dt_max", "max_nonfinite")


@dataclass(frozen=True)
class PIController:
    r"""PI step-size controller: factor $= \text{safety}\,\varepsilon_n^{-\beta_1/k}\,\varepsilon_{n-1}^{\beta_2/k}$.

    ``beta1 = 1, beta2 = 0`` is the I controller of scipy and torchdiffeq (it reproduces scipy's
    step sequence). The default ``(0.85, 0.2)`` is the stabilised controller of Hairer's DOPRI5
    code (exponents $1/k - 0.75\beta$ and $\beta = 0.04$ at $k = 5$, written in units of $1/k$);
    ``(0.7, 0.4)`` is Gustafsson's PI controller (Hairer & Wanner II, §IV.2), smoother but
    costlier (~1.3x scipy's NFE).
    ``factor_min``/``factor_max`` bound the change of the step per attempt.
    """

    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    beta1: float = 0.85
    beta2: float = 0.2

    def __post_init__(self) -> None:
        for name in ("safety", "factor_min", "factor_max", "beta1", "beta2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidInputError(f"PIController.{name} must be a finite number, got {v!r}")
        if not 0.0 < self.safety <= 1.0:
            raise InvalidInputError(f"PIController.safety must be in (0, 1], got {self.safety}")
        if not 0.0 < self.factor_min < 1.0 < self.factor_max:
            raise InvalidInputError(
                f"PIController needs 0 < factor_min < 1 < factor_max, got {self.factor_min}, {self.factor_max}"
            )
        if self.beta1 <= 0.0 or self.beta2 < 0.0:
            raise InvalidInputError(f"PIController needs beta1 > 0 and beta2 >= 0, got {self.beta1}, {self.beta2}")

    def accept_factor(self, err: float, err_prev: float, k: int, after_reject: bool) -> float:
        """Factor for the next step after an accepted one with error norm ``err`` (<= 1)."""
        if err == 0.0:
            factor = self.factor_max
        else:
            factor = self.safety * err ** (-self.beta1 / k) * err_prev ** (self.beta2 / k)
            factor = min(self.factor_max, max(self.factor_min, factor))
        return min(1.0, factor) if after_reject else factor

    def reject_factor(self, err: float, k: int) -> float:
        """Factor for the retry after a rejected step with error norm ``err`` (> 1)."""
        return max(self.factor_min, self.safety * err ** (-1.0 / k))


def check_adaptive_options(**options: Any) -> dict[str, Any]:
    """Validate the adaptive options; returns them. Unknown names raise `InvalidInputError`."""
    unknown = sorted(set(options) - set(ADAPTIVE_OPTIONS))
    if unknown:
        raise InvalidInputError(
            f"unknown adaptive option(s) {unknown}; valid options are: {', '.join(ADAPTIVE_OPTIONS)}"
        )
    if "rtol" in options:
        check_positive(options["rtol"], "rtol")
    if "atol" in options:
        check_positive(options["atol"], "atol", allow_zero=True)
    if "norm" in options:
        check_choice(options["norm"], NORMS, "norm")
    if "controller" in options and not isinstance(options["controller"], PIController):
        raise InvalidInputError(f"controller must be a PIController, got {type(options['controller']).__name__}")
    for name in ("dt0", "dt_max"):
        if options.get(name) is not None:
            check_positive(options[name], name)
    if options.get("dt_min") is not None:
        check_positive(options["dt_min"], "dt_min", allow_zero=True)
    if "max_nonfinite" in options:
        check_positive(options["max_nonfinite"], "max_nonfinite", integer=True)
    return options


def _per_sample_ms(e: torch.Tensor) -> torch.Tensor:
    """Mean square over each sample's entries: shape (batch,)."""
    return e.square().reshape(e.shape[0], -1).mean(dim=1)


def error_norm(
    err: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    rtol: float,
    atol: float,
    norm: str = "max_sample",
    err2: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The scaled error norm as a 0-d tensor (no host sync): ≤ 1 means the step is accepted.

    ``norm="max_sample"``: max over the batch of each sample's RMS of $\hat e/s$;
    ``norm="rms"``: the RMS over the whole tensor. ``err2`` (DOP853) combines as
    $\varepsilon_5^2/\sqrt{\varepsilon_5^2 + 0.01\,\varepsilon_3^2}$.
    """
    scale = torch.maximum(x0.abs(), x1.abs()).mul_(rtol).add_(atol)
    e = err / scale
    if norm == "rms":
        ms = e.square().mean()
        ms2 = None if err2 is None else (err2 / scale).square().mean()
    else:
        ms = _per_sample_ms(e)
        ms2 = None if err2 is None else _per_sample_ms(err2 / scale)
    if ms2 is not None:
        den = (ms + 0.01 * ms2).sqrt()
        val = torch.where(den > 0, ms / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(ms))
    else:
        val = ms.sqrt()
    return val.max() if val.dim() else val


def _host(v: torch.Tensor) -> float:
    return float(v)  # the one host synchronisation of an adaptive step


def initial_step(
    field: Field,
    tab: ButcherTableau,
    t0: float,
    x0: torch.Tensor,
    f0: torch.Tensor,
    direction: float,
    length: float,
    rtol: float,
    atol: float,
    norm: str,
) -> tuple[float, int]:
    """Hairer's initial step (HNW I, §II.4); returns ``(|h|, nfe)`` with one field evaluation."""
    k = tab.order
    scale = x0.abs().mul(rtol).add_(atol)

    def nrm(v: torch.Tensor) -> torch.Tensor:
        e = v / scale
        return e.square().mean().sqrt() if norm == "rms" else _per_sample_ms(e).sqrt().max()

    d0, d1 = (float(v) for v in torch.stack([nrm(x0), nrm(f0)]).tolist())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, length)
    x1 = torch.add(x0, f0, alpha=direction * h0)
    f1 = field(time_tensor(t0 + direction * h0, x0), x1)
    d2 = float(nrm(f1 - f0)) / h0
    if not math.isfinite(d2):
        d2 = math.inf
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / k) if max(d1, d2) < math.inf else h0 * 1e-3
    return min(100.0 * h0, h1, length), 1


def _check_span(t_span: Any) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise InvalidInputError(f"t_span must be a pair (t_start, t_end) of times in [0, 1], got {t_span!r}") from None
    for name, v in (("t_span[0]", a), ("t_span[1]", b)):
        if not math.isfinite(v) or v < 0.0 or v > 1.0:
            raise InvalidInputError(f"{name} = {v!r} is outside [0, 1] (t = 0 is data, t = 1 noise)")
    if a == b:
        raise InvalidInputError(f"t_span has equal ends ({a!r}); nothing to integrate")
    return a, b


def _check_save_at(save_at: Any, t0: float, t1: float) -> list[float]:
    g = torch.as_tensor(save_at, dtype=torch.float64).detach().cpu().reshape(-1) if save_at is not None else None
    if g is None or g.numel() == 0:
        raise InvalidInputError("save_at must hold at least one time")
    if not bool(torch.isfinite(g).all()):
        raise InvalidInputError("save_at contains non-finite times")
    lo, hi = min(t0, t1), max(t0, t1)
    if float(g.min()) < lo or float(g.max()) > hi:
        raise InvalidInputError(f"save_at times must lie inside t_span [{lo:g}, {hi:g}]")
    d = (g[1:] - g[:-1]) * (1.0 if t1 > t0 else -1.0)
    if g.numel() > 1 and not bool((d > 0).all()):
        raise InvalidInputError(
            "save_at must be strictly monotone in the direction of integration (t_span[0] → t_span[1])"
        )
    return g.tolist()


class _StepInterpolant:
    """Dense output inside one accepted step ``[t0, t0 + h]``; extra evaluations are counted in ``stats``."""

    def __init__(
        self,
        field: Field,
        tab: ButcherTableau,
        t0: float,
        h: float,
        x0: torch.Tensor,
        x1: torch.Tensor,
        ks: list[torch.Tensor],
        f1: torch.Tensor | None,
        stats: Stats,
    ) -> None:
        self.field, self.tab, self.t0, self.h = field, tab, t0, h
        self.x0, self.x1, self.ks, self.f1, self.stats = x0, x1, ks, f1, stats
        self._coeffs: list[torch.Tensor] | None = None

    def f_end(self) -> torch.Tensor:
        """$f(t_1, x_1)$: the FSAL stage, or one evaluation (then reused by the next step)."""
        if self.f1 is None:
            self.f1 = self.field(time_tensor(self.t0 + self.h, self.x1), self.x1)
            self.stats.nfe += 1
        return self.f1

    def __call__(self, s: float) -> torch.Tensor:
        theta = (s - self.t0) / self.h
        if theta == 1.0:
            return self.x1
        tab, h, x0, ks = self.tab, self.h, self.x0, self.ks
        if tab is DOP853_TABLEAU:
            return self._dop853(theta)
        if tab.dense is not None:
            weights = tuple(
                (i, w)
                for i, poly in enumerate(tab.dense)
                if (w := sum(c * theta ** (m + 1) for m, c in enumerate(poly))) != 0.0
            )
            return _combine(x0, ks, weights, h)
        # cubic Hermite through (x0, f0) and (x1, f1)
        f1 = self.f_end()
        th2, th3 = theta * theta, theta * theta * theta
        h00, h10, h01, h11 = 2 * th3 - 3 * th2 + 1, th3 - 2 * th2 + theta, -2 * th3 + 3 * th2, th3 - th2
        out = torch.mul(x0, h00)
        out.add_(ks[0], alpha=h * h10).add_(self.x1, alpha=h01).add_(f1, alpha=h * h11)
        return out

    def _dop853(self, theta: float) -> torch.Tensor:
        if self._coeffs is None:
            ip, h, x0 = DOP853_INTERPOLANT, self.h, self.x0
            kx = list(self.ks)
            for c, row in zip(ip.c, ip.a, strict=True):
                xi = _combine(x0, kx, tuple((j, w) for j, w in enumerate(row) if w != 0.0), h)
                kx.append(self.field(time_tensor(self.t0 + c * h, x0), xi))
                self.stats.nfe += 1
            delta = self.x1 - x0
            f0, f1 = kx[0], kx[DOP853_TABLEAU.stages - 1]
            coeffs = [delta, torch.add(-delta, f0, alpha=h), (2 * delta).sub_(f1 + f0, alpha=h)]
            zero = torch.zeros_like(x0)
            for row in ip.d:
                coeffs.append(_combine(zero, kx, tuple((j, w) for j, w in enumerate(row) if w != 0.0), h))
            self._coeffs = coeffs
        y = torch.zeros_like(self.x0)
        for i, f in enumerate(reversed(self._coeffs)):
            y.add_(f).mul_(theta if i % 2 == 0 else 1.0 - theta)
        return y.add_(self.x0)


def solve_adaptive(
    solver: Any,
    field: Field,
    x: torch.Tensor,
    *,
    grid: Any = None,
    t_span: tuple[float, float] = (1.0, 0.0),
    save: str = "final",
    save_at: Any = None,
    max_steps: int = 100_000,
    **options: Any,
) -> Solution:
    """Integrate with an embedded Runge–Kutta pair under error control (see the module docstring).

    ``grid`` (if given) is the list of times to save at and fixes ``t_span`` to its end points.
    Options (defaults from the solver instance, overridden here): ``rtol``, ``atol``,
    ``norm`` (``"max_sample"`` or ``"rms"``), ``controller`` (`PIController`), ``dt0`` (first step,
    else Hairer's choice), ``dt_min`` (default 0), ``dt_max``, ``max_nonfinite`` (default 4).
    """
    if not isinstance(solver, EmbeddedRungeKutta):
        raise InvalidInputError(
            f"the adaptive driver needs an embedded Runge–Kutta pair (bosh3, dopri5, tsit5, dop853, heun_euler), "
            f"got {type(solver).__name__}"
        )
    opts = {"rtol": solver.rtol, "atol": solver.atol, **solver.options, **options}
    check_adaptive_options(**opts)
    rtol, atol = float(opts["rtol"]), float(opts["atol"])
    norm = opts.get("norm", "max_sample")
    ctrl: PIController = opts.get("controller") or PIController()
    dt_min = float(opts.get("dt_min") or 0.0)
    dt_max = opts.get("dt_max")
    max_nonfinite = int(opts.get("max_nonfinite", 4))
    tab = solver.tableau
    k = tab.order

    if grid is not None:
        if save_at is not None:
            raise InvalidInputError("give either grid= (times to save at) or save_at=, not both")
        g = check_grid(grid)
        save_at = g
        t_span = (float(g[0]), float(g[-1]))
    t0, t_end = _check_span(t_span)
    if save_at is not None and save == "steps":
        raise InvalidInputError("save='steps' and save_at are exclusive: choose every step or given times")
    save_times = _check_save_at(save_at, t0, t_end) if save_at is not None else None
    direction = 1.0 if t_end > t0 else -1.0
    length = abs(t_end - t0)
    if dt_max is not None:
        dt_max = float(dt_max)

    stats = Stats()
    ts: list[float] = []
    xs: list[torch.Tensor] = []
    t, x_cur = t0, x
    idx = 0

    def record_until(t_new: float, x_new: torch.Tensor, interp: Any) -> None:
        nonlocal idx
        if save_times is None:
            return
        while idx < len(save_times) and direction * (save_times[idx] - t_new) <= 0:
            s = save_times[idx]
            xs.append(x_new if s == t_new else interp(s))
            ts.append(s)
            idx += 1

    def partial() -> Solution:
        if save == "steps" or save_times is not None:
            if xs:
                return Solution(
                    x=x_cur, ts=torch.tensor(ts, dtype=torch.float64), xs=torch.stack(xs), stats=_copy(stats)
                )
            empty = x_cur.new_empty((0, *x_cur.shape))
            return Solution(x=x_cur, ts=torch.zeros(0, dtype=torch.float64), xs=empty, stats=_copy(stats))
        return Solution(x=x_cur, ts=torch.tensor([t], dtype=torch.float64), xs=x_cur.unsqueeze(0), stats=_copy(stats))

    if save == "steps":
        ts.append(t0)
        xs.append(x)
    record_until(t0, x, None)

    k0 = field(time_tensor(t0, x), x)
    if not isinstance(k0, torch.Tensor) or k0.shape != x.shape:
        got = tuple(k0.shape) if isinstance(k0, torch.Tensor) else type(k0).__name__
        raise InvalidInputError(f"the field must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    stats.nfe += 1
    if opts.get("dt0") is not None:
        h_abs = min(float(opts["dt0"]), length)
    else:
        h_abs, n_init = initial_step(field, tab, t0, x, k0, direction, length, rtol, atol, norm)
        stats.nfe += n_init
    h_abs = max(h_abs, min(dt_min, length))  # the initial guess never starts below dt_min
    if dt_max is not None:
        h_abs = min(h_abs, dt_max)

    err_prev = 1.0
    after_reject = False
    nonfinite_run = 0
    last_failure_nonfinite = False
    comp = _compiled(tab)
    while direction * (t_end - t) > 0:
        if stats.steps >= max_steps:
            raise MaxStepsExceeded(
                f"{type(solver).__name__} needed more than max_steps = {max_steps} steps (reached t = {t:g} of "
                f"{t_end:g}; rtol = {rtol:g}, atol = {atol:g}); the partial solution is in .partial",
                partial=partial(),
                t=t,
                step=stats.accepted,
            )
        h_floor = max(dt_min, 4.0 * math.ulp(max(abs(t), abs(t_end))))
        if h_abs < h_floor and abs(t_end - t) > h_abs:
            cls = NonFiniteError if last_failure_nonfinite else StepSizeTooSmall
            what = (
                "the field or state kept becoming non-finite ahead of t"
                if last_failure_nonfinite
                else f"the step size {h_abs:.3g} fell below dt_min = {dt_min:g}"
                if h_abs < dt_min
                else f"the step size {h_abs:.3g} fell below the float resolution of t"
            )
            raise cls(
                f"{type(solver).__name__} stopped at t = {t:g} in step {stats.accepted}: {what}; "
                "the partial solution is in .partial",
                partial=partial(),
                t=t,
                step=stats.accepted,
            )
        t_new = t + direction * h_abs
        if direction * (t_new - t_end) >= 0:
            t_new = t_end
        h = t_new - t
        x_new, ks, nfe = rk_step(field, tab, t, t_new, x_cur, k0)
        stats.nfe += nfe
        stats.steps += 1
        err, err2 = rk_error(tab, ks, h)
        eps = _host(error_norm(err, x_cur, x_new, rtol, atol, norm, err2))
        if not math.isfinite(eps):
            stats.rejected += 1
            nonfinite_run += 1
            last_failure_nonfinite = True
            if nonfinite_run >= max_nonfinite:
                raise NonFiniteError(
                    f"{type(solver).__name__}: the state or field became non-finite in step {stats.accepted} "
                    f"from t = {t:g} ({nonfinite_run} attempts, the last with step {abs(h):.3g}); "
                    f"the partial solution up to t = {t:g} is in .partial",
                    partial=partial(),
                    t=t,
                    step=stats.accepted,
                )
            h_abs = abs(h) * ctrl.factor_min
            after_reject = True
            continue
        nonfinite_run = 0
        if eps > 1.0:
            stats.rejected += 1
            last_failure_nonfinite = False
            h_abs = abs(h) * ctrl.reject_factor(eps, k)
            after_reject = True
            continue
        # accepted
        stats.accepted += 1
        last_failure_nonfinite = False
        f1 = ks[-1] if comp.fsal else None
        if save_times is not None and idx < len(save_times) and direction * (save_times[idx] - t_new) < 0:
            interp = _StepInterpolant(field, tab, t, h, x_cur, x_new, ks, f1, stats)
            record_until(t_new, x_new, interp)
            f1 = interp.f1  # Hermite may have evaluated f(t1, x1): the next step reuses it
        else:
            record_until(t_new, x_new, None)
        if save == "steps":
            ts.append(t_new)
            xs.append(x_new)
        t, x_cur = t_new, x_new
        k0 = f1
        h_abs = abs(h) * ctrl.accept_factor(eps, err_prev, k, after_reject)
        if dt_max is not None:
            h_abs = min(h_abs, dt_max)
        err_prev = max(eps, 1e-4)
        after_reject = False

    if save == "steps" or save_times is not None:
        return Solution(x=x_cur, ts=torch.tensor(ts, dtype=torch.float64), xs=torch.stack(xs), stats=stats)
    return Solution(x=x_cur, stats=stats)


def _copy(stats: Stats) -> Stats:
    return Stats(nfe=stats.nfe, steps=stats.steps, accepted=stats.accepted, rejected=stats.rejected)
