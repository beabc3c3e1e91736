r"""Dynamics on a Gaussian path: the probability-flow ODE and the forward and reverse SDEs.

For $x_t = \alpha x_0 + \sigma\varepsilon$ (DESIGN.md §1):

* forward SDE $dx = f\,x\,dt + g\,dw$ with $f = \dot\alpha/\alpha$ and
  $g^2 = 2\sigma\dot\sigma - 2f\sigma^2 = -2\sigma^2\dot\lambda$ (Song et al. 2021);
* probability-flow ODE $dx/dt = f\,x - \tfrac12 g^2 s
  = \dot\alpha\,\mathbb E[x_0|x] + \dot\sigma\,\mathbb E[\varepsilon|x]$, the *velocity* $v$;
* the marginal-preserving reverse family, run from $t = 1$ to $0$: drift
  $v - \tfrac12\gamma(t)^2 s$, diffusion $\gamma(t)$. $\gamma = 0$ is the PF-ODE, $\gamma = g$
  the classic reverse SDE $dx = [f x - g^2 s]\,dt + g\,d\bar w$.

A field is called as ``field(t, x)`` with ``t`` a 0-d tensor (or a number) and ``x`` of shape
``(batch, *dims)``; it returns a tensor shaped like ``x``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from odeflow._checks import check_choice, check_time
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from odeflow.predictions import PREDICTION_KINDS, conversion_coefficients

__all__ = ["ProbabilityFlow", "ForwardSDE", "ReverseSDE", "as_time"]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_time(t: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a 0-d tensor of ``like``'s dtype and device (no host synchronisation)."""
    if isinstance(t, torch.Tensor):
        if t.dtype == like.dtype and t.device == like.device:
            return t.reshape(())
        return t.to(dtype=like.dtype, device=like.device).reshape(())
    return torch.full((), float(t), dtype=like.dtype, device=like.device)


def _check_path(path: object) -> GaussianPath:
    if not isinstance(path, GaussianPath):
        raise InvalidInputError(
            f"path must be a GaussianPath (LinearPath, VPPath, CosinePath, VEPath), got {type(path).__name__}"
        )
    return path


