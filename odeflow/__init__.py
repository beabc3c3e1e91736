"""odeflow core: Gaussian paths, prediction conversions, PF-ODE and SDE dynamics, metrics, errors.

Conventions (DESIGN.md §1): t ∈ [0, 1], t = 0 is data, t = 1 is noise; sampling runs 1 → 0.
"""

from odeflow.dynamics import ForwardSDE, ProbabilityFlow, ReverseSDE
from odeflow.errors import (
    InvalidInputError,
    MaxStepsExceeded,
    NonFiniteError,
    OdeflowError,
    StepSizeTooSmall,
)
from odeflow.paths import CosinePath, GaussianPath, LinearPath, VEPath, VPPath, get_path, path_names
from odeflow.predictions import PREDICTION_KINDS, convert

__version__ = "0.1.0"

__all__ = [
    "GaussianPath",
    "LinearPath",
    "VPPath",
    "CosinePath",
    "VEPath",
    "get_path",
    "path_names",
    "PREDICTION_KINDS",
    "convert",
    "ProbabilityFlow",
    "ForwardSDE",
    "ReverseSDE",
    "OdeflowError",
    "InvalidInputError",
    "NonFiniteError",
    "StepSizeTooSmall",
    "MaxStepsExceeded",
]
