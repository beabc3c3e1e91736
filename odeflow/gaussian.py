r"""Gaussian data $N(\mu, \Sigma)$: the exact PF-ODE field and its closed-form flow map.

For data $x_0 \sim N(\mu, \Sigma)$ and a Gaussian path $x_t = \alpha x_0 + \sigma\varepsilon$,
the marginal is $N(\alpha\mu, C_t)$ with $C_t = \alpha^2\Sigma + \sigma^2 I$. With
$z = x - \alpha\mu$:

* $\mathbb E[x_0|x] = \mu + \alpha\Sigma C^{-1}z$, $\;\mathbb E[\varepsilon|x] = \sigma C^{-1}z$,
  $\;s = -C^{-1}z$;
* $v = \dot\alpha\mu + (\dot\alpha\alpha\Sigma + \dot\sigma\sigma I)C^{-1}z = \dot\alpha\mu + \tfrac12\dot C C^{-1}z$.

All $C_t$ commute (they share the eigenvectors $U$ of $\Sigma = U\,\mathrm{diag}(s)\,U^\top$), so
the PF-ODE is solved in closed form:

$$\phi_{t\to u}(x) = \alpha_u\mu + C_u^{1/2}C_t^{-1/2}(x - \alpha_t\mu),\qquad
C_t^{1/2} = U\,\mathrm{diag}\big(\sqrt{\alpha_t^2 s + \sigma_t^2}\big)U^\top .$$

It pushes $N(\alpha_t\mu, C_t)$ onto $N(\alpha_u\mu, C_u)$ — an analytic reference trajectory
for solver-error tests on a genuine generative ODE. This lives in the core so that
`solvers.testing` and `models` can both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from odeflow._checks import check_state, check_time
from odeflow.dynamics import ProbabilityFlow, _check_path, as_time
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from odeflow.predictions import PREDICTION_KINDS

__all__ = ["GaussianData", "GaussianFlow"]


class GaussianData:
    r"""Data distribution $N(\mu, \Sigma)$ in $\mathbb R^d$.

    ``mean``: shape ``(d,)``. ``cov``: a full ``(d, d)`` symmetric PSD matrix, a diagonal
    ``(d,)`` or a scalar (isotropic); zero is allowed (a point mass, the straight-path case).
    """

    def __init__(self, mean: torch.Tensor | Sequence[float], cov: torch.Tensor | float | Sequence[float]) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float64)
        if mean_t.dim() != 1 or mean_t.numel() == 0:
            raise InvalidInputError(f"mean must be a 1-d vector of length d >= 1, got shape {tuple(mean_t.shape)}")
        if not bool(torch.isfinite(mean_t).all()):
            raise InvalidInputError("mean contains NaN or infinite values")
        d = mean_t.numel()
        cov_t = torch.as_tensor(cov, dtype=torch.float64)
        if not bool(torch.isfinite(cov_t).all()):
            raise InvalidInputError("cov contains NaN or infinite values")
        if cov_t.dim() == 0:
            evals, evecs = cov_t.expand(d).clone(), None
        elif cov_t.shape == (d,):
            evals, evecs = cov_t.clone(), None
        elif cov_t.shape == (d, d):
            if not torch.allclose(cov_t, cov_t.T, atol=1e-12 * (1 + float(cov_t.abs().max()))):
                raise InvalidInputError("cov must be symmetric")
            evals, evecs = torch.linalg.eigh(cov_t)
            evals = torch.where(evals.abs() < 1e-14 * (1 + float(evals.abs().max())), 0.0, evals)
        else:
            raise InvalidInputError(
                f"cov must be a scalar, a diagonal of shape ({d},) or a matrix ({d}, {d}); got {tuple(cov_t.shape)}"
            )
        if bool((evals < 0).any()):
            raise InvalidInputError(f"cov must be positive semi-definite; smallest eigenvalue {float(evals.min()):g}")
        self.mean = mean_t
        self.dim = d
        self.eigenvalues = evals
        self.eigenvectors = evecs  # None: the standard basis (diagonal covariance)
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}

    # --- helpers -----------------------------------------------------------------------------------
    @property
    def cov(self) -> torch.Tensor:
        """The full covariance matrix $\\Sigma$ (float64)."""
        if self.eigenvectors is None:
            return torch.diag(self.eigenvalues)
        return self.eigenvectors @ torch.diag(self.eigenvalues) @ self.eigenvectors.T

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            U = None if self.eigenvectors is None else self.eigenvectors.to(like)
            self._cache[key] = (self.mean.to(like), self.eigenvalues.to(like), U)
        return self._cache[key]

    def _check_x(self, x: torch.Tensor) -> None:
        check_state(x, "x")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")

    @staticmethod
    def _to_basis(U: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        return z if U is None else z @ U

    @staticmethod
    def _from_basis(U: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        return w if U is None else w @ U.T

    # --- public API ----------------------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """``n`` samples of shape ``(n, d)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"n must be a positive integer, got {n!r}")
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        w = z * self.eigenvalues.sqrt()
        return (self.mean + self._from_basis(self.eigenvectors, w)).to(dtype)

    def marginal_cov_eigenvalues(self, t: float | torch.Tensor, path: GaussianPath) -> torch.Tensor:
        r"""Eigenvalues $\alpha_t^2 s + \sigma_t^2$ of $C_t$ (float64)."""
        check_time(t)
        t64 = torch.as_tensor(t, dtype=torch.float64).cpu()
        alpha, sigma = path._alpha(t64), path._sigma(t64)
        return alpha**2 * self.eigenvalues + sigma**2

    def field(self, path: GaussianPath) -> GaussianFlow:
        """The exact probability-flow field of this data on ``path``."""
        return GaussianFlow(self, _check_path(path))

    def flow_map(self, x: torch.Tensor, t_from: float, t_to: float, path: GaussianPath) -> torch.Tensor:
        r"""The exact PF-ODE solution map $\phi_{t_{from}\to t_{to}}(x)$ (see the module docstring).

        Singular where $C_{t_{from}}$ is (e.g. point-mass data at $t_{from} = 0$).
        """
        self._check_x(x)
        _check_path(path)
        c_from = self.marginal_cov_eigenvalues(t_from, path)
        c_to = self.marginal_cov_eigenvalues(t_to, path)
        if bool((c_from <= 0).any()):
            raise InvalidInputError(
                f"the flow map from t = {t_from:g} is singular: the marginal covariance there is not invertible"
            )
        alpha_from = path.alpha(float(t_from))
        alpha_to = path.alpha(float(t_to))
        mean, _, U = self._tensors(x)
        ratio = torch.sqrt(c_to / c_from).to(x)
        w = self._to_basis(U, x - alpha_from * mean)
        return alpha_to * mean + self._from_basis(U, ratio * w)


