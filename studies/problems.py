r"""Test problems shared by the studies: data distributions with exact fields, by name.

Every problem is a `models.gmm.GaussianMixture` (so its PF-ODE field, score and density are
exact on every path) plus, for a single Gaussian, the closed-form flow map:

| name | data | why |
|---|---|---|
| ``dirac`` | point mass at $(1, \tfrac12)$ | exactly straight under the linear path |
| ``gaussian_sd0.5`` | $N(0, \tfrac14 I_2)$ | closed forms: normalised $S = 4-\pi$, ratio 1.211 (linear) |
| ``gaussian_aniso`` | $N(\mu, \Sigma)$, 2-d, full $\Sigma$, eigenvalues 0.5, 0.02 | smooth, analytic reference |
| ``smooth3`` | 3 wide overlapping components, 2-d, sd 0.6–0.8 | smooth *nonlinear* field |
| ``mixture64`` | ``toys.random_gmm(d=64, k=8, seed=0)``: full covariances | a high-dimensional field |
| toy names | `models.toys` with default parameters (8gaussians, checkerboard, …) | the usual benchmarks |

The starting points of a sampler are exact samples of the path's marginal at $t = 1$,
$x_1 = \alpha(1)x_0 + \sigma(1)\varepsilon$ (pure noise on the linear and cosine paths; on VP
$\alpha(1) \approx 0.0066$ and on VE $\sigma(1) = 50$), drawn from explicit seeds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from studies.runner import derive_seed

__all__ = ["Problem", "get_problem", "problem_names", "BUILTIN"]

BUILTIN = ("dirac", "gaussian_sd0.5", "gaussian_aniso", "smooth3", "mixture64")


def _toy_names() -> list[str]:
    try:
        from models import toys  # noqa: PLC0415
    except ImportError:
        return []
    return list(toys.names())


def problem_names() -> list[str]:
    """Every problem name: the built-in analytic ones, then the toy catalog."""
    return list(BUILTIN) + [n for n in _toy_names() if n not in BUILTIN]


@dataclass(frozen=True)
class Problem:
    """A named data distribution (a `GaussianMixture`) and helpers to start samplers from it."""

    name: str
    data: object  # models.gmm.GaussianMixture

    @property
    def dim(self) -> int:
        return int(self.data.dim)

    @property
    def closed_form(self) -> bool:
        """Whether the PF-ODE flow map is known in closed form (a single Gaussian)."""
        return int(self.data.n_components) == 1

    @property
    def has_density(self) -> bool:
        return not bool(self.data.singular)

    def field(self, path: GaussianPath):
        """The exact PF-ODE field (a `ProbabilityFlow`) on ``path``."""
        return self.data.field(path)

    def sample_data(self, n: int, seed: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``n`` data samples from an explicit seed (CPU)."""
        g = torch.Generator().manual_seed(int(seed))
        return self.data.sample(n, generator=g, dtype=torch.float64).to(dtype)

    def start(
        self,
        n: int,
        path: GaussianPath,
        seed: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Exact samples of the marginal at $t = 1$: ``(x1, x0)`` with $x_1 = \alpha(1)x_0 + \sigma(1)\varepsilon$.

        ``x0`` and ``ε`` come from ``seed`` and the problem's name only, so every path and every
        solver starts from the same draws (common random numbers). ``x0`` is *not* the PF-ODE
        image of ``x1`` (that is the ODE's endpoint); it is returned for coupling statistics.
        """
        s = derive_seed(seed, "start", self.name)
        g = torch.Generator().manual_seed(s)
        x0 = self.data.sample(n, generator=g, dtype=torch.float64)
        eps = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        a1, s1 = float(path.alpha(1.0)), float(path.sigma(1.0))
        x1 = a1 * x0 + s1 * eps
        return x1.to(device=device, dtype=dtype), x0.to(device=device, dtype=dtype)

    def flow_map(self, x: torch.Tensor, t_from: float, t_to: float, path: GaussianPath) -> torch.Tensor:
        """The exact PF-ODE map (single Gaussians only; raises otherwise)."""
        if not self.closed_form:
            raise InvalidInputError(f"problem {self.name!r} has no closed-form flow map (it is a mixture)")
        return self.data.flow_map(x, t_from, t_to, path)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact data log-density (raises for singular data such as ``dirac``)."""
        return self.data.log_prob(x)


def _builtin(name: str) -> object:
    from models import toys  # noqa: PLC0415 (studies depend on models; keep `odeflow list` fast)
    from models.gmm import GaussianMixture  # noqa: PLC0415

    if name == "dirac":
        return GaussianMixture([1.0], [[1.0, 0.5]], [0.0])
    if name == "gaussian_sd0.5":
        return toys.get("gaussian", d=2, std=0.5)
    if name == "gaussian_aniso":
        c, s = 0.8, 0.6  # rotation by atan(3/4)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        cov = rot @ torch.diag(torch.tensor([0.5, 0.02], dtype=torch.float64)) @ rot.T
        return GaussianMixture([1.0], [[0.5, -0.25]], cov[None])
    if name == "smooth3":
        means = [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]]
        return GaussianMixture([0.5, 0.3, 0.2], means, [[0.5, 0.4], [0.36, 0.6], [0.64, 0.45]])
    if name == "mixture64":
        return toys.get("random_gmm", d=64, k=8, seed=0)
    raise KeyError(name)


@functools.cache
def get_problem(name: str) -> Problem:
    """A problem by name (see `problem_names`); raises `InvalidInputError` listing the valid names."""
    if name in BUILTIN:
        return Problem(name, _builtin(name))
    if name in _toy_names():
        from models import toys  # noqa: PLC0415

        return Problem(name, toys.get(name))
    raise InvalidInputError(f"unknown problem {name!r}; valid problems are: {', '.join(problem_names())}")
