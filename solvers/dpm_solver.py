r"""DPM-Solver (noise prediction, singlestep) and DPM-Solver++ (data prediction, multi- or singlestep).

Both integrate the probability-flow ODE in the half log-SNR $\lambda$ with the linear part
exact (see `solvers.exponential`); $h = \lambda_t - \lambda_s$, $\varphi_1(h) = 1 - e^{-h}$.

**DPMSolver(order=k)** — Lu et al. 2022, *DPM-Solver*, Algorithms 1 (k = 2, $r_1 = \tfrac12$) and
DPM-Solver-3 ($r_1 = \tfrac13$, $r_2 = \tfrac23$). Noise prediction $\hat\varepsilon$, singlestep:
k model calls per step, global order k.

* k = 1: $x_t = \frac{\alpha_t}{\alpha_s}x_s - \sigma_t(e^h - 1)\hat\varepsilon_s$ (= DDIM);
* k = 2: $u = \frac{\alpha_{s_1}}{\alpha_s}x_s - \sigma_{s_1}(e^{r_1h} - 1)\hat\varepsilon_s$,
  $x_t = \frac{\alpha_t}{\alpha_s}x_s - \sigma_t(e^h - 1)\hat\varepsilon_s
  - \frac{\sigma_t}{2r_1}(e^h-1)(\hat\varepsilon(u, s_1) - \hat\varepsilon_s)$;
* k = 3: $u_1$ as above with $r_1$; $D_1 = \hat\varepsilon(u_1) - \hat\varepsilon_s$;
  $u_2 = \frac{\alpha_{s_2}}{\alpha_s}x_s - \sigma_{s_2}(e^{r_2h}-1)\hat\varepsilon_s
  - \frac{\sigma_{s_2}r_2}{r_1}\big(\frac{e^{r_2h}-1}{r_2h} - 1\big)D_1$;
  $D_2 = \hat\varepsilon(u_2) - \hat\varepsilon_s$;
  $x_t = \frac{\alpha_t}{\alpha_s}x_s - \sigma_t(e^h-1)\hat\varepsilon_s
  - \frac{\sigma_t}{r_2}\big(\frac{e^h-1}{h} - 1\big)D_2$.

Here $s_i = t_\lambda(\lambda_s + r_ih)$ through the path's exact inverse of $\lambda$.

**DPMSolverPP(order=k, multistep=True)** — Lu et al. 2022b, *DPM-Solver++*, Algorithm 2 (2M)
and its third-order extension (3M). Data prediction $m_i = \hat x_0(x_i, t_i)$, one model call
per step, reusing the previous steps' predictions. With $r_0 = h_0/h$, $r_1 = h_1/h$ the ratios of
the previous log-SNR steps to the current one:

* 2M: $D_1 = (m_0 - m_1)/r_0$, $x_t = \frac{\sigma_t}{\sigma_s}x_s + \alpha_t\varphi_1(h)(m_0 + \tfrac12 D_1)$;
* 3M: $D_{1,0} = (m_0 - m_1)/r_0$, $D_{1,1} = (m_1 - m_2)/r_1$,
  $D_1 = D_{1,0} + \frac{r_0}{r_0 + r_1}(D_{1,0} - D_{1,1})$, $D_2 = \frac{D_{1,0} - D_{1,1}}{r_0 + r_1}$
  ($D_1 \approx h\,m'$, $D_2 \approx \tfrac12 h^2 m''$ for the $\lambda$-derivatives of $\hat x_0$ along the solution),
  $x_t = \frac{\sigma_t}{\sigma_s}x_s + \alpha_t\varphi_1(h)m_0 + \alpha_t\varphi_2(h)D_1 - 2\alpha_t\varphi_3(h)D_2$
  with $\varphi_2(h) = 1 - \varphi_1(h)/h$, $\varphi_3(h) = \varphi_2(h)/h - \tfrac12$: the exact integral of
  the quadratic through the three predictions, local error $O(h^4)$.

2M is the update of diffusers' ``DPMSolverMultistepScheduler`` (``algorithm_type="dpmsolver++"``,
``solver_type="midpoint"``), checked side by side in our tests. **3M differs from diffusers on
purpose**: diffusers (and the reference DPM-Solver code) weight $D_2$ by $-\alpha_t\varphi_3(h)$, half
the weight of the quadratic interpolant; that leaves a local error $\tfrac1{12}h^3 m''$ and global
order 2 (we measure 2.0 on a VP Gaussian field, against ≥ 3 with the full weight).
``diffusers_3m=True`` reproduces diffusers' update for side-by-side comparisons.

*Warm-up*: the first steps have fewer than k previous predictions. ``warmup="lower_order"``
(diffusers) takes them at lower order — the first step is DDIM, whose $O(h^2)$ local error caps
the global order at 2 (3M measures ≈ 2 on VP); ``warmup="singlestep"`` takes them with the
singlestep method of order k (2S or 3S, k NFE each), so 3M reaches order 3.
*lower_order_final* (diffusers' rule, needs ``grid=`` in ``init``): on grids of fewer than 15
steps the last step is first order and the one before at most second order. A step into
$\sigma = 0$ ($\lambda = +\infty$) is always the first-order data-prediction step.

**DPMSolverPP(order=k, multistep=False)**: singlestep 2S ($r = \tfrac12$, 2 NFE/step) or 3S
(3 NFE/step); see `solvers.exponential.dpmpp_2s` / `dpmpp_3s`.

Which to use: DPM-Solver++(2M) is the robust default for guided or few-step sampling (10–25
NFE); 3M and UniPC gain at larger NFE on smooth fields; singlestep variants cost k NFE a step
and pay off only for accuracy at moderate NFE.
"""

