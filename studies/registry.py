"""The study registry: name → module, imported only when a study runs.

``odeflow list`` reads this table without importing any study (so it stays fast, and the Flux
study does not import diffusers until it runs). To add a study, write ``studies/<name>.py``
following the contract in `studies.runner` and add one line here::

    "mystudy": StudySpec("studies.mystudy", "one line saying what it measures"),
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

from odeflow.errors import InvalidInputError

__all__ = ["StudySpec", "STUDIES", "study_names", "load_study"]


class StudySpec(NamedTuple):
    """Where a study lives and what it measures (one line, shown by ``odeflow list``)."""

    module: str
    summary: str


STUDIES: dict[str, StudySpec] = {
    "convergence": StudySpec(
        "studies.convergence", "endpoint error vs NFE and wall time for every ODE solver; fitted orders"
    ),
    "straightness": StudySpec(
        "studies.straightness", "straightness and path-length ratio of each path on exact fields; closed forms"
    ),
    "sde": StudySpec(
        "studies.sde", "strong/weak error of SDE solvers; ODE vs SDE distribution error at equal NFE"
    ),
    "reflow": StudySpec(
        "studies.reflow", "1-RF → 2-RF → 3-RF on toys: straightness, few-step Euler error, learned-vs-exact field"
    ),
    "performance": StudySpec(
        "studies.performance",
        "side by side with torchdiffeq/scipy/flow_matching/diffusers: overhead, adaptive work, error per NFE",
    ),
    "flux": StudySpec(
        "studies.flux", "FLUX.1 (local weights; tiny random model with --quick): error vs NFE, straightness, cost"
    ),
}


def study_names() -> list[str]:
    """Registered study names, in registry order."""
    return list(STUDIES)


def load_study(name: str) -> ModuleType:
    """Import and return a study module by name (raises `InvalidInputError` listing valid names)."""
    if not isinstance(name, str) or name not in STUDIES:
        raise InvalidInputError(f"unknown study {name!r}; valid studies are: {', '.join(study_names())}")
    return importlib.import_module(STUDIES[name].module)
