"""Where fields come from: exact Gaussian mixtures, the toy catalog, learned networks, Flux.

Depends on `odeflow` and `solvers` only (DESIGN.md §2).
"""

# exact Gaussian-mixture fields (issue 4)
from models.gmm import GaussianMixture as GaussianMixture
from models.gmm import MixtureFlow as MixtureFlow
from models.gmm import flow_map as flow_map
