r"""UniPC (Zhao et al. 2023, *UniPC: A Unified Predictor-Corrector Framework*), data prediction, B(h) variants.

A multistep exponential integrator in the half log-SNR $\lambda$ (see `solvers.exponential`) with
one model call per step. Let the current step go from $s = t_i$ to $t = t_{i+1}$, $h = \lambda_t - \lambda_s$,
$m_0 = \hat x_0(x_s)$, older predictions $m_k$ at $\lambda_{s_k}$ with $r_k = (\lambda_{s_k} - \lambda_s)/h$
and $D_k = (m_k - m_0)/r_k$. With $\varphi_1 = 1 - e^{-h}$ and $B(h) = -h$ (``"bh1"``) or
$B(h) = e^{-h} - 1$ (``"bh2"``, the default):

* **UniP-p (predictor)**: order p,
  $\tilde x_t = \frac{\sigma_t}{\sigma_s}x_s + \alpha_t\varphi_1 m_0 - \alpha_t B(h)\sum_{k=1}^{p-1}\rho^p_k D_k$;
* **UniC-p (corrector)**: after the model is evaluated at the predicted $\tilde x_t$ (the next
  step's model call, so no extra NFE), with $D_t = \hat x_0(\tilde x_t) - m_0$,
  $x_t^c = \frac{\sigma_t}{\sigma_s}x_s + \alpha_t\varphi_1 m_0
  - \alpha_t B(h)\big(\sum_{k=1}^{p-1}\rho^c_k D_k + \rho^c_p D_t\big)$,
  which raises the order by one (Zhao et al., Thm. 3.1).

The weights solve the order conditions $R\,\rho = b$ with $R_{ik} = r_k^{\,i-1}$ ($r_p = 1$ for the
new point) and $b_i = i!\,h\varphi_{i+1}(h)/B(h)$ — for the predictor the leading $(p-1)\times(p-1)$
block ($\rho = \tfrac12$ when p = 2), for the corrector the full $p\times p$ system ($\rho = \tfrac12$
when p = 1). These are the updates of diffusers' ``UniPCMultistepScheduler`` (``predict_x0=True``),
checked side by side in our tests.

The corrected $x_t^c$ replaces $\tilde x_t$ as the base of the next predictor, but the model value
$\hat x_0(\tilde x_t)$ is reused as is. The final step is not corrected (there is no further model
call), exactly as in diffusers; the returned states are the predictor outputs.

*Warm-up*: ``"lower_order"`` (diffusers) starts with UniP-1 + UniC-1, UniP-2 + UniC-2, …;
``"singlestep"`` takes the first p − 1 steps with DPM-Solver++(2S)/(3S) (p NFE each) and corrects
from then on. *lower_order_final* (diffusers' rule, needs ``grid=`` in ``init``): step i of N uses
order $\min(p, N - i)$, so the last step is UniP-1. A step into $\sigma = 0$ is always the first-order
data-prediction step. Measured global orders (VP, log-SNR-uniform grids) are in ``docs/solvers.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from odeflow._checks import check_choice
from odeflow.dynamics import ProbabilityFlow
from solvers.base import SolverState, register
from solvers.exponential import (
    ExponentialSolver,
    PathPoint,
    check_bool,
    check_int_choice,
    check_warmup,
    data_step,
    dpmpp_2s,
    dpmpp_3s,
)

__all__ = ["UniPC"]

VARIANTS = ("bh2", "bh1")


def unipc_weights(h: float, rks: list[float], order: int, variant: str, corrector: bool) -> tuple[list[float], float]:
    r"""The weights $\rho$ and $B(h)$ of UniP-``order`` (``corrector=False``) or UniC-``order``.

    ``rks`` are the ratios $r_k$ of the older points ($p - 1$ of them); the new point has $r = 1$.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else h_phi_1
    rs = np.array([*rks, 1.0], dtype=np.float64)
    rows, b = [], []
    h_phi_k = h_phi_1 / hh - 1.0
    factorial = 1
    for i in range(1, order + 1):
        rows.append(rs ** (i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    R, bv = np.stack(rows), np.array(b)
    if corrector:
        rho = [0.5] if order == 1 else np.linalg.solve(R, bv).tolist()
    elif order == 1:
        rho = []
    elif order == 2:
        rho = [0.5]
    else:
        rho = np.linalg.solve(R[:-1, :-1], bv[:-1]).tolist()
    return rho, b_h


@register("unipc")
class UniPC(ExponentialSolver):
    """UniPC-p: UniP-p predictor + UniC-p corrector (data prediction), 1 NFE per step, order p + 1.

    ``order`` is p (1–3, as diffusers' ``solver_order``); ``variant`` ``"bh2"`` (default) or ``"bh1"``.
    """

    stages = 1
    nfe_per_step = 1

    def __init__(
        self,
        order: int = 2,
        variant: str = "bh2",
        warmup: str = "lower_order",
        lower_order_final: bool = True,
        corrector: bool = True,
    ) -> None:
        self.p = check_int_choice(order, (1, 2, 3), "order")
        self.variant = check_choice(variant, VARIANTS, "UniPC variant")
        self.warmup = check_warmup(warmup)
        self.lower_order_final = check_bool(lower_order_final, "lower_order_final")
        self.corrector = check_bool(corrector, "corrector")
        self.order = self.p + 1 if self.corrector else self.p

    def _repr_params(self) -> dict[str, Any]:
        return {
            "order": self.p,
            "variant": self.variant,
            "warmup": self.warmup,
            "lower_order_final": self.lower_order_final,
            "corrector": self.corrector,
        }

    def _init_data(
        self, state: SolverState, flow: ProbabilityFlow, t0: float, x0: torch.Tensor, options: dict[str, Any]
    ) -> None:
        state.data["history"] = []  # [(lambda, x0_hat)], newest last, finite lambda only
        state.data["pending"] = None  # what the corrector needs from the last UniP step

    def _combine(
        self,
        x_s: torch.Tensor,
        s: PathPoint,
        t: PathPoint,
        hist: list[tuple[float, torch.Tensor]],
        order: int,
        m_t: torch.Tensor | None,
    ) -> torch.Tensor:
        """UniP-``order`` from base ``x_s`` (``m_t is None``) or UniC-``order`` with the new prediction ``m_t``."""
        h = t.lam - s.lam
        m0 = hist[-1][1]
        older = hist[-order:-1][::-1]  # s_1, s_2, ... (newest first)
        rks = [(lam_k - s.lam) / h for lam_k, _ in older]
        rho, b_h = unipc_weights(h, rks, order, self.variant, corrector=m_t is not None)
        out = data_step(x_s, m0, s, t)
        scale = -t.alpha * b_h
        for rho_k, r_k, (_, m_k) in zip(rho, rks, older):
            out = out.add_(m_k - m0, alpha=scale * rho_k / r_k)
        if m_t is not None:
            out = out.add_(m_t - m0, alpha=scale * rho[-1])
        return out

    def _step(
        self, flow: ProbabilityFlow, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState
    ) -> torch.Tensor:
        m_s = self.x0(flow, s, x, state)
        pending = state.data["pending"]
        state.data["pending"] = None
        if pending is not None and self.corrector:
            x_base, s_prev, hist_prev, order_prev = pending
            x = self._combine(x_base, s_prev, s, hist_prev, order_prev, m_s)
        hist: list[tuple[float, torch.Tensor]] = state.data["history"]
        if math.isfinite(s.lam):
            hist.append((s.lam, m_s))
            del hist[: -self.p]
        h = t.lam - s.lam
        if not math.isfinite(h):
            return data_step(x, m_s, s, t)
        order = self.p
        left = self.steps_left(state)
        if self.lower_order_final and left is not None:
            order = min(order, left)
        if len(hist) < order:
            if self.warmup == "singlestep":
                return (dpmpp_2s if order == 2 else dpmpp_3s)(flow, s, t, x, m_s, state)
            order = len(hist)
        x_new = self._combine(x, s, t, hist, order, None)
        state.data["pending"] = (x, s, list(hist), order)
        return x_new