class GaussianFlow(ProbabilityFlow):
    """Exact PF-ODE field of `GaussianData` on a path; every prediction kind in closed form."""

    def __init__(self, data: GaussianData, path: GaussianPath) -> None:
        self.data = data
        self.model = None  # type: ignore[assignment]
        self.path = path
        self.prediction = "x0"

    def predict_kinds(self, t: float | torch.Tensor, x: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, ...]:
        check_time(t)
        mean, s, U = self.data._tensors(x)
        t64 = as_time(t, x).detach().to(torch.float64)
        alpha, sigma, d_alpha, d_sigma = (c.to(x.dtype) for c in self.path.coefficients(t64))
        c = alpha**2 * s + sigma**2
        inv_c = torch.where(c > 0, 1.0 / torch.where(c > 0, c, torch.ones_like(c)), torch.full_like(c, float("inf")))
        w = self.data._to_basis(U, x - alpha * mean)
        out = []
        for kind in kinds:
            if kind == "x0":
                coef = torch.where(s > 0, alpha * s * inv_c, torch.zeros_like(s))
                out.append(mean + self.data._from_basis(U, coef * w))
            elif kind == "epsilon":
                out.append(self.data._from_basis(U, sigma * inv_c * w))
            elif kind == "score":
                out.append(self.data._from_basis(U, -inv_c * w))
            elif kind == "velocity":
                # ½Ċ = α̇α s + ½ d(σ²)/dt, finite where σ̇ is not (VP at t = 0)
                half_d_sigma2 = 0.5 * self.path._d_sigma_squared(t64).to(x.dtype)
                coef = (d_alpha * alpha * s + half_d_sigma2) * inv_c
                out.append(d_alpha * mean + self.data._from_basis(U, coef * w))
            else:
                raise InvalidInputError(f"unknown prediction kind {kind!r}; valid kinds are {PREDICTION_KINDS}")
        return tuple(out)

    def __repr__(self) -> str:
        return f"GaussianFlow(dim={self.data.dim}, path={self.path!r})"
