"""Where fields come from: exact Gaussian mixtures, the toy catalog, learned networks, Flux.

Depends on `odeflow` and `solvers` only (DESIGN.md §2).
"""

# exact Gaussian-mixture fields and the toy catalog (issue 4)
from models import toys as toys
from models.gmm import GaussianMixture as GaussianMixture
from models.gmm import MixtureFlow as MixtureFlow
from models.gmm import flow_map as flow_map

# learned fields: small time-conditioned networks, flow-matching / score training, reflow (issue 7)
from models.nets import SinusoidalTimeEmbedding as SinusoidalTimeEmbedding
from models.nets import TimeMLP as TimeMLP
from models.training import ReflowResult as ReflowResult
from models.training import TrainResult as TrainResult
from models.training import distill as distill
from models.training import rectify as rectify
from models.training import reflow as reflow
from models.training import train as train
