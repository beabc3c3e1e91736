r"""Gaussian probability paths $x_t = \alpha(t)\,x_0 + \sigma(t)\,\varepsilon$, $\varepsilon \sim N(0, I)$.

Convention (DESIGN.md §1): $t \in [0, 1]$, $t = 0$ is data, $t = 1$ is noise; sampling runs
from 1 to 0. Every path gives $\alpha$, $\sigma$, their time derivatives, the half log-SNR
$\lambda(t) = \log\alpha - \log\sigma$ (strictly decreasing) and its inverse, all analytic.

| path | $\alpha(t)$ | $\sigma(t)$ |
|---|---|---|
| `LinearPath` (rectified flow) | $1 - t$ | $t$ |
| `VPPath` (continuous DDPM) | $\exp(-\tfrac14 t^2(\beta_1-\beta_0) - \tfrac12 t\beta_0)$ | $\sqrt{1-\alpha^2}$ |
| `CosinePath` | $\cos(\pi t/2)$ | $\sin(\pi t/2)$ |
| `VEPath` | $1$ | $\sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$ |

Methods accept a Python float (and return a float) or a tensor (and return a tensor of the
same dtype and device); they are exact in float64. Times outside $[0, 1]$ raise
`InvalidInputError` (CPU tensors and floats are checked; accelerator tensors are not, to
avoid a host synchronisation).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive, check_time
from odeflow.errors import InvalidInputError

__all__ = [
    "GaussianPath",
    "LinearPath",
    "VPPath",
    "CosinePath",
    "VEPath",
    "PATHS",
    "get_path",
    "path_names",
]

Time = float | torch.Tensor


def _as_tensor(t: Time) -> tuple[torch.Tensor, bool]:
    """Return ``t`` as a floating tensor (float64 for Python numbers) and whether it was a number."""
    if isinstance(t, torch.Tensor):
        return (t if torch.is_floating_point(t) else t.double()), False
    return torch.tensor(float(t), dtype=torch.float64), True


def _out(value: torch.Tensor, was_number: bool) -> Time:
    return float(value) if was_number else value


class GaussianPath(ABC):
    r"""A Gaussian path: subclasses define $\alpha$, $\sigma$, $\dot\alpha$, $\dot\sigma$, $\lambda$, $\lambda^{-1}$.

    Subclasses implement the unchecked tensor formulas ``_alpha`` … ``_t_from_log_snr``;
    the public methods check the time and keep Python numbers as numbers.
    """

    name: str = "gaussian"

    # --- formulas on tensors (no checks) --------------------------------------------------
    @abstractmethod
    def _alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _sigma(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _d_alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _d_sigma(self, t: torch.Tensor) -> torch.Tensor: ...

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return torch.log(self._alpha(t)) - torch.log(self._sigma(t))

    @abstractmethod
    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor: ...

    # --- public API -------------------------------------------------------------------------
    def alpha(self, t: Time) -> Time:
        r"""Signal scale $\alpha(t)$."""
        return self._apply(self._alpha, t)

    def sigma(self, t: Time) -> Time:
        r"""Noise scale $\sigma(t)$."""
        return self._apply(self._sigma, t)

    def d_alpha(self, t: Time) -> Time:
        r"""Time derivative $\dot\alpha(t)$."""
        return self._apply(self._d_alpha, t)

    def d_sigma(self, t: Time) -> Time:
        r"""Time derivative $\dot\sigma(t)$."""
        return self._apply(self._d_sigma, t)

    def log_snr(self, t: Time) -> Time:
        r"""Half log signal-to-noise ratio $\lambda(t) = \log\alpha(t) - \log\sigma(t)$ (decreasing in t)."""
        return self._apply(self._log_snr, t)

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""The inverse of `log_snr`: the time $t$ with $\lambda(t) = $ ``lam``."""
        lam_t, was_number = _as_tensor(lam)
        if lam_t.device.type == "cpu" and bool(torch.isnan(lam_t).any()):
            raise InvalidInputError("lam contains NaN; log-SNR values must be real numbers (±inf allowed)")
        t = self._t_from_log_snr(lam_t)
        lo, hi = self.t_min, self.t_max
        return _out(t.clamp(lo, hi), was_number)

    def _d_sigma_squared(self, t: torch.Tensor) -> torch.Tensor:
        r"""$d(\sigma^2)/dt = 2\sigma\dot\sigma$ (overridden where $\dot\sigma$ is singular)."""
        return 2.0 * self._sigma(t) * self._d_sigma(t)

    def _g_squared(self, t: torch.Tensor) -> torch.Tensor:
        r"""$g^2 = d(\sigma^2)/dt - 2(\dot\alpha/\alpha)\sigma^2$, unchecked."""
        return self._d_sigma_squared(t) - 2.0 * self._d_alpha(t) / self._alpha(t) * self._sigma(t) ** 2

    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r"""$(\alpha, \sigma, \dot\alpha, \dot\sigma)$ at tensor ``t``, unchecked: for inner loops."""
        return self._alpha(t), self._sigma(t), self._d_alpha(t), self._d_sigma(t)

    def drift_coefficient(self, t: Time) -> Time:
        r"""Forward-SDE drift coefficient $f(t) = \dot\alpha/\alpha$ (so that $dx = f\,x\,dt + g\,dw$)."""
        return self._apply(lambda s: self._d_alpha(s) / self._alpha(s), t)

    def diffusion_squared(self, t: Time) -> Time:
        r"""Forward-SDE $g(t)^2 = 2\sigma\dot\sigma - 2f\sigma^2 = -2\sigma^2\dot\lambda$."""

        return self._apply(self._g_squared, t)

    # domain of t on which the inverse of λ is returned (subclasses may narrow it)
    t_min: float = 0.0
    t_max: float = 1.0

    def _apply(self, fn: Any, t: Time) -> Time:
        check_time(t)
        t_t, was_number = _as_tensor(t)
        return _out(fn(t_t), was_number)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict[str, Any]:
        return {}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params() == other._params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self._params().items()))))


