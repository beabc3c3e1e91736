r"""Gaussian-mixture data with exact fields under every Gaussian path.

Data $x_0 \sim \sum_k w_k\,N(\mu_k, \Sigma_k)$ and a path $x_t = \alpha x_0 + \sigma\varepsilon$
(DESIGN.md §1) give, in closed form (no finite differences, no Monte Carlo):

* marginal $p_t = \sum_k w_k\,N(\alpha\mu_k, C_k)$ with $C_k = \alpha^2\Sigma_k + \sigma^2 I$;
* responsibilities $r_k(x) \propto w_k\,N(x; \alpha\mu_k, C_k)$ (log-sum-exp);
* with $d_k = x - \alpha\mu_k$ and $G = \sum_k r_k C_k^{-1} d_k$:
  score $s = -G$, noise $\mathbb E[\varepsilon|x] = \sigma G$,
  denoiser $\mathbb E[x_0|x] = \sum_k r_k\,(\mu_k + \alpha\Sigma_k C_k^{-1} d_k)$,
  velocity $v = \dot\alpha\,\mathbb E[x_0|x] + \sigma\dot\sigma\,G$
  (the PF-ODE $dx/dt = f x - \tfrac12 g^2 s$; Song et al. 2021, Karras et al. 2022).

**Linear algebra.** Each $\Sigma_k = U_k\,\mathrm{diag}(\lambda_k)\,U_k^\top$ is diagonalised once
(``eigh``, float64, at construction); every $C_k(t)$ shares $U_k$ and has eigenvalues
$c_k = \alpha^2\lambda_k + \sigma^2$, so a time costs $O(Kd)$ set-up and a point $O(Kd^2)$
(full), $O(Kd)$ (diagonal, isotropic). This is the Cholesky solve of $C_k$ done in the frame
where it is diagonal; unlike a per-time Cholesky it stays defined where $C_k$ is singular
(zero covariances at $\sigma = 0$). Diagonal and isotropic covariances skip the rotation. For
$d > 16$ (diagonal/isotropic) the quadratic forms are expanded into matrix products
($|x|^2/c - 2\alpha x\cdot\mu/c + \alpha^2|\mu|^2/c$), which is much faster for many components in
high dimension (e.g. the memorising field of an empirical data set); in float32 with tiny
$\sigma$ that expansion loses digits of the responsibilities (use float64 there).

**Memory.** The batch is processed in chunks of at most ``chunk_elements`` entries of the
$(b, K, d)$ intermediates, so $10^6$ points × 100 components in 2-D need about 0.2 GB over the
process baseline (see `benchmark_velocity`).

**Endpoints.** At $\alpha = 0$ (linear and cosine paths at $t = 1$) $C_k = \sigma^2 I$:
$\mathbb E[x_0|x] = \sum_k w_k\mu_k$, $\mathbb E[\varepsilon|x] = x/\sigma$. At $\sigma = 0$
($t = 0$ on the linear, VP and cosine paths) $x_t = \alpha x_0$ carries no information about
$\varepsilon$, so exactly $\mathbb E[x_0|x] = x/\alpha$ and $\mathbb E[\varepsilon|x] = 0$; when
every $\Sigma_k$ is non-singular these are also the limits $\sigma \to 0$, the score is the data
score $-\sum_k r_k\Sigma_k^{-1}(x-\mu_k)/\alpha^2$, and the velocity
$\dot\alpha x/\alpha + \sigma\dot\sigma G$ is finite — the VP path has $\dot\sigma = \infty$ at
$t = 0$ but $\sigma\dot\sigma = -\alpha\dot\alpha$ is finite, so the product, not $\dot\sigma$,
is evaluated. When some $\Sigma_k$ is singular (an empirical distribution, zero covariance) the
density at $\sigma = 0$ does not exist: the field returns the exact conditional expectations
($x_0 = x/\alpha$, $\varepsilon = 0$, $v = \dot\alpha x/\alpha$) and the score raises
`InvalidInputError` (on an accelerator, where checking would synchronise the host, it is NaN).
Off the support the $\sigma \to 0$ limit of the memorising velocity diverges; that is the
field, not a numerical artefact.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from odeflow._checks import check_choice, check_positive, check_state, check_time
from odeflow.dynamics import ProbabilityFlow, _check_path, as_time
from odeflow.errors import InvalidInputError
from odeflow.gaussian import GaussianData
from odeflow.paths import GaussianPath
from odeflow.predictions import PREDICTION_KINDS

__all__ = ["GaussianMixture", "MixtureFlow", "flow_map", "benchmark_velocity"]

ArrayLike = torch.Tensor | Sequence[Any] | float
_LOG_2PI = math.log(2.0 * math.pi)
_GRAM_MIN_DIM = 17  # diagonal/isotropic covariances use the matrix-product expansion from this dimension on


def _as_float64(value: Any, name: str) -> torch.Tensor:
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{name} must be a tensor or a nested sequence of numbers: {exc}") from None
    out = out.detach().cpu().clone()
    if not bool(torch.isfinite(out).all()):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return out


@dataclass
class _Frame:
    """The mixture's parameters cast to one dtype and device (cached)."""

    log_w: torch.Tensor  # (K,)
    mu: torch.Tensor  # (K, d)
    nu: torch.Tensor | None  # (K, d): U_kᵀ μ_k (full covariances)
    u_cat: torch.Tensor | None  # (d, d·K): column j·K + k is U_k[:, j] (full covariances)
    lam64: torch.Tensor  # (K, d) or (K, 1), float64 on the device: eigenvalues of Σ_k


