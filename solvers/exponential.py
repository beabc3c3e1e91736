r"""Shared machinery of the exponential integrators (DDIM, DPM-Solver, DPM-Solver++, UniPC).

On a Gaussian path $x_t = \alpha_t x_0 + \sigma_t\varepsilon$ the probability-flow ODE is
semi-linear in the half log-SNR $\lambda = \log\alpha - \log\sigma$. Its *variation of constants*
forms (Lu et al. 2022, *DPM-Solver*, eq. 3.4; Lu et al. 2022b, *DPM-Solver++*, eq. 9) are exact:

$$x_t = \frac{\sigma_t}{\sigma_s}x_s
+ \sigma_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}\,\hat x_0(x_\lambda, \lambda)\,d\lambda
\qquad\text{(data prediction)},$$

$$x_t = \frac{\alpha_t}{\alpha_s}x_s
- \alpha_t\int_{\lambda_s}^{\lambda_t} e^{-\lambda}\,\hat\varepsilon(x_\lambda, \lambda)\,d\lambda
\qquad\text{(noise prediction)}.$$

The linear part is integrated exactly; a method only approximates the model term by a
polynomial in $\lambda$. With $h = \lambda_t - \lambda_s$ the first-order member of both
families is DDIM (Song et al. 2021):
$x_t = \tfrac{\sigma_t}{\sigma_s}x_s + \alpha_t(1 - e^{-h})\hat x_0(x_s)$.

**Infinite log-SNR.** On the linear and cosine paths $\lambda(1) = -\infty$ ($\alpha = 0$) and on
every path but VE $\lambda(0) = +\infty$ ($\sigma = 0$). A step with an infinite end has $h = \infty$:
there every higher-order formula is singular (its divided differences divide by $h$), and the
first-order data-prediction step has the finite limit
$x_t = \tfrac{\sigma_t}{\sigma_s}x_s + (\alpha_t - \alpha_s\tfrac{\sigma_t}{\sigma_s})\hat x_0(x_s)$ —
from $t = 1$ on the linear path it gives $\sigma_t x_1 + \alpha_t\hat x_0$, into $t = 0$ it returns
the denoised $\alpha_0\hat x_0(x_s)$. All methods here take exactly that step (one model call)
whenever $h$ is infinite, and never put a point with $\lambda = -\infty$ into a multistep
history. A step that *starts* at $\sigma = 0$ is undefined and raises `InvalidInputError`.
Starting at $\lambda = -\infty$ the first step has a local error $O(\alpha_{t_1}^2/\sigma_{t_1})$,
which limits the global order to 2 on grids that start at $t = 1$ on the linear path.

**Grid.** Multistep methods with ``lower_order_final`` need to know how many steps remain; pass
``grid=`` (the full time grid, as floats) to ``init`` (the diffusers adapter does; `solve` does
when it forwards the grid). Without it only the rules that need no look-ahead apply.

Every model call is one NFE and is counted in ``state.nfe``; the coefficients are computed in
float64 Python arithmetic on the host from the (CPU, float64) path, so a step never
synchronises an accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from odeflow._checks import check_choice, check_time
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from solvers.base import Solver, SolverState

__all__ = ["ExponentialSolver", "PathPoint", "check_flow", "point", "WARMUPS"]

WARMUPS = ("lower_order", "singlestep")


def check_flow(field: Any, who: str) -> ProbabilityFlow:
    """Return ``field`` if it is a `ProbabilityFlow`; exponential integrators need its path and predictions."""
    if not isinstance(field, ProbabilityFlow):
        raise InvalidInputError(
            f"{who} is an exponential integrator: it needs a ProbabilityFlow (odeflow.ProbabilityFlow(model, path, "
            f"prediction)) that knows its Gaussian path and answers x0/eps predictions; got {type(field).__name__}. "
            "Wrap the model, or use an ODE solver (euler, heun, rk4, ...) for a plain field"
        )
    return field


@dataclass(frozen=True)
class PathPoint:
    """A time with its path coefficients as Python floats: $t, \\alpha, \\sigma, \\lambda$."""

    t: float
    alpha: float
    sigma: float
    lam: float


def point(path: GaussianPath, t: float) -> PathPoint:
    """The coefficients of ``path`` at time ``t`` (float64, host-side)."""
    t = float(t)
    check_time(t)
    tt = torch.tensor(t, dtype=torch.float64)
    return PathPoint(t, path._alpha(tt).item(), path._sigma(tt).item(), path._log_snr(tt).item())


def point_at_log_snr(path: GaussianPath, lam: float) -> PathPoint:
    """The path point whose half log-SNR is ``lam`` (via the path's exact inverse)."""
    return point(path, float(path.t_from_log_snr(lam)))


def phi1(h: float) -> float:
    r"""$1 - e^{-h}$ (``-expm1(-h)``), exact for small $h$."""
    return -math.expm1(-h)


def phi2(h: float) -> float:
    r"""$\frac{e^{-h} - 1}{h} + 1 = 1 - \frac{1 - e^{-h}}{h}$ (the coefficient of $h\,\hat x_0'$)."""
    return 1.0 - phi1(h) / h


def data_step(x: torch.Tensor, x0_hat: torch.Tensor, s: PathPoint, t: PathPoint) -> torch.Tensor:
    r"""First-order data-prediction (DDIM) step $x_t = \frac{\sigma_t}{\sigma_s}x + \alpha_t(1-e^{-h})\hat x_0$.

    Uses $\alpha_t - \alpha_s\sigma_t/\sigma_s$ for the second coefficient when $h$ is infinite.
    """
    ratio = t.sigma / s.sigma
    h = t.lam - s.lam
    coef = t.alpha * phi1(h) if math.isfinite(h) else t.alpha - s.alpha * ratio
    return torch.add(x * ratio, x0_hat, alpha=coef)


class ExponentialSolver(Solver):
    """Base of the exponential integrators: flow check, step bookkeeping, model calls with NFE counting.

    Subclasses implement ``_step(flow, s, t, x, state)`` with ``s``/``t`` `PathPoint`s.
    """

    kind = "exponential"

    def init(
        self, field: Any, t0: float, x0: torch.Tensor, *, grid: Sequence[float] | None = None, **options: Any
    ) -> SolverState:
        """Check that ``field`` is a `ProbabilityFlow`; ``grid`` (optional) enables look-ahead rules."""
        check_flow(field, type(self).__name__)
        self._check_options(options)
        state = SolverState()
        state.data["i"] = 0
        if grid is not None:
            g = [float(v) for v in grid]
            if len(g) < 2:
                raise InvalidInputError(f"grid needs at least 2 times, got {len(g)}")
            if g[0] != float(t0):
                raise InvalidInputError(f"grid starts at {g[0]:g} but the solve starts at t0 = {float(t0):g}")
            state.data["grid"] = g
        else:
            state.data["grid"] = None
        self._init_data(state, field, float(t0), x0, options)
        return state

    def _check_options(self, options: dict[str, Any]) -> None:
        if options:
            raise InvalidInputError(
                f"{type(self).__name__}.init got unknown options {sorted(options)}; it accepts grid="
            )

    def _init_data(
        self, state: SolverState, flow: ProbabilityFlow, t0: float, x0: torch.Tensor, options: dict[str, Any]
    ) -> None:
        """Hook for subclasses (histories, noise sources)."""

    def steps_left(self, state: SolverState) -> int | None:
        """Steps left including the current one, when the grid is known; else ``None``."""
        grid = state.data["grid"]
        if grid is None:
            return None
        return len(grid) - 1 - state.data["i"]

    def step(
        self, field: Any, t0: float, t1: float, x0: torch.Tensor, state: SolverState
    ) -> tuple[torch.Tensor, SolverState]:
        """Advance from ``(t0, x0)`` to ``t1`` (see the subclass docstring for the update)."""
        flow = check_flow(field, type(self).__name__)
        last = state.data.get("last_point")
        s = last if last is not None and last.t == float(t0) else point(flow.path, t0)
        t = point(flow.path, t1)
        state.data["last_point"] = t
        if s.t == t.t:
            raise InvalidInputError(f"{type(self).__name__} got a zero-length step at t = {s.t:g}; steps need t1 != t0")
        if s.sigma == 0.0:
            raise InvalidInputError(
                f"{type(self).__name__} cannot step from t = {s.t:g}: sigma = 0 there (log-SNR = +inf); "
                "exponential steps start where sigma > 0"
            )
        grid = state.data["grid"]
        i = state.data["i"]
        if grid is not None and (i >= len(grid) - 1 or grid[i] != s.t or grid[i + 1] != t.t):
            raise InvalidInputError(
                f"step {i} goes from {s.t:g} to {t.t:g}, which is not the next step of the grid given to init"
            )
        x1 = self._step(flow, s, t, x0, state)
        state.data["i"] = i + 1
        return x1, state

    def _step(
        self, flow: ProbabilityFlow, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState
    ) -> torch.Tensor:
        raise NotImplementedError

    # --- model calls ---------------------------------------------------------------------------------
    @staticmethod
    def x0(flow: ProbabilityFlow, p: PathPoint, x: torch.Tensor, state: SolverState) -> torch.Tensor:
        """Data prediction at ``(p.t, x)``: one NFE."""
        state.nfe += 1
        return flow.predict_kinds(p.t, x, ("x0",))[0]

    @staticmethod
    def eps(flow: ProbabilityFlow, p: PathPoint, x: torch.Tensor, state: SolverState) -> torch.Tensor:
        """Noise prediction at ``(p.t, x)``: one NFE."""
        state.nfe += 1
        return flow.predict_kinds(p.t, x, ("epsilon",))[0]


def check_warmup(warmup: str) -> str:
    """Validate a multistep warm-up name."""
    return check_choice(warmup, WARMUPS, "warmup")


def check_bool(value: Any, name: str) -> bool:
    """Validate a boolean option."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return value


def check_int_choice(value: Any, allowed: Sequence[int], name: str) -> int:
    """Validate an integer option with a small set of allowed values."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise InvalidInputError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


# --- singlestep data-prediction steps (DPM-Solver++ 2S / 3S), shared by DPM-Solver++ and UniPC warm-ups ---


def dpmpp_2s(
    flow: ProbabilityFlow,
    s: PathPoint,
    t: PathPoint,
    x: torch.Tensor,
    m0: torch.Tensor,
    state: SolverState,
    r: float = 0.5,
) -> torch.Tensor:
    r"""DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1), given $m_0 = \hat x_0(x_s)$: one more NFE.

    $s_1 = t_\lambda(\lambda_s + r h)$, $u = \frac{\sigma_{s_1}}{\sigma_s}x + \alpha_{s_1}(1 - e^{-rh})m_0$,
    $D = (1 - \frac1{2r})m_0 + \frac1{2r}\hat x_0(u, s_1)$,
    $x_t = \frac{\sigma_t}{\sigma_s}x + \alpha_t(1-e^{-h})D$. Local error $O(h^3)$.
    """
    h = t.lam - s.lam
    s1 = point_at_log_snr(flow.path, s.lam + r * h)
    r = (s1.lam - s.lam) / h  # the ratio actually realised by the path's inverse
    u = data_step(x, m0, s, s1)
    m1 = ExponentialSolver.x0(flow, s1, u, state)
    d = torch.add(m0 * (1.0 - 0.5 / r), m1, alpha=0.5 / r)
    return data_step(x, d, s, t)


def dpmpp_3s(
    flow: ProbabilityFlow,
    s: PathPoint,
    t: PathPoint,
    x: torch.Tensor,
    m0: torch.Tensor,
    state: SolverState,
    r1: float = 1.0 / 3.0,
    r2: float = 2.0 / 3.0,
) -> torch.Tensor:
    r"""DPM-Solver++(3S), the data-prediction form of DPM-Solver-3 (Lu et al. 2022, Alg. 5): two more NFE.

    With $\varphi_1(z) = 1 - e^{-z}$, $\varphi_2(z) = 1 - \varphi_1(z)/z$ and $m_0 = \hat x_0(x_s)$:
    $u_1 = \frac{\sigma_{s_1}}{\sigma_s}x + \alpha_{s_1}\varphi_1(r_1h)m_0$, $D_1 = \hat x_0(u_1) - m_0$;
    $u_2 = \frac{\sigma_{s_2}}{\sigma_s}x + \alpha_{s_2}\varphi_1(r_2h)m_0
    + \alpha_{s_2}\frac{r_2}{r_1}\varphi_2(r_2h)D_1$,
    $D_2 = \hat x_0(u_2) - m_0$;
    $x_t = \frac{\sigma_t}{\sigma_s}x + \alpha_t\varphi_1(h)m_0 + \frac{\alpha_t}{r_2}\varphi_2(h)D_2$.
    Local error $O(h^4)$ for $r_2 = 2/3$.
    """
    h = t.lam - s.lam
    s1 = point_at_log_snr(flow.path, s.lam + r1 * h)
    s2 = point_at_log_snr(flow.path, s.lam + r2 * h)
    r1 = (s1.lam - s.lam) / h
    r2 = (s2.lam - s.lam) / h
    u1 = data_step(x, m0, s, s1)
    d1 = ExponentialSolver.x0(flow, s1, u1, state) - m0
    u2 = data_step(x, m0, s, s2).add_(d1, alpha=s2.alpha * (r2 / r1) * phi2(r2 * h))
    d2 = ExponentialSolver.x0(flow, s2, u2, state) - m0
    return data_step(x, m0, s, t).add_(d2, alpha=t.alpha * phi2(h) / r2)