class LinearPath(GaussianPath):
    r"""Rectified flow / linear interpolation: $\alpha = 1 - t$, $\sigma = t$.

    $\lambda = \log(1-t) - \log t$, $\lambda^{-1}(\ell) = 1/(1 + e^{\ell})$. The velocity is
    $v = \varepsilon - x_0$ (Liu et al. 2022; Lipman et al. 2023; the Flux/SD3 convention).
    """

    name = "linear"

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - t

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    def _d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -1.0)

    def _d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return torch.log1p(-t) - torch.log(t)

    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-lam)


class VPPath(GaussianPath):
    r"""Variance-preserving path of continuous DDPM (Song et al. 2021), $\alpha^2 + \sigma^2 = 1$.

    $\log\alpha(t) = -\tfrac14 t^2(\beta_{\max}-\beta_{\min}) - \tfrac12 t\beta_{\min}$,
    $\sigma = \sqrt{1 - \alpha^2}$ (computed as $\sqrt{-\mathrm{expm1}(2\log\alpha)}$),
    $\dot\sigma = -\alpha\dot\alpha/\sigma$ (infinite at $t = 0$, where $\sigma \sim \sqrt{\beta_{\min}t}$).
    Inverse of $\lambda$: $\log\alpha = -\tfrac12\,\mathrm{softplus}(-2\lambda)$, then the root
    $t = -2L / (b + \sqrt{b^2 - 4aL})$ of $a t^2 + b t + L = 0$ with $a = (\beta_{\max}-\beta_{\min})/4$,
    $b = \beta_{\min}/2$, $L = \log\alpha$.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        check_positive(beta_min, "beta_min")
        check_positive(beta_max, "beta_max")
        if beta_max < beta_min:
            raise InvalidInputError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def _params(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}

    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._log_alpha(t))

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def _d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self._alpha(t) * (-0.5 * t * (self.beta_max - self.beta_min) - 0.5 * self.beta_min)

    def _d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -self._alpha(t) * self._d_alpha(t) / self._sigma(t)

    def _d_sigma_squared(self, t: torch.Tensor) -> torch.Tensor:
        return -2.0 * self._alpha(t) * self._d_alpha(t)  # σ² = 1 − α², finite at t = 0

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        log_alpha = self._log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))

    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.5 * torch.nn.functional.softplus(-2.0 * lam)
        a = 0.25 * (self.beta_max - self.beta_min)
        b = 0.5 * self.beta_min
        return -2.0 * log_alpha / (b + torch.sqrt(b * b - 4.0 * a * log_alpha))


class CosinePath(GaussianPath):
    r"""Cosine path (Nichol & Dhariwal 2021, continuous form): $\alpha = \cos(\pi t/2)$, $\sigma = \sin(\pi t/2)$.

    $\alpha$ is evaluated as $\sin(\pi(1-t)/2)$ so that it is exactly 0 at $t = 1$.
    $\lambda = -\log\tan(\pi t/2)$, $\lambda^{-1}(\ell) = \tfrac{2}{\pi}\arctan(e^{-\ell})$.
    """

    name = "cosine"

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * (1.0 - t))

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * t)

    def _d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * self._sigma(t)

    def _d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.pi * self._alpha(t)

    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return (2.0 / math.pi) * torch.atan(torch.exp(-lam))


class VEPath(GaussianPath):
    r"""Variance-exploding path (Song et al. 2021).

    $\alpha = 1$, $\sigma = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$,
    $\dot\sigma = \sigma\log(\sigma_{\max}/\sigma_{\min})$, $\lambda = -\log\sigma$,
    $\lambda^{-1}(\ell) = (-\ell - \log\sigma_{\min}) / \log(\sigma_{\max}/\sigma_{\min})$ (clamped to [0, 1]).
    Note $\sigma(0) = \sigma_{\min} > 0$: the path starts at slightly noised data.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        check_positive(sigma_min, "sigma_min")
        check_positive(sigma_max, "sigma_max")
        if sigma_max <= sigma_min:
            raise InvalidInputError(f"sigma_max ({sigma_max}) must be > sigma_min ({sigma_min})")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def _d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def _d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self._sigma(t) * self._log_ratio

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        return -(math.log(self.sigma_min) + t * self._log_ratio)

    def _t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return (-lam - math.log(self.sigma_min)) / self._log_ratio


PATHS: dict[str, type[GaussianPath]] = {
    "linear": LinearPath,
    "vp": VPPath,
    "cosine": CosinePath,
    "ve": VEPath,
}


def path_names() -> list[str]:
    """Names accepted by `get_path`."""
    return list(PATHS)


def get_path(name: str | GaussianPath, **kwargs: Any) -> GaussianPath:
    """Return a path by name (``"linear"``, ``"vp"``, ``"cosine"``, ``"ve"``) or pass one through."""
    if isinstance(name, GaussianPath):
        return name
    check_choice(name, PATHS, "path")
    try:
        return PATHS[name](**kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"bad parameters for path {name!r}: {exc}") from None
