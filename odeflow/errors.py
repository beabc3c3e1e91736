"""The odeflow error hierarchy (DESIGN.md §4).

Every public entry point checks its input once, at the boundary, and raises one of these
with a message that says what was wrong and what is allowed.

```
OdeflowError
├── InvalidInputError   (also a ValueError)   bad argument: name, range, shape, dtype, value
├── NonFiniteError                            a NaN/inf appeared while integrating
├── StepSizeTooSmall                          the adaptive step fell below ``dt_min``
└── MaxStepsExceeded                          the integration needed more than ``max_steps``
```

The three integration failures carry the last good partial solution in ``.partial`` so
nothing computed before the failure is lost.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OdeflowError",
    "InvalidInputError",
    "NonFiniteError",
    "StepSizeTooSmall",
    "MaxStepsExceeded",
]


class OdeflowError(Exception):
    """Base class of every error odeflow raises on purpose."""


class InvalidInputError(OdeflowError, ValueError):
    """An argument is invalid: unknown name, out of range, wrong shape, dtype or value."""


class _IntegrationError(OdeflowError):
    """An integration stopped early; ``partial`` holds the solution up to the last good step."""

    def __init__(self, message: str, *, partial: Any = None, t: float | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.t = t
        self.step = step


class NonFiniteError(_IntegrationError):
    """The state became NaN or infinite; ``t`` and ``step`` say where, ``partial`` what was good."""


class StepSizeTooSmall(_IntegrationError):
    """An adaptive solver needed a step smaller than ``dt_min``."""


class MaxStepsExceeded(_IntegrationError):
    """The integration did not reach its end within ``max_steps`` steps."""
