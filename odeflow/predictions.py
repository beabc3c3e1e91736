r"""What a network predicts, and exact conversions between the four kinds.

On a Gaussian path $x = \alpha x_0 + \sigma\varepsilon$ every prediction is linear in
$(x_0, \varepsilon)$:

| kind | in terms of $(x_0, \varepsilon)$ |
|---|---|
| ``"velocity"`` | $v = \dot\alpha\,x_0 + \dot\sigma\,\varepsilon$ |
| ``"epsilon"`` | $\varepsilon$ |
| ``"x0"`` | $x_0$ |
| ``"score"`` | $s = \nabla\log p_t(x) = -\varepsilon/\sigma$ |

Given $x$ and a source prediction $S = p_S x_0 + q_S\varepsilon$, the pair is recovered from
$\begin{pmatrix}\alpha & \sigma\\ p_S & q_S\end{pmatrix}\begin{pmatrix}x_0\\ \varepsilon\end{pmatrix}
= \begin{pmatrix}x\\ S\end{pmatrix}$, and a target $T = p_T x_0 + q_T\varepsilon$ is

$$T = \frac{(p_T q_S - q_T p_S)\,x + (q_T\alpha - p_T\sigma)\,S}{\alpha q_S - \sigma p_S}.$$

From a velocity this gives the forms of DESIGN.md §1:
$x_0 = (\sigma v - \dot\sigma x)/(\dot\alpha\sigma - \dot\sigma\alpha)$,
$\varepsilon = (\dot\alpha x - \alpha v)/(\dot\alpha\sigma - \dot\sigma\alpha)$.
A conversion that is singular at the given time (e.g. $\varepsilon \to x_0$ where
$\alpha = 0$, or anything to ``"score"`` where $\sigma = 0$) raises `InvalidInputError`.
"""

from __future__ import annotations

import torch

from odeflow._checks import check_choice, check_same_shape, check_state, check_time
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath

__all__ = ["PREDICTION_KINDS", "convert", "conversion_coefficients"]

PREDICTION_KINDS: tuple[str, ...] = ("velocity", "epsilon", "x0", "score")


def _pq(kind: str, coeffs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, q) with prediction = p·x0 + q·ε."""
    alpha, sigma, d_alpha, d_sigma = coeffs
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    if kind == "velocity":
        return d_alpha, d_sigma
    if kind == "epsilon":
        return zero, one
    if kind == "x0":
        return one, zero
    return zero, -1.0 / sigma  # score


def conversion_coefficients(
    source: str, target: str, t: torch.Tensor, path: GaussianPath
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Coefficients $(a, b)$ with target $= a\,x + b\,$source at time ``t`` (unchecked, float64-safe).

    Returns non-finite values where the conversion is singular; `convert` checks them.
    """
    coeffs = path.coefficients(t)
    alpha, sigma = coeffs[0], coeffs[1]
    if source == target:
        return torch.zeros_like(alpha), torch.ones_like(alpha)
    p_s, q_s = _pq(source, coeffs)
    p_t, q_t = _pq(target, coeffs)
    det = alpha * q_s - sigma * p_s
    a = (p_t * q_s - q_t * p_s) / det
    b = (q_t * alpha - p_t * sigma) / det
    return a, b


def convert(
    output: torch.Tensor,
    *,
    source: str,
    target: str,
    x: torch.Tensor,
    t: float | torch.Tensor,
    path: GaussianPath,
) -> torch.Tensor:
    r"""Convert a prediction of kind ``source`` at state ``x``, time ``t`` into kind ``target``.

    Exact (an affine map, see the module docstring); the coefficients are computed in float64
    and the result has ``output``'s dtype. ``t`` is a number or a 0-d tensor.
    """
    check_choice(source, PREDICTION_KINDS, "prediction kind")
    check_choice(target, PREDICTION_KINDS, "prediction kind")
    if not isinstance(path, GaussianPath):
        raise InvalidInputError(f"path must be a GaussianPath, got {type(path).__name__}")
    check_state(output, "output")
    check_state(x, "x")
    check_same_shape(output, x, ("output", "x"))
    check_time(t)
    t64 = torch.as_tensor(t, dtype=torch.float64)
    if t64.dim() != 0:
        raise InvalidInputError(f"t must be a number or a 0-d tensor, got shape {tuple(t64.shape)}")
    a, b = conversion_coefficients(source, target, t64.cpu(), path)
    if not (torch.isfinite(a) and torch.isfinite(b)):
        raise InvalidInputError(
            f"converting {source!r} to {target!r} is singular at t = {float(t64):g} on {path!r} "
            f"(alpha = {float(path.alpha(float(t64))):g}, sigma = {float(path.sigma(float(t64))):g}); "
            "evaluate at an interior time"
        )
    a = a.to(device=x.device, dtype=x.dtype)
    b = b.to(device=x.device, dtype=x.dtype)
    return a * x + b * output