class ProbabilityFlow:
    r"""The probability-flow ODE of a model on a Gaussian path.

    ``model(t, x)`` returns a prediction of kind ``prediction`` (``"velocity"``, ``"epsilon"``,
    ``"x0"`` or ``"score"``). ``flow(t, x)`` returns the PF-ODE right-hand side
    $dx/dt = v = \dot\alpha\,\hat x_0 + \dot\sigma\,\hat\varepsilon$; ``flow.x0``, ``flow.eps``,
    ``flow.score`` and ``flow.velocity`` return the other kinds, each from **one** model
    evaluation plus an exact affine conversion (`odeflow.predictions`).

    Subclasses with exact fields (e.g. Gaussian mixtures) override `predict_kinds`.
    """

    def __init__(self, model: Model, path: GaussianPath, prediction: str = "velocity") -> None:
        if not callable(model):
            raise InvalidInputError(f"model must be callable as model(t, x), got {type(model).__name__}")
        self.model = model
        self.path = _check_path(path)
        self.prediction = check_choice(prediction, PREDICTION_KINDS, "prediction kind")

    # --- the core: one model call, any number of kinds ---------------------------------------
    def predict_kinds(self, t: float | torch.Tensor, x: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """Predictions of each of ``kinds`` at ``(t, x)`` from a single model evaluation."""
        check_time(t)
        t_x = as_time(t, x)
        out = self.model(t_x, x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InvalidInputError(f"model returned {shape}; it must return a tensor shaped like x {tuple(x.shape)}")
        results = []
        t64 = t_x.detach().to(torch.float64)
        for kind in kinds:
            if kind == self.prediction:
                results.append(out)
                continue
            a, b = conversion_coefficients(self.prediction, kind, t64, self.path)
            if t64.device.type == "cpu" and not (torch.isfinite(a) and torch.isfinite(b)):
                raise InvalidInputError(
                    f"cannot convert a {self.prediction!r} model to {kind!r} at t = {float(t64):g} on "
                    f"{self.path!r}: the conversion is singular there; evaluate at an interior time"
                )
            results.append(a.to(x.dtype) * x + b.to(x.dtype) * out)
        return tuple(results)

    def predict(self, t: float | torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
        """One prediction of kind ``kind`` (see `odeflow.predictions.PREDICTION_KINDS`)."""
        check_choice(kind, PREDICTION_KINDS, "prediction kind")
        return self.predict_kinds(t, x, (kind,))[0]

    # --- named views ----------------------------------------------------------------------------
    def __call__(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The PF-ODE right-hand side $dx/dt$ (the velocity)."""
        return self.predict_kinds(t, x, ("velocity",))[0]

    def velocity(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""$v = \dot\alpha\,\mathbb E[x_0|x] + \dot\sigma\,\mathbb E[\varepsilon|x]$."""
        return self.predict_kinds(t, x, ("velocity",))[0]

    def x0(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""Denoiser $\mathbb E[x_0 | x_t = x]$."""
        return self.predict_kinds(t, x, ("x0",))[0]

    def eps(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""Noise prediction $\mathbb E[\varepsilon | x_t = x]$."""
        return self.predict_kinds(t, x, ("epsilon",))[0]

    def score(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""Score $\nabla_x\log p_t(x) = -\mathbb E[\varepsilon|x]/\sigma$."""
        return self.predict_kinds(t, x, ("score",))[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, prediction={self.prediction!r})"


class ForwardSDE:
    r"""The forward (noising) SDE of a path: $dx = f(t)\,x\,dt + g(t)\,dw$, run from 0 to 1.

    $f = \dot\alpha/\alpha$, $g^2 = 2\sigma\dot\sigma - 2f\sigma^2$. Started from $x_0$ it has
    the marginals $N(\alpha(t)x_0, \sigma(t)^2 I)$ (when $\sigma(0) = 0$). Additive noise.
    Singular where $\alpha = 0$ (the linear and cosine paths at $t = 1$).
    """

    noise_type = "additive"

    def __init__(self, path: GaussianPath) -> None:
        self.path = _check_path(path)

    def drift(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """$f(t)\\,x$."""
        t64 = as_time(t, x).to(torch.float64)
        f = self.path._d_alpha(t64) / self.path._alpha(t64)
        return f.to(x.dtype) * x

    def diffusion(self, t: float | torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """$g(t)$ as a 0-d tensor (of ``x``'s dtype and device when ``x`` is given)."""
        like = x if x is not None else torch.empty((), dtype=torch.float64)
        t64 = as_time(t, like).to(torch.float64)
        g2 = self.path._g_squared(t64)
        return torch.sqrt(torch.clamp(g2, min=0.0)).to(like.dtype)

    def __repr__(self) -> str:
        return f"ForwardSDE({self.path!r})"


class ReverseSDE:
    r"""The marginal-preserving reverse SDE: drift $v - \tfrac12\gamma(t)^2 s$, diffusion $\gamma(t)$.

    Integrated from $t = 1$ to $t = 0$ (with $dt < 0$ and Brownian increments of variance
    $|dt|$), it has the same marginals as the path for every $\gamma$ (Song et al. 2021;
    Karras et al. 2022, eq. 6). ``gamma`` is either a float $c \ge 0$, meaning $\gamma = c\,g(t)$
    ($c = 1$: the classic reverse SDE $dx = [f x - g^2 s]dt + g\,d\bar w$; $c = 0$: the PF-ODE),
    or a callable ``t -> gamma(t)``. Additive noise. Each drift evaluation costs one model call.
    """

    noise_type = "additive"

    def __init__(self, flow: ProbabilityFlow, gamma: float | Callable[[torch.Tensor], torch.Tensor] = 1.0) -> None:
        if not isinstance(flow, ProbabilityFlow):
            raise InvalidInputError(f"flow must be a ProbabilityFlow, got {type(flow).__name__}")
        if callable(gamma):
            self._gamma_fn = gamma
            self.gamma_scale = None
        else:
            if (
                isinstance(gamma, bool)
                or not isinstance(gamma, (int, float))
                or not gamma >= 0
                or gamma == float("inf")
            ):
                raise InvalidInputError(
                    f"gamma must be a finite float >= 0 (a multiple of g) or a callable, got {gamma!r}"
                )
            self._gamma_fn = None
            self.gamma_scale = float(gamma)
        self.flow = flow
        self.path = flow.path
        self._forward = ForwardSDE(flow.path)

    def gamma(self, t: float | torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """$\\gamma(t)$ as a 0-d tensor."""
        like = x if x is not None else torch.empty((), dtype=torch.float64)
        if self._gamma_fn is not None:
            return torch.as_tensor(self._gamma_fn(as_time(t, like)), dtype=like.dtype, device=like.device)
        return self.gamma_scale * self._forward.diffusion(t, like)

    def drift(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """$v - \\tfrac12\\gamma^2 s$ from one model evaluation ($= v$ exactly when ``gamma = 0``)."""
        if self.gamma_scale == 0.0:
            return self.flow.velocity(t, x)
        v, s = self.flow.predict_kinds(t, x, ("velocity", "score"))
        g = self.gamma(t, x)
        return v - 0.5 * g * g * s

    def diffusion(self, t: float | torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """$\\gamma(t)$ (additive noise)."""
        return self.gamma(t, x)

    def __repr__(self) -> str:
        g = self.gamma_scale if self._gamma_fn is None else self._gamma_fn
        return f"ReverseSDE({self.flow!r}, gamma={g!r})"
