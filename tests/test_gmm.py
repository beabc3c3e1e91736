"""Exact Gaussian-mixture fields (models/gmm.py) against independent oracles.

Oracles: autograd of the marginal log-density (score), scipy's multivariate normal
(log_prob), self-normalised importance sampling (denoiser), the prediction conversions of
odeflow.predictions (eps, velocity), the lead's GaussianData field (K = 1), finite differences
of the closed-form flow map (velocity), quadrature (normalisation) and sample moments.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

import models.gmm as gmm_module
from models.gmm import GaussianMixture, MixtureFlow, flow_map
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.gaussian import GaussianData
from odeflow.paths import CosinePath, LinearPath, VEPath, VPPath
from odeflow.predictions import convert

PATHS = [LinearPath(), VPPath(), CosinePath(), VEPath()]
PATH_IDS = [p.name for p in PATHS]
COV_TYPES = ["full", "diagonal", "isotropic"]
KINDS = ("velocity", "epsilon", "x0", "score")


def random_mixture(seed: int, k: int, d: int, cov_type: str, min_var: float = 0.05) -> GaussianMixture:
    gen = torch.Generator().manual_seed(seed)
    weights = 0.2 + torch.rand(k, generator=gen, dtype=torch.float64)
    means = 2.0 * torch.randn(k, d, generator=gen, dtype=torch.float64)
    if cov_type == "full":
        a = 0.6 * torch.randn(k, d, d, generator=gen, dtype=torch.float64)
        covs = a @ a.transpose(1, 2) + min_var * torch.eye(d, dtype=torch.float64)
    elif cov_type == "diagonal":
        covs = min_var + 0.5 * torch.rand(k, d, generator=gen, dtype=torch.float64)
    else:
        covs = min_var + 0.5 * torch.rand(k, generator=gen, dtype=torch.float64)
    return GaussianMixture(weights, means, covs)


def query_points(gm: GaussianMixture, t: float, path, n: int = 16, seed: int = 1) -> torch.Tensor:
    """Half the points from the marginal at t, half from a wide Gaussian (tails, between modes)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = gm.sample(n // 2, generator=gen)
    alpha, sigma = path.alpha(t), path.sigma(t)
    near = alpha * x0 + sigma * torch.randn(n // 2, gm.dim, generator=gen, dtype=torch.float64)
    scale = 3.0 * max(alpha, sigma)
    wide = scale * torch.randn(n - n // 2, gm.dim, generator=gen, dtype=torch.float64)
    return torch.cat([near, wide])


def autograd_score(gm: GaussianMixture, t: float, path, x: torch.Tensor) -> torch.Tensor:
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.marginal(t, path).log_prob(xr).sum(), xr)
    return grad


# --- score ---------------------------------------------------------------------------------------------
@settings(max_examples=60)
@given(
    seed=st.integers(0, 10**6),
    k=st.integers(1, 4),
    d=st.integers(1, 3),
    cov_type=st.sampled_from(COV_TYPES),
    path_index=st.integers(0, 3),
    t=st.floats(0.0, 1.0),
)
def test_score_equals_autograd_of_marginal_log_prob(seed, k, d, cov_type, path_index, t):
    path = PATHS[path_index]
    gm = random_mixture(seed, k, d, cov_type)
    x = query_points(gm, t, path, seed=seed + 1)
    expected = autograd_score(gm, t, path, x)
    got = gm.score(t, x, path)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-8 * float(expected.abs().max()))


@pytest.mark.parametrize("cov_type", ["diagonal", "isotropic"])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_score_high_dimension_matrix_product_path(cov_type, path):
    """d = 20 takes the expanded (matrix-product) branch for diagonal/isotropic covariances."""
    gm = random_mixture(3, 6, 20, cov_type)
    for t in (0.0, 0.4, 1.0):
        x = query_points(gm, t, path)
        expected = autograd_score(gm, t, path, x)
        torch.testing.assert_close(gm.score(t, x, path), expected, rtol=1e-8, atol=1e-8 * float(expected.abs().max()))


@pytest.mark.parametrize("cov_type", ["diagonal", "isotropic"])
def test_matrix_product_branch_agrees_with_direct_branch(cov_type, monkeypatch):
    gm = random_mixture(4, 5, 20, cov_type)
    x = query_points(gm, 0.3, LinearPath())
    expanded = gm.field(LinearPath()).predict_kinds(0.3, x, KINDS)
    monkeypatch.setattr(gmm_module, "_GRAM_MIN_DIM", 10**9)
    direct = GaussianMixture(gm.weights, gm.means, gm.covs).field(LinearPath()).predict_kinds(0.3, x, KINDS)
    for a, b in zip(expanded, direct):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


# --- log_prob ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_matches_scipy(cov_type, k):
    gm = random_mixture(5, k, 3, cov_type)
    x = query_points(gm, 0.0, LinearPath(), n=40)
    covs = gm.covariance_matrices().numpy()
    comps = np.stack(
        [multivariate_normal(gm.means[k].numpy(), covs[k]).logpdf(x.numpy()) for k in range(gm.n_components)]
    )
    expected = np.logaddexp.reduce(comps + np.log(gm.weights.numpy())[:, None], axis=0)
    np.testing.assert_allclose(gm.log_prob(x).numpy(), expected, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_integrates_to_one_in_2d(cov_type):
    gm = random_mixture(6, 3, 2, cov_type, min_var=0.04)
    lo = gm.means.min(0).values - 6.0 * math.sqrt(2.0)
    hi = gm.means.max(0).values + 6.0 * math.sqrt(2.0)
    n = 500  # spacing ≤ 0.05 ≤ sd/4: the trapezoid rule is spectrally accurate for Gaussians
    xs = torch.linspace(float(lo[0]), float(hi[0]), n, dtype=torch.float64)
    ys = torch.linspace(float(lo[1]), float(hi[1]), n, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, ys)
    density = gm.log_prob(grid).exp().reshape(n, n)
    total = torch.trapezoid(torch.trapezoid(density, ys, dim=1), xs)
    assert abs(float(total) - 1.0) < 1e-6


# --- denoiser against importance sampling ----------------------------------------------------------------
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_x0_matches_importance_weighted_monte_carlo(cov_type, path):
    r"""E[x0 | x_t = x] ≈ Σ_i w_i x0_i / Σ_i w_i, w_i = N(x; α x0_i, σ² I), x0_i ~ data."""
    gm = random_mixture(7, 3, 2, cov_type)
    t = 0.5
    gen = torch.Generator().manual_seed(11)
    samples = gm.sample(200_000, generator=gen)
    alpha, sigma = path.alpha(t), path.sigma(t)
    x = query_points(gm, t, path, n=6, seed=12)[:3]  # typical points of the marginal
    log_w = -0.5 * ((x[:, None, :] - alpha * samples[None]) ** 2).sum(-1) / sigma**2
    w = torch.softmax(log_w, dim=1)  # (3, N)
    estimate = w @ samples
    ess = 1.0 / (w**2).sum(1)
    assert bool((ess > 200).all()), f"importance sampling too degenerate: ESS {ess}"
    # self-normalised IS variance: Σ w_i² (x0_i − est)²
    se = torch.sqrt(torch.einsum("bn,bnd->bd", w**2, (samples[None] - estimate[:, None]) ** 2))
    exact = gm.x0(t, x, path)
    assert bool(((exact - estimate).abs() <= 5.0 * se + 1e-12).all()), (exact, estimate, se)


# --- conversions -------------------------------------------------------------------------------------------
@settings(max_examples=40)
@given(
    seed=st.integers(0, 10**6),
    cov_type=st.sampled_from(COV_TYPES + ["zero"]),
    path_index=st.integers(0, 3),
    t=st.floats(0.02, 0.98),
)
def test_eps_velocity_score_consistent_with_x0_by_convert(seed, cov_type, path_index, t):
    path = PATHS[path_index]
    if cov_type == "zero":
        gen = torch.Generator().manual_seed(seed)
        gm = GaussianMixture.empirical(torch.randn(5, 2, generator=gen, dtype=torch.float64))
    else:
        gm = random_mixture(seed, 3, 2, cov_type)
    x = query_points(gm, t, path, seed=seed)
    preds = dict(zip(KINDS, gm.field(path).predict_kinds(t, x, KINDS)))
    for kind in ("velocity", "epsilon", "score"):
        converted = convert(preds["x0"], source="x0", target=kind, x=x, t=t, path=path)
        scale = float(converted.abs().max())
        torch.testing.assert_close(preds[kind], converted, rtol=1e-8, atol=1e-9 * scale)
    # the one-call API agrees with the single-kind views
    flow = gm.field(path)
    torch.testing.assert_close(flow(t, x), preds["velocity"], rtol=0, atol=0)
    torch.testing.assert_close(flow.eps(t, x), preds["epsilon"], rtol=0, atol=0)


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
def test_single_component_agrees_with_gaussian_data_field(path, t):
    gm = random_mixture(8, 1, 3, "full")
    ref = GaussianData(gm.means[0], gm.covs[0]).field(path)
    x = query_points(gm, t, path)
    ours = gm.field(path).predict_kinds(t, x, KINDS)
    theirs = ref.predict_kinds(t, x, KINDS)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


# --- endpoints ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_t0_nonsingular_endpoint(cov_type):
    gm = random_mixture(9, 3, 2, cov_type)
    x = query_points(gm, 0.0, LinearPath())
    for path in (LinearPath(), VPPath(), CosinePath()):
        x0, eps, v, s = gm.field(path).predict_kinds(0.0, x, ("x0", "epsilon", "velocity", "score"))
        torch.testing.assert_close(x0, x, rtol=1e-12, atol=1e-12)
        assert bool((eps == 0).all())
        xr = x.clone().requires_grad_(True)
        (data_score,) = torch.autograd.grad(gm.log_prob(xr).sum(), xr)
        torch.testing.assert_close(s, data_score, rtol=1e-10, atol=1e-10)
        assert bool(torch.isfinite(v).all())
        # the value at t = 0 is the limit t → 0+
        v_near = gm.velocity(1e-9, x, path)
        torch.testing.assert_close(v, v_near, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm.velocity(0.0, x, LinearPath()), -x, rtol=1e-12, atol=1e-12)
    # VP: v = α̇x + σσ̇·(−s) with σσ̇ = −αα̇ = β_min/2 at t = 0 (σ̇ itself is infinite there)
    vp = VPPath()
    torch.testing.assert_close(
        gm.velocity(0.0, x, vp), -0.5 * vp.beta_min * x - 0.5 * vp.beta_min * data_score, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("path", [LinearPath(), CosinePath()], ids=["linear", "cosine"])
def test_t1_alpha_zero_endpoint(path):
    gm = random_mixture(10, 4, 2, "full")
    x = torch.randn(20, 2, dtype=torch.float64)
    x0, eps, s = gm.field(path).predict_kinds(1.0, x, ("x0", "epsilon", "score"))
    torch.testing.assert_close(x0, gm.mean().expand_as(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eps, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s, -x, rtol=1e-12, atol=1e-12)


def test_one_euler_step_from_noise_returns_data_mean_on_linear_path():
    gm = random_mixture(11, 5, 3, "diagonal")
    x1 = torch.randn(10, 3, dtype=torch.float64)
    x = x1 + (0.0 - 1.0) * gm.velocity(1.0, x1, LinearPath())
    torch.testing.assert_close(x, gm.mean().expand_as(x), rtol=1e-12, atol=1e-12)


def test_empirical_data_memorises_and_handles_t0():
    gen = torch.Generator().manual_seed(0)
    atoms = 2.0 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    gm = GaussianMixture.empirical(atoms)
    assert gm.singular
    path = LinearPath()
    t = 1e-3
    x = (1 - t) * atoms + t * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(gm.x0(t, x, path), atoms, rtol=1e-9, atol=1e-9)
    # at σ = 0: x_t = α x0 carries no information on ε, so E[x0|x] = x/α, E[ε|x] = 0
    y = torch.randn(4, 2, dtype=torch.float64)
    for p in (LinearPath(), VPPath(), CosinePath()):
        x0, eps, v = gm.field(p).predict_kinds(0.0, y, ("x0", "epsilon", "velocity"))
        torch.testing.assert_close(x0, y, rtol=0, atol=0)
        assert bool((eps == 0).all())
        torch.testing.assert_close(v, p.d_alpha(0.0) * y, rtol=1e-12, atol=1e-12)
        with pytest.raises(InvalidInputError, match="score"):
            gm.score(0.0, y, p)
    with pytest.raises(InvalidInputError, match="zero variance"):
        gm.log_prob(y)
    # at t > 0 the score exists and is the gradient of the marginal
    torch.testing.assert_close(gm.score(0.2, y, path), autograd_score(gm, 0.2, path, y), rtol=1e-8, atol=1e-8)


def test_field_is_a_probability_flow_and_differentiable():
    gm = random_mixture(12, 3, 2, "full")
    flow = gm.field(VPPath())
    assert isinstance(flow, MixtureFlow) and isinstance(flow, ProbabilityFlow)
    assert flow.path == VPPath()
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    flow(0.3, x).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


# --- flow map -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_flow_map_time_derivative_is_the_field_velocity(path):
    gm = random_mixture(13, 1, 3, "full")
    x1 = gm.marginal(1.0, path).sample(8, generator=torch.Generator().manual_seed(1))
    h = 1e-5
    for t in (0.1, 0.35, 0.6, 0.9):
        xt = gm.flow_map(x1, 1.0, t, path)
        fd = (gm.flow_map(x1, 1.0, t + h, path) - gm.flow_map(x1, 1.0, t - h, path)) / (2 * h)
        v = gm.velocity(t, xt, path)
        torch.testing.assert_close(fd, v, rtol=1e-8, atol=1e-8 * float(v.abs().max()))


@pytest.mark.parametrize(
    "path, rtol", [(LinearPath(), 1e-8), (CosinePath(), 1e-7), (VPPath(), 1e-5), (VEPath(), 1e-4)], ids=PATH_IDS
)
def test_rk4_on_the_field_reproduces_the_flow_map(path, rtol):
    """Integrating the exact field with RK4 (64 steps, 1 → 0) lands on the closed-form flow map."""
    from solvers import RK4, grids, solve

    gm = random_mixture(23, 1, 3, "full")
    x1 = gm.marginal(1.0, path).sample(16, generator=torch.Generator().manual_seed(4))
    exact = gm.flow_map(x1, 1.0, 0.0, path)
    sol = solve(gm.field(path), x1, solver=RK4(), grid=grids.uniform(64))
    assert float((sol.x - exact).abs().max() / exact.abs().max()) < rtol


@pytest.mark.parametrize("path", [LinearPath(), CosinePath(), VPPath()], ids=["linear", "cosine", "vp"])
def test_flow_map_pushes_noise_to_data(path):
    gm = random_mixture(14, 1, 2, "full")
    n = 40_000
    z = gm.marginal(1.0, path).sample(n, generator=torch.Generator().manual_seed(2))
    x0 = gm.flow_map(z, 1.0, 0.0, path)
    mean, cov = gm.mean(), gm.covariance()
    se = torch.sqrt(torch.diagonal(cov) / n)
    assert bool(((x0.mean(0) - mean).abs() <= 5 * se).all())
    centred = x0 - x0.mean(0)
    emp = centred.T @ centred / (n - 1)
    prod = centred[:, :, None] * centred[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)
    assert bool(((emp - cov).abs() <= 5 * se_cov).all()), (emp, cov)


def test_flow_map_wrapper_and_k_greater_than_one():
    gm = random_mixture(15, 1, 2, "diagonal")
    x = torch.randn(4, 2, dtype=torch.float64)
    ours = flow_map(x, 0.8, 0.1, CosinePath(), gm.means[0], gm.covs[0])
    torch.testing.assert_close(ours, gm.flow_map(x, 0.8, 0.1, CosinePath()), rtol=0, atol=0)
    with pytest.raises(InvalidInputError, match="single Gaussian"):
        random_mixture(15, 2, 2, "diagonal").flow_map(x, 1.0, 0.0, LinearPath())


# --- sampling, moments, marginal ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_samples_have_the_mixture_moments(cov_type):
    gm = random_mixture(16, 3, 3, cov_type)
    n = 100_000
    x = gm.sample(n, generator=torch.Generator().manual_seed(3))
    assert x.shape == (n, 3) and x.dtype == torch.float64
    mean, cov = gm.mean(), gm.covariance()
    assert bool(((x.mean(0) - mean).abs() <= 5 * torch.sqrt(torch.diagonal(cov) / n)).all())
    centred = x - mean
    prod = centred[:, :, None] * centred[:, None, :]
    assert bool(((prod.mean(0) - cov).abs() <= 5 * prod.std(0) / math.sqrt(n)).all())


def test_sampling_is_reproducible_and_dtype():
    gm = random_mixture(17, 3, 2, "full")
    a = gm.sample(50, generator=torch.Generator().manual_seed(5))
    b = gm.sample(50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert gm.sample(5, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_marginal_parameters(cov_type):
    gm = random_mixture(18, 2, 3, cov_type)
    path = CosinePath()
    t = 0.4
    m = gm.marginal(t, path)
    a, s = path.alpha(t), path.sigma(t)
    assert m.cov_type == gm.cov_type
    torch.testing.assert_close(m.means, a * gm.means)
    expected = a**2 * gm.covariance_matrices() + s**2 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(m.covariance_matrices(), expected)
    x = torch.randn(7, 3, dtype=torch.float64)
    torch.testing.assert_close(gm.marginal(0.0, LinearPath()).log_prob(x), gm.log_prob(x))


# --- dtypes, chunking -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_float32_matches_float64(cov_type):
    gm = random_mixture(19, 4, 2, cov_type)
    x = query_points(gm, 0.5, LinearPath(), n=64)
    for path in PATHS:
        for t in (0.0, 0.5, 1.0):
            ref = gm.field(path).predict_kinds(t, x, KINDS)
            got = gm.field(path).predict_kinds(t, x.float(), KINDS)
            for a, b in zip(got, ref):
                assert a.dtype == torch.float32
                torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    assert gm.log_prob(x.float()).dtype == torch.float32


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_chunking_does_not_change_results(cov_type):
    gm = random_mixture(20, 5, 3, cov_type)
    x = query_points(gm, 0.3, VPPath(), n=50)
    whole = gm.field(VPPath()).predict_kinds(0.3, x, KINDS)
    gm.chunk_elements = 7  # forces one point per chunk
    chunked = gm.field(VPPath()).predict_kinds(0.3, x, KINDS)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(gm.marginal(0.3, VPPath()).log_prob(x), gm.marginal(0.3, VPPath()).log_prob(x))


def test_empty_batch():
    gm = random_mixture(21, 2, 2, "full")
    x = torch.empty(0, 2, dtype=torch.float64)
    assert gm.velocity(0.5, x, LinearPath()).shape == (0, 2)
    assert gm.log_prob(x).shape == (0,)


# --- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "weights, means, covs, match",
    [
        ([1.0, -0.5], [[0.0], [1.0]], [1.0, 1.0], "non-negative"),
        ([0.0, 0.0], [[0.0], [1.0]], [1.0, 1.0], "positive sum"),
        ([1.0, 1.0, 1.0], [[0.0], [1.0]], [1.0, 1.0], "weights must have shape"),
        ([1.0], [0.0, 1.0], [1.0], "means must have shape"),
        ([1.0], [[0.0, 1.0]], [[1.0, 2.0, 3.0]], "covs must be full"),
        ([1.0], [[0.0, 1.0]], [[[1.0, 0.5], [0.0, 1.0]]], "symmetric"),
        ([1.0], [[0.0, 1.0]], [[[1.0, 2.0], [2.0, 1.0]]], "positive semi-definite"),
        ([1.0], [[0.0, 1.0]], [[1.0, -1.0]], "non-negative"),
        ([1.0], [[0.0, float("nan")]], [1.0], "NaN"),
        ([1.0], [[0.0, 1.0]], "abc", "covs"),
    ],
)
def test_bad_parameters_raise(weights, means, covs, match):
    with pytest.raises(InvalidInputError, match=match):
        GaussianMixture(weights, means, covs)


def test_weights_are_normalised_and_scalar_cov_broadcasts():
    gm = GaussianMixture([2.0, 6.0], [[0.0], [1.0]], 0.5)
    torch.testing.assert_close(gm.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert gm.cov_type == "isotropic" and gm.covs.shape == (2,)


def test_zero_weight_components_are_ignored():
    """A component of weight 0 (log-weight −inf) changes nothing, in any branch of the kernel."""
    for d in (2, 20):
        gm = random_mixture(24, 3, d, "diagonal")
        padded = GaussianMixture(
            torch.cat([gm.weights, torch.zeros(1, dtype=torch.float64)]),
            torch.cat([gm.means, torch.full((1, d), 0.3, dtype=torch.float64)]),
            torch.cat([gm.covs, torch.full((1, d), 0.2, dtype=torch.float64)]),
        )
        x = query_points(gm, 0.4, CosinePath())
        ours = gm.field(CosinePath()).predict_kinds(0.4, x, KINDS)
        for a, b in zip(ours, padded.field(CosinePath()).predict_kinds(0.4, x, KINDS)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(a.abs().max()))
        torch.testing.assert_close(gm.log_prob(x), padded.log_prob(x), rtol=1e-12, atol=1e-12)


def test_bad_evaluation_input_raises():
    gm = random_mixture(22, 2, 2, "diagonal")
    flow = gm.field(LinearPath())
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(InvalidInputError, match="outside"):
        flow(1.5, x)
    with pytest.raises(InvalidInputError, match=r"shape \(batch, 2\)"):
        flow(0.5, torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match=r"shape \(batch, 2\)"):
        flow(0.5, torch.zeros(3, 2, 1, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="float32 or float64"):
        flow(0.5, x.half())
    with pytest.raises(InvalidInputError, match="NaN"):
        flow(0.5, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="prediction kind"):
        flow.predict_kinds(0.5, x, ("velocity", "flux"))
    with pytest.raises(InvalidInputError, match="0-d"):
        flow(torch.tensor([0.1, 0.2]), x)
    with pytest.raises(InvalidInputError, match="GaussianPath"):
        gm.field("linear")
    with pytest.raises(InvalidInputError, match="positive|> 0|integer"):
        gm.sample(0)
    with pytest.raises(InvalidInputError, match="outside"):
        gm.marginal(-0.1, LinearPath())


# --- benchmark ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_million_points_100_components_loosely():
    """Issue bound: 10^6 points × 100 components in 2-D under 20 s on 2 cores and 4 GB; loose check here.

    Run in a fresh process so the peak resident memory is this evaluation's. One thread, and CPU time
    rather than wall time (the suite shares its cores with other workers), with a 2× margin: one core
    doing the work of two in under 40 s.
    """
    code = "import json; from models.gmm import benchmark_velocity; print(json.dumps(benchmark_velocity(threads=1)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cpu_seconds"] < 40.0, result
    assert result["peak_rss_gb"] < 4.0, result
