r"""The toy catalog: 2-D and n-D data distributions, each a `GaussianMixture` with exact fields.

``toys.get(name, **params)`` builds one; ``toys.names()`` lists the catalog; ``toys.defaults(name)``
gives a toy's parameters and their default values. Because every toy is a Gaussian mixture, its
score, denoiser and PF-ODE velocity are exact on every path (`models.gmm`), so solver error can
be measured apart from model error.

Shapes that are not mixtures by nature (rings, moons, checkerboard, spirals) are laid out as
many narrow components along the shape; ``n_components`` (or ``per_square``) sets how many and
``std`` how wide. A component spacing of at most about two ``std`` makes the density smooth
along the shape; a wider spacing makes it visibly beaded. Narrow components (``std`` ≤ 0.1)
make the velocity field stiff near ``t = 0`` and stretch the pre-asymptotic range of solver
order tests (NOTES.md). The 2-D toys lie roughly within $[-4, 4]^2$ with their defaults.

| name | default layout | components |
|---|---|---|
| ``gaussian`` | $N(\text{mean}, \text{std}^2 I_d)$ | 1 |
| ``8gaussians`` | 8 modes on a circle of radius 2, sd 0.1 | 8 |
| ``25gaussians`` | 5 × 5 grid with spacing 1.5 (±3), sd 0.1 | 25 |
| ``rings`` | 3 concentric circles of radii 1, 2, 3, sd 0.08 | 240 |
| ``moons`` | two interleaved half circles of radius 2 in $[-3, 3]\times[-1.5, 1.5]$, sd 0.1 | 100 |
| ``checkerboard`` | 4 × 4 board on $[-3, 3]^2$, 8 filled squares, 5 × 5 components each | 200 |
| ``spirals`` | 2 arms, 1.5 turns, outer radius 3.5, sd 0.1 | 200 |
| ``random_gmm`` | ``k`` random full-covariance components in ``d`` dimensions from ``seed`` | k |
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from models.gmm import GaussianMixture
from odeflow._checks import check_choice, check_positive
from odeflow.errors import InvalidInputError

__all__ = [
    "get",
    "names",
    "defaults",
    "CATALOG",
    "gaussian",
    "eight_gaussians",
    "twenty_five_gaussians",
    "rings",
    "moons",
    "checkerboard",
    "spirals",
    "random_gmm",
]

_F64 = torch.float64


def _int(value: Any, name: str, minimum: int = 1) -> int:
    check_positive(value, name, integer=True, allow_zero=True)
    if value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _pos(value: Any, name: str) -> float:
    return float(check_positive(value, name))


def _circle(n: int, radius: float, offset: float = 0.0) -> torch.Tensor:
    angles = offset + 2.0 * math.pi * torch.arange(n, dtype=_F64) / n
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def _uniform(points: torch.Tensor, std: float) -> GaussianMixture:
    """Equal-weight isotropic components of standard deviation ``std`` at ``points``."""
    n = points.shape[0]
    return GaussianMixture(torch.ones(n, dtype=_F64), points, torch.full((n,), std**2, dtype=_F64))


# --- the toys ---------------------------------------------------------------------------------------------
def gaussian(d: int = 2, std: float = 1.0, mean: float | Sequence[float] = 0.0) -> GaussianMixture:
    r"""A single Gaussian $N(\text{mean}, \text{std}^2 I_d)$ in any dimension ``d``.

    ``mean`` is a number (every coordinate) or a sequence of length ``d``. Its PF-ODE has the
    closed-form flow map `GaussianMixture.flow_map`.
    """
    d = _int(d, "d")
    std = _pos(std, "std")
    m = torch.as_tensor(mean, dtype=_F64)
    if m.dim() == 0:
        m = m.expand(d).clone()
    if m.shape != (d,) or not bool(torch.isfinite(m).all()):
        raise InvalidInputError(f"mean must be a finite number or a sequence of length d = {d}, got {mean!r}")
    return GaussianMixture(torch.ones(1, dtype=_F64), m[None], torch.tensor([std**2], dtype=_F64))


def eight_gaussians(radius: float = 2.0, std: float = 0.1, n_modes: int = 8) -> GaussianMixture:
    """``n_modes`` (8) equal-weight Gaussians of sd ``std`` evenly spaced on a circle of radius ``radius``."""
    return _uniform(_circle(_int(n_modes, "n_modes"), _pos(radius, "radius")), _pos(std, "std"))


def twenty_five_gaussians(spacing: float = 1.5, std: float = 0.1, grid: int = 5) -> GaussianMixture:
    """A ``grid`` × ``grid`` (5 × 5) lattice of equal-weight Gaussians, centred, ``spacing`` apart."""
    grid = _int(grid, "grid")
    spacing = _pos(spacing, "spacing")
    ticks = spacing * (torch.arange(grid, dtype=_F64) - 0.5 * (grid - 1))
    return _uniform(torch.cartesian_prod(ticks, ticks), _pos(std, "std"))


def rings(n_rings: int = 3, radius: float = 3.0, n_components: int = 240, std: float = 0.08) -> GaussianMixture:
    r"""``n_rings`` concentric circles of radii ``radius``·i/``n_rings`` (i = 1 … n_rings).

    The ``n_components`` components are shared among the rings in proportion to their
    circumference, so the density per unit length is the same on every ring (spacing
    $2\pi\,\text{radius}\,(n_{rings}+1)/(2\,n_{components})$ ≈ 0.24 with the defaults).
    """
    n_rings = _int(n_rings, "n_rings")
    radius = _pos(radius, "radius")
    n_components = _int(n_components, "n_components", minimum=3 * n_rings)
    std = _pos(std, "std")
    radii = [radius * (i + 1) / n_rings for i in range(n_rings)]
    counts = [max(3, round(n_components * r / sum(radii))) for r in radii]
    counts[-1] += n_components - sum(counts)
    points = [_circle(c, r, offset=math.pi / c) for c, r in zip(counts, radii)]
    return _uniform(torch.cat(points), std)


def moons(n_components: int = 100, std: float = 0.1, scale: float = 2.0) -> GaussianMixture:
    r"""Two interleaved half circles (the "two moons" shape), ``n_components`` // 2 components each.

    Unit layout: upper arc $(\cos\theta, \sin\theta)$, lower arc $(1 - \cos\theta, \tfrac12 - \sin\theta)$,
    $\theta \in [0, \pi]$; centred at $(\tfrac12, \tfrac14)$ and multiplied by ``scale``, so with the
    defaults the arcs have radius 2 and lie in $[-3, 3] \times [-1.5, 1.5]$. ``std`` is in output units.
    """
    n_components = _int(n_components, "n_components", minimum=2)
    std = _pos(std, "std")
    scale = _pos(scale, "scale")
    half = n_components // 2
    theta_up = torch.linspace(0.0, math.pi, n_components - half, dtype=_F64)
    theta_lo = torch.linspace(0.0, math.pi, half, dtype=_F64)
    upper = torch.stack([torch.cos(theta_up), torch.sin(theta_up)], dim=1)
    lower = torch.stack([1.0 - torch.cos(theta_lo), 0.5 - torch.sin(theta_lo)], dim=1)
    centre = torch.tensor([0.5, 0.25], dtype=_F64)
    return _uniform(scale * (torch.cat([upper, lower]) - centre), std)


def checkerboard(
    n_squares: int = 4, size: float = 6.0, per_square: int = 5, std: float | None = None
) -> GaussianMixture:
    r"""An ``n_squares`` × ``n_squares`` board on $[-\text{size}/2, \text{size}/2]^2$ with every other square filled.

    Each filled square (those with even row + column; 8 of 16 with the defaults) holds a
    ``per_square`` × ``per_square`` lattice of equal components, so the density is close to
    uniform on the filled squares. ``std`` defaults to half the lattice spacing
    (size / (n_squares · per_square) / 2 = 0.15 with the defaults), which blurs the square edges
    by about that much.
    """
    n_squares = _int(n_squares, "n_squares")
    size = _pos(size, "size")
    per_square = _int(per_square, "per_square")
    side = size / n_squares
    spacing = side / per_square
    std = 0.5 * spacing if std is None else _pos(std, "std")
    offsets = spacing * (torch.arange(per_square, dtype=_F64) + 0.5)
    local = torch.cartesian_prod(offsets, offsets)
    squares = [
        local + torch.tensor([-0.5 * size + i * side, -0.5 * size + j * side], dtype=_F64)
        for i in range(n_squares)
        for j in range(n_squares)
        if (i + j) % 2 == 0
    ]
    return _uniform(torch.cat(squares), std)


def spirals(
    n_arms: int = 2, n_components: int = 200, std: float = 0.1, turns: float = 1.5, radius: float = 3.5
) -> GaussianMixture:
    r"""``n_arms`` interleaved Archimedean spirals, ``n_components`` // ``n_arms`` components per arm.

    Arm $a$ is $r(\theta)\,(\cos(\theta + 2\pi a/n_{arms}), \sin(\theta + 2\pi a/n_{arms}))$ with
    $r = \text{radius}\cdot\theta/\theta_{\max}$, $\theta_{\max} = 2\pi\,\text{turns}$. Components sit at
    $\theta_j = \theta_{\max}\sqrt{(j + \tfrac12)/m}$, equally spaced in arc length (which grows like
    $\theta^2$), so the density along each arm is uniform.
    """
    n_arms = _int(n_arms, "n_arms")
    n_components = _int(n_components, "n_components", minimum=n_arms)
    std = _pos(std, "std")
    turns = _pos(turns, "turns")
    radius = _pos(radius, "radius")
    per_arm = n_components // n_arms
    theta_max = 2.0 * math.pi * turns
    theta = theta_max * torch.sqrt((torch.arange(per_arm, dtype=_F64) + 0.5) / per_arm)
    r = radius * theta / theta_max
    arms = []
    for a in range(n_arms):
        phase = theta + 2.0 * math.pi * a / n_arms
        arms.append(torch.stack([r * torch.cos(phase), r * torch.sin(phase)], dim=1))
    return _uniform(torch.cat(arms), std)


def random_gmm(
    d: int = 8,
    k: int = 8,
    seed: int = 0,
    mean_scale: float = 1.5,
    min_std: float = 0.1,
    max_std: float = 0.5,
    cov_type: str = "full",
) -> GaussianMixture:
    r"""``k`` random components in ``d`` dimensions, reproducible from ``seed``.

    Weights ~ Dirichlet(1, …, 1); means ~ $N(0, \text{mean\_scale}^2 I)$; each covariance has a
    random orientation (QR of a Gaussian matrix, ``cov_type="full"``) and standard deviations
    log-uniform in [``min_std``, ``max_std``] (``"diagonal"``: axis-aligned; ``"isotropic"``: one
    per component). For high-dimensional solver studies with exact fields.
    """
    d = _int(d, "d")
    k = _int(k, "k")
    check_positive(seed, "seed", integer=True, allow_zero=True)
    mean_scale = float(check_positive(mean_scale, "mean_scale", allow_zero=True))
    min_std = _pos(min_std, "min_std")
    max_std = _pos(max_std, "max_std")
    if max_std < min_std:
        raise InvalidInputError(f"max_std ({max_std}) must be >= min_std ({min_std})")
    check_choice(cov_type, ("full", "diagonal", "isotropic"), "cov_type")
    gen = torch.Generator().manual_seed(int(seed))
    weights = -torch.log(torch.rand(k, generator=gen, dtype=_F64).clamp_min(1e-300))
    means = mean_scale * torch.randn(k, d, generator=gen, dtype=_F64)
    log_lo, log_hi = math.log(min_std), math.log(max_std)
    n_std = 1 if cov_type == "isotropic" else d
    stds = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(k, n_std, generator=gen, dtype=_F64))
    if cov_type == "isotropic":
        covs = stds[:, 0] ** 2
    elif cov_type == "diagonal":
        covs = stds**2
    else:
        q, r = torch.linalg.qr(torch.randn(k, d, d, generator=gen, dtype=_F64))
        q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]  # Haar-distributed rotation
        covs = (q * stds[:, None, :] ** 2) @ q.transpose(1, 2)
        covs = 0.5 * (covs + covs.transpose(1, 2))
    return GaussianMixture(weights, means, covs)


# --- the catalog ----------------------------------------------------------------------------------------------
CATALOG: dict[str, Callable[..., GaussianMixture]] = {
    "gaussian": gaussian,
    "8gaussians": eight_gaussians,
    "25gaussians": twenty_five_gaussians,
    "rings": rings,
    "moons": moons,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "random_gmm": random_gmm,
}


def names() -> list[str]:
    """The toy names accepted by `get`."""
    return list(CATALOG)


def defaults(name: str) -> dict[str, Any]:
    """A toy's parameters and their default values."""
    check_choice(name, CATALOG, "toy")
    return {p.name: p.default for p in inspect.signature(CATALOG[name]).parameters.values()}


def get(name: str, **params: Any) -> GaussianMixture:
    """Build the toy ``name`` (see `names`) with ``params`` overriding its defaults (see `defaults`)."""
    check_choice(name, CATALOG, "toy")
    builder = CATALOG[name]
    try:
        inspect.signature(builder).bind(**params)
    except TypeError as exc:
        allowed = ", ".join(defaults(name)) or "none"
        raise InvalidInputError(f"bad parameters for toy {name!r}: {exc}; its parameters are: {allowed}") from None
    return builder(**params)