from __future__ import annotations

import math
from typing import Any

import torch

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
    phi1,
    phi2,
    point_at_log_snr,
)

__all__ = ["DPMSolver", "DPMSolverPP"]


@register("dpm_solver")
class DPMSolver(ExponentialSolver):
    """DPM-Solver-k (noise prediction, singlestep), k = 1, 2, 3: global order k, k NFE per step."""

    def __init__(self, order: int = 2) -> None:
        self.order = check_int_choice(order, (1, 2, 3), "order")
        self.stages = self.order
        self.nfe_per_step = self.order

    def _repr_params(self) -> dict[str, Any]:
        return {"order": self.order}

    def _noise_step(self, s: PathPoint, t: PathPoint, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """$\\frac{\\alpha_t}{\\alpha_s}x - \\sigma_t(e^h - 1)\\hat\\varepsilon$."""
        return torch.add(x * (t.alpha / s.alpha), eps, alpha=-t.sigma * math.expm1(t.lam - s.lam))

    def _step(
        self, flow: ProbabilityFlow, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState
    ) -> torch.Tensor:
        h = t.lam - s.lam
        if not math.isfinite(h):  # an infinite end: the first-order data-prediction limit
            return data_step(x, self.x0(flow, s, x, state), s, t)
        eps_s = self.eps(flow, s, x, state)
        if self.order == 1:
            return self._noise_step(s, t, x, eps_s)
        if self.order == 2:
            s1 = point_at_log_snr(flow.path, s.lam + 0.5 * h)
            r1 = (s1.lam - s.lam) / h
            u = self._noise_step(s, s1, x, eps_s)
            d1 = self.eps(flow, s1, u, state) - eps_s
            return self._noise_step(s, t, x, eps_s).add_(d1, alpha=-t.sigma * math.expm1(h) / (2.0 * r1))
        s1 = point_at_log_snr(flow.path, s.lam + h / 3.0)
        s2 = point_at_log_snr(flow.path, s.lam + 2.0 * h / 3.0)
        r1, r2 = (s1.lam - s.lam) / h, (s2.lam - s.lam) / h
        u1 = self._noise_step(s, s1, x, eps_s)
        d1 = self.eps(flow, s1, u1, state) - eps_s
        u2 = self._noise_step(s, s2, x, eps_s).add_(
            d1, alpha=-s2.sigma * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1.0)
        )
        d2 = self.eps(flow, s2, u2, state) - eps_s
        return self._noise_step(s, t, x, eps_s).add_(d2, alpha=-(t.sigma / r2) * (math.expm1(h) / h - 1.0))


