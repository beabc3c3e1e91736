r"""DDIM (Song, Meng & Ermon 2021, *Denoising Diffusion Implicit Models*) on any Gaussian path.

One model call per step. With $\hat x_0 = \hat x_0(x_s, s)$, $\hat\varepsilon = (x_s - \alpha_s\hat x_0)/\sigma_s$,
$h = \lambda_t - \lambda_s$ and the noise level

$$c = \eta\,\sigma_t\sqrt{1 - e^{-2h}}\qquad(\text{the posterior std of } x_t \text{ given } x_s, x_0
\text{ under the Markov forward process when } \eta = 1),$$

$$x_t = \alpha_t\hat x_0 + \sqrt{\sigma_t^2 - c^2}\;\hat\varepsilon + c\,z,\qquad z\sim N(0, I).$$

* $\eta = 0$: the deterministic DDIM step, $x_t = \frac{\sigma_t}{\sigma_s}x_s + \alpha_t(1 - e^{-h})\hat x_0$ —
  the first-order exponential integrator of the probability-flow ODE (global order 1). On the
  linear path it *is* the Euler step $x_s + (t - s)\,v$; it equals `DPMSolver(order=1)`.
* $\eta = 1$: the DDPM ancestral sampler (Ho et al. 2020) written for a general path; it
  discretises the reverse SDE with $\gamma = g$ (weak order 1).
* $0 < \eta < 1$ interpolates.

**Noise** ($\eta > 0$): ``init`` takes ``brownian=`` (a `solvers.brownian.BrownianPath`;
$z = (W(t) - W(s))/\sqrt{|t-s|}$, so runs over different step counts share one path),
``generator=`` (a ``torch.Generator`` on ``x``'s device; $z$ drawn with ``torch.randn``) or
``seed=`` (an integer: a `BrownianPath` with that seed). With none of these a `BrownianPath` is
seeded from torch's global RNG. Stochastic steps only run towards data ($t_1 < t_0$); DDIM
inversion ($t_1 > t_0$) needs $\eta = 0$.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from solvers.base import SolverState, register
from solvers.brownian import BrownianPath
from solvers.exponential import ExponentialSolver, PathPoint, data_step

__all__ = ["DDIM"]


@register("ddim")
class DDIM(ExponentialSolver):
    """DDIM with stochasticity ``eta`` ∈ [0, 1] (0: deterministic, order 1; 1: DDPM ancestral). 1 NFE/step."""

    order = 1
    stages = 1
    nfe_per_step = 1

    def __init__(self, eta: float = 0.0) -> None:
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise InvalidInputError(f"eta must be a number in [0, 1] (0: DDIM, 1: DDPM ancestral), got {eta!r}")
        self.eta = float(eta)

    def _repr_params(self) -> dict[str, Any]:
        return {"eta": self.eta}

    def _check_options(self, options: dict[str, Any]) -> None:
        unknown = set(options) - {"brownian", "generator", "seed"}
        if unknown:
            raise InvalidInputError(
                f"DDIM.init got unknown options {sorted(unknown)}; it accepts grid=, brownian=, generator=, seed="
            )

    def _init_data(
        self, state: SolverState, flow: ProbabilityFlow, t0: float, x0: torch.Tensor, options: dict[str, Any]
    ) -> None:
        if self.eta == 0.0:
            return
        brownian, generator, seed = options.get("brownian"), options.get("generator"), options.get("seed")
        if sum(v is not None for v in (brownian, generator, seed)) > 1:
            raise InvalidInputError("give at most one noise source: brownian=, generator= or seed=")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise InvalidInputError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            state.data["generator"] = generator
            return
        if brownian is None:
            if seed is None:
                seed = int(torch.randint(0, 2**62, ()).item())
            brownian = BrownianPath(seed, x0.shape, dtype=x0.dtype, device=x0.device)
        if not callable(brownian) or tuple(getattr(brownian, "shape", ())) != tuple(x0.shape):
            raise InvalidInputError(
                f"brownian must be a BrownianPath of the state's shape {tuple(x0.shape)}, "
                f"got {type(brownian).__name__} of shape {tuple(getattr(brownian, 'shape', ()))}"
            )
        state.data["brownian"] = brownian

    def _noise(self, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState) -> torch.Tensor:
        gen = state.data.get("generator")
        if gen is not None:
            return torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        bp = state.data["brownian"]
        return (bp(s.t, t.t) / math.sqrt(abs(t.t - s.t))).to(dtype=x.dtype, device=x.device)

    def _step(
        self, flow: ProbabilityFlow, s: PathPoint, t: PathPoint, x: torch.Tensor, state: SolverState
    ) -> torch.Tensor:
        x0_hat = self.x0(flow, s, x, state)
        if self.eta == 0.0:
            return data_step(x, x0_hat, s, t)
        if t.t > s.t:
            raise InvalidInputError(
                f"DDIM(eta={self.eta}) is stochastic and only samples towards data (t1 < t0); use eta=0 for inversion"
            )
        h = t.lam - s.lam
        one_minus = -math.expm1(-2.0 * h) if math.isfinite(h) else 1.0
        c = self.eta * t.sigma * math.sqrt(one_minus)
        keep = math.sqrt(max(t.sigma**2 - c * c, 0.0))  # coefficient of eps_hat
        x_new = torch.add(x * (keep / s.sigma), x0_hat, alpha=t.alpha - s.alpha * keep / s.sigma)
        if c > 0.0:
            x_new = x_new.add_(self._noise(s, t, x, state), alpha=c)
        return x_new
