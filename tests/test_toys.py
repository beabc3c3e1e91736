"""The toy catalog (models/toys.py): shapes, parameters, exact fields, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from models import toys
from models.gmm import GaussianMixture
from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath, VPPath

TWO_D = ["8gaussians", "25gaussians", "rings", "moons", "checkerboard", "spirals"]


def test_catalog_names():
    assert toys.names() == [
        "gaussian",
        "8gaussians",
        "25gaussians",
        "rings",
        "moons",
        "checkerboard",
        "spirals",
        "random_gmm",
    ]


@pytest.mark.parametrize("name", toys.names())
def test_every_toy_is_a_mixture_with_finite_exact_fields(name):
    gm = toys.get(name)
    assert isinstance(gm, GaussianMixture)
    x = gm.sample(256, generator=torch.Generator().manual_seed(0))
    assert x.shape == (256, gm.dim)
    path = LinearPath()
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        for dtype in (torch.float32, torch.float64):
            xt = (1 - t) * x + t * torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            v = gm.velocity(t, xt.to(dtype), path)
            assert v.dtype == dtype and bool(torch.isfinite(v).all()), (name, t, dtype)
    # density integrates to one and the score matches the marginal's gradient (spot check)
    xr = x[:8].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.marginal(0.3, VPPath()).log_prob(xr).sum(), xr)
    torch.testing.assert_close(gm.score(0.3, x[:8], VPPath()), grad, rtol=1e-8, atol=1e-8 * float(grad.abs().max()))


@pytest.mark.parametrize("name", TWO_D + ["gaussian"])
def test_two_d_toys_lie_roughly_in_the_box(name):
    gm = toys.get(name)
    assert gm.dim == 2
    x = gm.sample(20_000, generator=torch.Generator().manual_seed(2))
    inside = (x.abs() <= 4.0).all(dim=1).double().mean()
    assert float(inside) > 0.999 if name != "gaussian" else float(inside) > 0.99


@pytest.mark.parametrize("name", TWO_D)
def test_two_d_toys_density_integrates_to_one(name):
    gm = toys.get(name)
    # the trapezoid rule on a uniform grid of spacing h integrates a Gaussian of sd s with relative error
    # ≈ 2 exp(−2π² s²/h²): h = 0.0625 ≤ 0.8 s for the narrowest default (s = 0.08) gives ≈ 1e-13
    n = 161
    g = torch.linspace(-5.0, 5.0, n, dtype=torch.float64)
    density = gm.log_prob(torch.cartesian_prod(g, g)).exp().reshape(n, n)
    total = torch.trapezoid(torch.trapezoid(density, g, dim=1), g)
    assert abs(float(total) - 1.0) < 1e-6


def test_eight_gaussians_layout():
    gm = toys.get("8gaussians")
    radii = gm.means.norm(dim=1)
    torch.testing.assert_close(radii, torch.full((8,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(gm.covs, torch.full((8,), 0.01, dtype=torch.float64))
    torch.testing.assert_close(gm.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    angles = torch.sort(torch.atan2(gm.means[:, 1], gm.means[:, 0])).values
    torch.testing.assert_close(torch.diff(angles), torch.full((7,), math.pi / 4, dtype=torch.float64))
    assert toys.get("8gaussians", n_modes=6, radius=3.0).n_components == 6


def test_twenty_five_gaussians_layout():
    gm = toys.get("25gaussians", spacing=1.0)
    ticks = torch.unique(gm.means[:, 0])
    torch.testing.assert_close(ticks, torch.arange(-2.0, 3.0, dtype=torch.float64))
    assert gm.n_components == 25


def test_rings_layout():
    gm = toys.get("rings", n_rings=2, radius=2.0, n_components=90, std=0.05)
    radii = gm.means.norm(dim=1)
    assert gm.n_components == 90
    counts = [int(torch.isclose(radii, torch.tensor(r, dtype=torch.float64)).sum()) for r in (1.0, 2.0)]
    assert counts == [30, 60]  # proportional to circumference: equal density per unit length


def test_moons_layout():
    gm = toys.get("moons", n_components=60, scale=1.0)
    centre = torch.tensor([0.5, 0.25], dtype=torch.float64)
    pts = gm.means + centre
    upper, lower = pts[:30], pts[30:]
    torch.testing.assert_close(upper.norm(dim=1), torch.ones(30, dtype=torch.float64))
    lower_centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close((lower - lower_centre).norm(dim=1), torch.ones(30, dtype=torch.float64))
    assert bool((upper[:, 1] >= -1e-12).all()) and bool((lower[:, 1] <= 0.5 + 1e-12).all())


def test_checkerboard_fills_every_other_square():
    gm = toys.get("checkerboard", n_squares=4, size=4.0, per_square=2)
    assert gm.n_components == 8 * 4
    square = torch.floor(gm.means + 2.0).long()  # square indices 0..3
    assert bool(((square.sum(dim=1) % 2) == 0).all())
    torch.testing.assert_close(gm.covs, torch.full((32,), 0.25**2, dtype=torch.float64))  # half the spacing 0.5


def test_spirals_layout():
    gm = toys.get("spirals", n_arms=3, n_components=90, turns=2.0, radius=3.0)
    assert gm.n_components == 90
    assert float(gm.means.norm(dim=1).max()) <= 3.0 + 1e-12
    # consecutive components of an arm are (roughly) equally spaced in arc length
    arm = gm.means[:30]
    steps = (arm[1:] - arm[:-1]).norm(dim=1)
    assert float(steps[5:].max() / steps[5:].min()) < 1.3


def test_gaussian_any_dimension_and_mean():
    gm = toys.get("gaussian", d=5, std=0.5, mean=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert gm.dim == 5 and gm.n_components == 1
    torch.testing.assert_close(gm.covariance(), 0.25 * torch.eye(5, dtype=torch.float64))
    x1 = torch.randn(3, 5, dtype=torch.float64)
    assert gm.flow_map(x1, 1.0, 0.0, LinearPath()).shape == (3, 5)


@pytest.mark.parametrize("cov_type", ["full", "diagonal", "isotropic"])
def test_random_gmm_is_reproducible_and_seeded(cov_type):
    a = toys.get("random_gmm", d=16, k=5, seed=3, cov_type=cov_type)
    b = toys.get("random_gmm", d=16, k=5, seed=3, cov_type=cov_type)
    c = toys.get("random_gmm", d=16, k=5, seed=4, cov_type=cov_type)
    assert a.dim == 16 and a.n_components == 5 and a.cov_type == cov_type
    assert torch.equal(a.means, b.means) and torch.equal(a.covs, b.covs) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.means, c.means)
    stds = torch.linalg.eigvalsh(a.covariance_matrices()).sqrt()
    assert float(stds.min()) >= 0.1 - 1e-9 and float(stds.max()) <= 0.5 + 1e-9


def test_defaults_reports_parameters():
    assert toys.defaults("8gaussians") == {"radius": 2.0, "std": 0.1, "n_modes": 8}
    assert set(toys.defaults("random_gmm")) >= {"d", "k", "seed"}


def test_unknown_name_lists_the_catalog():
    with pytest.raises(InvalidInputError, match="valid toys are:.*8gaussians.*random_gmm"):
        toys.get("9gaussians")
    with pytest.raises(InvalidInputError, match="valid toys"):
        toys.defaults("nope")


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("rings", {"width": 0.1}, "parameters are: n_rings, radius, n_components, std"),
        ("8gaussians", {"std": -0.1}, "std must be > 0"),
        ("8gaussians", {"std": 0.0}, "std must be > 0"),
        ("moons", {"n_components": 1}, "n_components must be an integer >= 2"),
        ("moons", {"n_components": 2.5}, "n_components must be an integer"),
        ("rings", {"n_rings": 3, "n_components": 5}, "n_components must be an integer >= 9"),
        ("checkerboard", {"per_square": 0}, "per_square"),
        ("spirals", {"turns": float("nan")}, "turns"),
        ("gaussian", {"d": 0}, "d must be an integer >= 1"),
        ("gaussian", {"d": 2, "mean": [1.0, 2.0, 3.0]}, "sequence of length d = 2"),
        ("random_gmm", {"cov_type": "banded"}, "valid cov_types"),
        ("random_gmm", {"min_std": 0.5, "max_std": 0.1}, "max_std"),
        ("random_gmm", {"seed": -1}, "seed"),
        ("random_gmm", {"k": True}, "k must be an integer"),
    ],
)
def test_bad_parameters_raise(name, params, match):
    with pytest.raises(InvalidInputError, match=match):
        toys.get(name, **params)