@register("dpm_solver_pp")
class DPMSolverPP(ExponentialSolver):
    """DPM-Solver++ (data prediction): 2M/3M multistep (1 NFE/step) or 2S/3S singlestep (k NFE/step).

    ``warmup``: ``"lower_order"`` (diffusers; global order ≤ 2) or ``"singlestep"`` (order k).
    ``lower_order_final``: diffusers' rule for grids under 15 steps (needs ``grid=`` in ``init``).
    ``diffusers_3m``: use diffusers' second-order 3M weight (comparisons only; see the module docstring).
    """

    def __init__(
        self,
        order: int = 2,
        multistep: bool = True,
        warmup: str = "lower_order",
        lower_order_final: bool = True,
        diffusers_3m: bool = False,
    ) -> None:
        self.order = check_int_choice(order, (1, 2, 3) if multistep else (2, 3), "order")
        self.multistep = check_bool(multistep, "multistep")
        self.warmup = check_warmup(warmup)
        self.lower_order_final = check_bool(lower_order_final, "lower_order_final")
        self.diffusers_3m = check_bool(diffusers_3m, "diffusers_3m")
        self.stages = 1 if multistep else self.order
        self.nfe_per_step = self.stages

    def _repr_params(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "multistep": self.multistep,
            "warmup": self.warmup,
            "lower_order_final": self.lower_order_final,
            "diffusers_3m": self.diffusers_3m,
        }

    def _init_data(
        self, state: SolverState, flow: ProbabilityFlow, t0: float, x0: torch.Tensor, options: dict[str, Any]
    ) -> None:
        state.data["history"] = []  # [(lambda, x0_hat)], newest last, finite lambda only

    def _order_cap(self, state: SolverState) -> int:
        """diffusers' lower_order_final: last step order 1, the one before ≤ 2, on grids of < 15 steps."""
        left = self.steps_left(state)
        if not self.lower_order_final or left is None or len(state.data["grid"]) - 1 >= 15:
            return self.order
        if left == 1:
            return 1
        if left == 2:
            return min(self.order, 2)
        return self.order

    def _step(
        self, flow: ProbabilityFlow, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState
    ) -> torch.Tensor:
        h = t.lam - s.lam
        m0 = self.x0(flow, s, x, state)
        if not self.multistep:
            if not math.isfinite(h):
                return data_step(x, m0, s, t)
            return (dpmpp_2s if self.order == 2 else dpmpp_3s)(flow, s, t, x, m0, state)
        hist: list[tuple[float, torch.Tensor]] = state.data["history"]
        if math.isfinite(s.lam):
            hist.append((s.lam, m0))
            del hist[: -self.order]
        if not math.isfinite(h):
            return data_step(x, m0, s, t)
        order = self._order_cap(state)
        if len(hist) < order:
            if self.warmup == "singlestep":
                return (dpmpp_2s if order == 2 else dpmpp_3s)(flow, s, t, x, m0, state)
            order = len(hist)
        if order == 1:
            return data_step(x, m0, s, t)
        lam1, m1 = hist[-2]
        r0 = (s.lam - lam1) / h
        d1_0 = (m0 - m1) / r0
        if order == 2:
            return data_step(x, m0, s, t).add_(d1_0, alpha=0.5 * t.alpha * phi1(h))
        lam2, m2 = hist[-3]
        r1 = (lam1 - lam2) / h
        d1_1 = (m1 - m2) / r1
        diff = d1_0 - d1_1
        d1 = d1_0 + diff * (r0 / (r0 + r1))
        d2 = diff / (r0 + r1)
        p2 = phi2(h)
        out = data_step(x, m0, s, t).add_(d1, alpha=t.alpha * p2)
        weight = 1.0 if self.diffusers_3m else 2.0  # see the module docstring
        return out.add_(d2, alpha=-weight * t.alpha * (p2 / h - 0.5))