class GaussianMixture:
    r"""The mixture $\sum_k w_k\,N(\mu_k, \Sigma_k)$ in $\mathbb R^d$, with exact fields on any path.

    Parameters
    ----------
    weights:
        ``(K,)``, non-negative with a positive sum; normalised to sum to 1.
    means:
        ``(K, d)``.
    covs:
        full ``(K, d, d)`` (symmetric positive semi-definite), diagonal ``(K, d)``, isotropic
        ``(K,)`` or one number (the same isotropic variance for all). Zero is allowed: zero
        covariances make an empirical distribution, whose field is the memorising optimal one.

    Parameters are stored in float64 on the CPU; evaluations run in the dtype and on the device
    of the input (float32 or float64). See the module docstring for the formulas.
    """

    chunk_elements: int = 1 << 22

    def __init__(self, weights: ArrayLike, means: ArrayLike, covs: ArrayLike) -> None:
        w = _as_float64(weights, "weights")
        mu = _as_float64(means, "means")
        cov = _as_float64(covs, "covs")
        if mu.dim() != 2 or mu.shape[0] == 0 or mu.shape[1] == 0:
            raise InvalidInputError(f"means must have shape (K, d) with K, d >= 1, got {tuple(mu.shape)}")
        K, d = mu.shape
        if w.shape != (K,):
            raise InvalidInputError(
                f"weights must have shape ({K},) to match means {tuple(mu.shape)}, got {tuple(w.shape)}"
            )
        if bool((w < 0).any()):
            raise InvalidInputError(f"weights must be non-negative, got minimum {float(w.min()):g}")
        total = float(w.sum())
        if not total > 0:
            raise InvalidInputError("weights must have a positive sum")
        self.weights = w / total
        self.means = mu
        self.dim = int(d)
        self.n_components = int(K)
        self._eigvecs: torch.Tensor | None = None
        if cov.dim() == 0:
            cov = cov.expand(K).clone()
        if cov.shape == (K,):
            self.cov_type = "isotropic"
            lam = cov[:, None]
        elif cov.shape == (K, d):
            self.cov_type = "diagonal"
            lam = cov
        elif cov.shape == (K, d, d):
            self.cov_type = "full"
            scale = 1.0 + float(cov.abs().max())
            if not torch.allclose(cov, cov.transpose(1, 2), rtol=0.0, atol=1e-10 * scale):
                raise InvalidInputError("full covariances must be symmetric: covs[k] == covs[k].T")
            cov = 0.5 * (cov + cov.transpose(1, 2))
            lam, vecs = torch.linalg.eigh(cov)
            tol = 1e-12 * (1.0 + lam.abs().amax(dim=1, keepdim=True))
            if bool((lam < -tol).any()):
                k = int((lam < -tol).any(dim=1).nonzero()[0])
                raise InvalidInputError(
                    f"covs[{k}] is not positive semi-definite (smallest eigenvalue {float(lam[k].min()):g})"
                )
            lam = torch.where(lam.abs() <= tol, torch.zeros_like(lam), lam)
            self._eigvecs = vecs
        else:
            raise InvalidInputError(
                f"covs must be full ({K}, {d}, {d}), diagonal ({K}, {d}), isotropic ({K},) or a number; "
                f"got shape {tuple(cov.shape)}"
            )
        if bool((lam < 0).any()):
            raise InvalidInputError(f"variances must be non-negative, got minimum {float(lam.min()):g}")
        self.covs = cov
        self._lam = lam  # (K, d) or (K, 1)
        self.singular = bool((lam == 0).any())
        self._frames: dict[tuple[torch.dtype, torch.device], _Frame] = {}
        self._gaussian: GaussianData | None = None

    # --- constructors and summaries --------------------------------------------------------------
    @classmethod
    def empirical(cls, points: ArrayLike, weights: ArrayLike | None = None) -> GaussianMixture:
        """Point masses at ``points`` ``(n, d)`` (uniform weights unless given): the memorising data."""
        pts = _as_float64(points, "points")
        if pts.dim() != 2:
            raise InvalidInputError(f"points must have shape (n, d), got {tuple(pts.shape)}")
        w = torch.ones(pts.shape[0], dtype=torch.float64) if weights is None else weights
        return cls(w, pts, torch.zeros(pts.shape[0], dtype=torch.float64))

    def covariance_matrices(self) -> torch.Tensor:
        """The component covariances as full matrices ``(K, d, d)`` (float64)."""
        if self.cov_type == "full":
            return self.covs.clone()
        return torch.diag_embed(self._lam.expand(self.n_components, self.dim).clone())

    def mean(self) -> torch.Tensor:
        r"""Mixture mean $\sum_k w_k\mu_k$ (float64, ``(d,)``)."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        r"""Mixture covariance $\sum_k w_k(\Sigma_k + \mu_k\mu_k^\top) - m m^\top$ (float64, ``(d, d)``)."""
        m = self.mean()
        centred = self.means - m
        second = torch.einsum("k,kij->ij", self.weights, self.covariance_matrices())
        return second + torch.einsum("k,ki,kj->ij", self.weights, centred, centred)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, covs={self.cov_type!r})"

    # --- sampling and density --------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """``n`` independent samples, shape ``(n, d)``, on the CPU in ``dtype`` (drawn in float64)."""
        check_positive(n, "n", integer=True)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        scale = self._lam.sqrt()
        if self._eigvecs is None:
            out = self.means[comp] + scale[comp] * z
        else:
            out = torch.empty(n, self.dim, dtype=torch.float64)
            factors = self._eigvecs * scale[:, None, :]  # A_k = U_k diag(√λ_k), Σ_k = A_k A_kᵀ
            for k in torch.unique(comp).tolist():
                idx = (comp == k).nonzero().squeeze(1)
                out[idx] = self.means[k] + z[idx] @ factors[k].T
        return out.to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\log\sum_k w_k N(x; \mu_k, \Sigma_k)$, shape ``(batch,)``, in ``x``'s dtype.

        Differentiable in ``x``. Raises `InvalidInputError` when some $\Sigma_k$ is singular
        (no density); use `marginal` at a time with $\sigma > 0$ instead.
        """
        self._check_x(x)
        if self.singular:
            raise InvalidInputError(
                "log_prob needs non-singular covariances; this mixture has a zero variance (no density). "
                "Use marginal(t, path).log_prob with sigma(t) > 0"
            )
        frame = self._frame(x)
        const, neg_half_inv_c, _ = self._consts(frame, frame.lam64, x.dtype, {})
        one = torch.ones((), dtype=x.dtype, device=x.device)
        pieces = [self._chunk(xc, one, frame, const, neg_half_inv_c, {}, need_logp=True)[2] for xc in self._chunks(x)]
        return torch.cat(pieces) if pieces else x.new_empty(0)

    def marginal(self, t: float | torch.Tensor, path: GaussianPath) -> GaussianMixture:
        r"""The law of $x_t$: $\sum_k w_k N(\alpha\mu_k, \alpha^2\Sigma_k + \sigma^2 I)$ (same covariance type)."""
        _check_path(path)
        t_f = self._check_t(t)
        alpha, sigma = path.alpha(t_f), path.sigma(t_f)
        if self.cov_type == "full":
            eye = torch.eye(self.dim, dtype=torch.float64)
            covs = alpha**2 * self.covs + sigma**2 * eye
        else:
            covs = alpha**2 * self.covs + sigma**2
        return GaussianMixture(self.weights, alpha * self.means, covs)

    # --- exact fields ------------------------------------------------------------------------------
    def field(self, path: GaussianPath) -> MixtureFlow:
        """The exact probability-flow field of this mixture on ``path`` (a `ProbabilityFlow`)."""
        return MixtureFlow(self, path)

    def x0(self, t: float | torch.Tensor, x: torch.Tensor, path: GaussianPath) -> torch.Tensor:
        r"""Denoiser $\mathbb E[x_0 | x_t = x]$."""
        return self.field(path).x0(t, x)

    def eps(self, t: float | torch.Tensor, x: torch.Tensor, path: GaussianPath) -> torch.Tensor:
        r"""Noise prediction $\mathbb E[\varepsilon | x_t = x]$."""
        return self.field(path).eps(t, x)

    def score(self, t: float | torch.Tensor, x: torch.Tensor, path: GaussianPath) -> torch.Tensor:
        r"""Score $\nabla_x \log p_t(x)$."""
        return self.field(path).score(t, x)

    def velocity(self, t: float | torch.Tensor, x: torch.Tensor, path: GaussianPath) -> torch.Tensor:
        r"""PF-ODE velocity $dx/dt$."""
        return self.field(path).velocity(t, x)

    def flow_map(self, x: torch.Tensor, t_from: float, t_to: float, path: GaussianPath) -> torch.Tensor:
        r"""Exact PF-ODE solution map from ``t_from`` to ``t_to``; only for one component (``K = 1``).

        Delegates to `odeflow.gaussian.GaussianData.flow_map`:
        $\alpha_{to}\mu + C_{to}^{1/2}C_{from}^{-1/2}(x - \alpha_{from}\mu)$. A mixture of several
        components has no closed-form flow map (solve the ODE of `field` instead).
        """
        if self.n_components != 1:
            raise InvalidInputError(
                f"flow_map has a closed form for a single Gaussian only; this mixture has "
                f"{self.n_components} components (integrate field(path) with a solver instead)"
            )
        if self._gaussian is None:
            cov = self.covs[0] if self.cov_type != "isotropic" else self.covs[0].item()
            self._gaussian = GaussianData(self.means[0], cov)
        return self._gaussian.flow_map(x, t_from, t_to, path)

    # --- the kernel ---------------------------------------------------------------------------------
    def _check_x(self, x: Any) -> None:
        check_state(x, "x")
        if x.dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(f"x has dtype {x.dtype}; mixture fields are evaluated in float32 or float64")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")

    @staticmethod
    def _check_t(t: float | torch.Tensor) -> float:
        if isinstance(t, torch.Tensor) and t.numel() != 1:
            raise InvalidInputError(f"t must be a number or a 0-d tensor, got shape {tuple(t.shape)}")
        check_time(t)
        return float(t)

    def _frame(self, like: torch.Tensor) -> _Frame:
        key = (like.dtype, like.device)
        frame = self._frames.get(key)
        if frame is None:
            with torch.no_grad():
                log_w = torch.log(self.weights)  # -inf for zero weights: those components never win
                nu = u_cat = None
                if self._eigvecs is not None:
                    nu = torch.einsum("kij,ki->kj", self._eigvecs, self.means).to(like)
                    # column j·K + k of u_cat is the j-th eigenvector of Σ_k
                    u_cat = self._eigvecs.permute(1, 2, 0).reshape(self.dim, -1).to(like)
                frame = _Frame(
                    log_w=log_w.to(like),
                    mu=self.means.to(like),
                    nu=nu,
                    u_cat=u_cat,
                    lam64=self._lam.to(device=like.device),
                )
            self._frames[key] = frame
        return frame

    def _consts(
        self, frame: _Frame, c64: torch.Tensor, dtype: torch.dtype, coefs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Per-time tensors from the eigenvalues ``c64`` (K, d) or (K, 1) of C_k (float64, positive).

        Returns the log-normaliser plus log-weight ``const`` (K,), ``-½/c`` transposed (d, K) or
        (1, K), and the requested coefficient sets (float64 (K, ·)) transposed and cast.
        """
        reps = self.dim if self.cov_type == "isotropic" else 1
        log_det = torch.log(c64).sum(dim=1) * reps
        const = (frame.log_w.to(torch.float64) - 0.5 * log_det - 0.5 * self.dim * _LOG_2PI).to(dtype)
        neg_half_inv_c = (-0.5 / c64).T.contiguous().to(dtype)
        return const, neg_half_inv_c, {name: c.T.contiguous().to(dtype) for name, c in coefs.items()}

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        per_point = self.n_components * (self.dim if self._use_direct() else 1)
        size = max(1, self.chunk_elements // max(per_point, 1))
        return list(torch.split(x, size)) if x.shape[0] > 0 else []

    def _use_direct(self) -> bool:
        return self.cov_type == "full" or self.dim < _GRAM_MIN_DIM

    def _chunk(
        self,
        xc: torch.Tensor,
        a: torch.Tensor,
        frame: _Frame,
        const: torch.Tensor,
        neg_half_inv_c: torch.Tensor,
        coefs: dict[str, torch.Tensor],
        *,
        need_logp: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        r"""Weighted sums for one chunk of points.

        With responsibilities $r_k$ and $\delta_k = U_k^\top(x - \alpha\mu_k)$ (no rotation for
        diagonal/isotropic covariances) returns, for each coefficient set $\kappa$ in ``coefs``
        (transposed, (d, K) or (1, K)), $\sum_k r_k U_k(\kappa_k \odot \delta_k)$; also
        $\sum_k r_k\mu_k$ and, if asked, $\log p(x)$.
        """
        b, K, d = xc.shape[0], self.n_components, self.dim
        sums: dict[str, torch.Tensor] = {}
        if self._use_direct():
            # (b, K) slabs per coordinate: every elementwise op and reduction runs over contiguous K
            coords = None if frame.u_cat is None else (xc @ frame.u_cat).view(b, d, K)  # U_kᵀ x
            centres = a * (frame.mu if frame.nu is None else frame.nu).T  # (d, K)
            deltas = []
            logits = None
            for j in range(d):
                dj = (xc[:, j, None] if coords is None else coords[:, j]) - centres[j]
                nh = neg_half_inv_c[j if neg_half_inv_c.shape[0] > 1 else 0]
                quad_j = dj * dj * nh
                logits = const + quad_j if logits is None else logits + quad_j
                deltas.append(dj)
            if K == 1:  # one component: r = 1 (skips a softmax)
                log_p, r = logits[:, 0], torch.ones_like(logits)
            else:
                log_p = torch.logsumexp(logits, dim=-1) if need_logp else None
                r = torch.softmax(logits, dim=-1)
            for name, kappa in coefs.items():
                per_j = kappa.shape[0] > 1
                if frame.u_cat is None:
                    rk = None if per_j else r * kappa[0]
                    cols = []
                    for j in range(d):
                        w = r * kappa[j] if per_j else rk
                        cols.append(torch.bmm(deltas[j][:, None, :], w[:, :, None]).view(b))
                    sums[name] = torch.stack(cols, dim=1)
                else:
                    weighted = torch.stack(deltas, dim=1) * (r[:, None, :] * kappa)  # (b, d, K)
                    sums[name] = weighted.reshape(b, d * K) @ frame.u_cat.T
        else:  # diagonal / isotropic in high dimension: expand the quadratic forms into matrix products
            mu = frame.mu
            nh = neg_half_inv_c.T  # (K, d) or (K, 1)
            sq = xc * xc
            x_term = sq.sum(dim=1, keepdim=True) * nh.T if self.cov_type == "isotropic" else sq @ nh.T
            logits = const + x_term - (2.0 * a) * (xc @ (mu * nh).T) + (a * a) * (mu * mu * nh).sum(dim=1)
            log_p = torch.logsumexp(logits, dim=-1) if need_logp else None
            r = torch.softmax(logits, dim=-1)
            for name, kappa in coefs.items():
                kap = kappa.T  # (K, d) or (K, 1)
                sums[name] = xc * (r @ kap) - a * (r @ (mu * kap))
        return sums, r @ frame.mu, log_p

    def _predict(self, t: float | torch.Tensor, x: torch.Tensor, path: GaussianPath, kinds: Sequence[str]):
        r"""Every kind in ``kinds`` from one computation of the responsibilities.

        With $\delta_k = x - \alpha\mu_k$ and $c_k$ the eigenvalues of $C_k$:
        $G = \sum_k r_k C_k^{-1}\delta_k$ (coefficients $1/c$; score $-G$, noise $\sigma G$),
        $\mathbb E[x_0|x] = \sum_k r_k\mu_k + \alpha\sum_k r_k \Sigma_k C_k^{-1}\delta_k$
        (coefficients $\lambda/c$) and
        $v = \dot\alpha\sum_k r_k\mu_k + \sum_k r_k\,(\dot\alpha\alpha\Sigma_k + \sigma\dot\sigma I)C_k^{-1}\delta_k$
        (coefficients $(\dot\alpha\alpha\lambda + \sigma\dot\sigma)/c$, i.e. $\tfrac12\dot C_k C_k^{-1}$).
        """
        for kind in kinds:
            check_choice(kind, PREDICTION_KINDS, "prediction kind")
        self._check_x(x)
        if isinstance(t, torch.Tensor) and t.numel() != 1:
            raise InvalidInputError(f"t must be a number or a 0-d tensor, got shape {tuple(t.shape)}")
        check_time(t)
        dtype = x.dtype
        t64 = as_time(t, x).detach().to(torch.float64)
        alpha64, sigma64, d_alpha64 = path._alpha(t64), path._sigma(t64), path._d_alpha(t64)
        sig_dsig64 = 0.5 * path._d_sigma_squared(t64)  # σσ̇, finite at t = 0 on the VP path
        frame = self._frame(x)
        lam = frame.lam64
        c64 = alpha64**2 * lam + sigma64**2
        zero_sigma = None
        if self.singular:
            zero_sigma = sigma64 == 0
            c64 = torch.where(c64 > 0, c64, torch.ones_like(c64))  # only reached at σ = 0; masked below
            if "score" in kinds and t64.device.type == "cpu" and bool(zero_sigma):
                raise InvalidInputError(
                    f"the score at t = {float(t64):g} (sigma = 0) does not exist for a mixture with zero "
                    "variances (an empirical distribution); evaluate at sigma(t) > 0"
                )
        coefs64: dict[str, torch.Tensor] = {}
        if "epsilon" in kinds or "score" in kinds:
            coefs64["g"] = 1.0 / c64
        if "x0" in kinds:
            coefs64["h"] = lam / c64
        if "velocity" in kinds:
            coefs64["v"] = (d_alpha64 * alpha64 * lam + sig_dsig64) / c64
        const, neg_half_inv_c, coefs = self._consts(frame, c64, dtype, coefs64)
        a = alpha64.to(dtype)
        chunks = self._chunks(x)
        if len(chunks) == 1:
            totals, mean, _ = self._chunk(x, a, frame, const, neg_half_inv_c, coefs)
        else:
            totals = {name: torch.empty_like(x) for name in coefs}
            mean = torch.empty_like(x)
            start = 0
            for xc in chunks:
                sums, mean_c, _ = self._chunk(xc, a, frame, const, neg_half_inv_c, coefs)
                stop = start + xc.shape[0]
                for name, value in sums.items():
                    totals[name][start:stop] = value
                mean[start:stop] = mean_c
                start = stop
        sigma, d_alpha = sigma64.to(dtype), d_alpha64.to(dtype)
        if zero_sigma is not None:
            # σ = 0 with a singular Σ_k: the exact conditional expectations x0 = x/α, ε = 0
            alpha_safe = torch.where(zero_sigma, alpha64, torch.ones_like(alpha64)).to(dtype)
            x_over_alpha = x / alpha_safe
        out = []
        for kind in kinds:
            if kind == "x0":
                value = mean + a * totals["h"]
                if zero_sigma is not None:
                    value = torch.where(zero_sigma, x_over_alpha, value)
            elif kind == "velocity":
                value = d_alpha * mean + totals["v"]
                if zero_sigma is not None:
                    value = torch.where(zero_sigma, d_alpha * x_over_alpha, value)
            elif kind == "epsilon":
                value = sigma * totals["g"]
                if zero_sigma is not None:
                    value = torch.where(zero_sigma, torch.zeros_like(value), value)
            else:
                value = -totals["g"]
                if zero_sigma is not None:
                    value = torch.where(zero_sigma, torch.full_like(value, float("nan")), value)
            out.append(value)
        return tuple(out)


class MixtureFlow(ProbabilityFlow):
    r"""The exact PF-ODE field of a `GaussianMixture` on a path.

    ``flow(t, x)`` is the velocity; ``x0``, ``eps``, ``score``, ``velocity`` and `predict_kinds`
    return the exact predictions (module docstring), all kinds of one call from **one**
    computation of the responsibilities. ``x`` must be ``(batch, d)``, float32 or float64.
    Cost per call: $O(BKd^2)$ (full) or $O(BKd)$ (diagonal, isotropic).
    """

    def __init__(self, mixture: GaussianMixture, path: GaussianPath) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise InvalidInputError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        self.mixture = mixture
        self.path = _check_path(path)
        self.prediction = "velocity"
        self.model = self.velocity

    def predict_kinds(self, t: float | torch.Tensor, x: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """Exact predictions of each of ``kinds`` (``"velocity"``, ``"epsilon"``, ``"x0"``, ``"score"``)."""
        return self.mixture._predict(t, x, self.path, tuple(kinds))

    def __repr__(self) -> str:
        return f"MixtureFlow({self.mixture!r}, path={self.path!r})"


def flow_map(
    x: torch.Tensor, t_from: float, t_to: float, path: GaussianPath, mean: ArrayLike, cov: ArrayLike
) -> torch.Tensor:
    r"""Exact PF-ODE flow map of Gaussian data $N(\mu, \Sigma)$ from ``t_from`` to ``t_to``.

    $\phi(x) = \alpha_{to}\mu + C_{to}^{1/2}C_{from}^{-1/2}(x - \alpha_{from}\mu)$ with
    $C = \alpha^2\Sigma + \sigma^2 I$; ``cov`` full ``(d, d)``, diagonal ``(d,)`` or a number.
    A thin wrapper over `odeflow.gaussian.GaussianData.flow_map`.
    """
    return GaussianData(mean, cov).flow_map(x, t_from, t_to, path)


def benchmark_velocity(
    n: int = 10**6,
    k: int = 100,
    d: int = 2,
    dtype: torch.dtype = torch.float32,
    threads: int | None = 2,
    t: float = 0.5,
    seed: int = 0,
) -> dict[str, float]:
    """Time one exact velocity evaluation of ``n`` points for a random ``k``-component mixture.

    Returns wall seconds, process CPU seconds (all threads; a load-independent figure on a shared
    machine), points per second, and the process's peak resident memory before and after the call
    (GB; ``ru_maxrss``, so run it in a fresh process for a clean figure: ``python -m models.gmm``).
    Diagonal covariances drawn at random, means in [-2, 2]², linear path, time ``t``.
    """
    from odeflow.paths import LinearPath

    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    means = 4.0 * torch.rand(k, d, generator=gen, dtype=torch.float64) - 2.0
    covs = 0.01 + 0.04 * torch.rand(k, d, generator=gen, dtype=torch.float64)
    gmm = GaussianMixture(torch.ones(k), means, covs)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64).to(dtype)
    flow = gmm.field(LinearPath())
    flow(t, x[:1000])  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    v = flow(t, x)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if not bool(torch.isfinite(v).all()):
        raise RuntimeError("benchmark produced non-finite velocities")
    return {
        "n": float(n),
        "k": float(k),
        "d": float(d),
        "threads": float(torch.get_num_threads()),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "points_per_second": n / seconds,
        "peak_rss_gb_before": before.ru_maxrss / 2**20,
        "peak_rss_gb": after.ru_maxrss / 2**20,
    }


if __name__ == "__main__":  # pragma: no cover - manual benchmark: python -m models.gmm [float64]
    import json
    import sys

    dt = torch.float64 if "float64" in sys.argv[1:] else torch.float32
    print(json.dumps(benchmark_velocity(dtype=dt)))
