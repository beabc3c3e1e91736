r"""Optional ``torch.compile`` of a field: the one speed-up a solver cannot get from its own loop.

The floor of a sampler is NFE × the cost of one field evaluation (DESIGN.md §5). Our fixed-step
loop already adds almost nothing on top of it (fused ``torch.add(..., alpha=)`` updates, Python
float times, no host synchronisation), so on a large batch the remaining lever is the field
itself. ``compile_field(field)`` returns a drop-in field whose ``__call__`` runs through
``torch.compile`` (TorchInductor: on a CPU it fuses the many small elementwise kernels of e.g. an
exact mixture field into a few loops; on a GPU it also cuts launch overhead)::

    fast = compile_field(mixture.field(LinearPath()))
    solve(fast, x1, solver="rk4", grid=grids.uniform(8))

Cost: one compilation per input signature (shape, dtype, device), seconds to a minute on a CPU,
paid at the first call; later calls with the same signature reuse it. Results agree with the
eager field to float round-off (fusion reorders operations). Fields whose code forces a graph
break (e.g. a host-side finiteness check) still work; only the pieces between breaks are fused.

Attributes other than ``__call__`` (``path``, ``x0``, ``predict_kinds`` …) are forwarded to the
eager field, so the wrapper can be inspected like the original; the exponential integrators,
which need a real `odeflow.dynamics.ProbabilityFlow`, should be given the original field.
If compilation fails (no C++ compiler, an unsupported construct) the wrapper warns once and
falls back to the eager field, so a sampler never fails because of this option.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from odeflow.errors import InvalidInputError

__all__ = ["CompiledField", "compile_field"]


class CompiledField:
    """``field(t, x)`` evaluated through ``torch.compile``; everything else delegates to the field."""

    def __init__(self, field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], **compile_options: Any) -> None:
        if not callable(field):
            raise InvalidInputError(f"field must be callable as field(t, x), got {type(field).__name__}")
        self.field = field
        self.compile_options = dict(compile_options)
        self._compiled = torch.compile(field, **compile_options)
        self.fallback = False

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.fallback:
            return self.field(t, x)
        try:
            return self._compiled(t, x)
        except Exception as exc:  # noqa: BLE001 (any compiler failure: run eagerly instead)
            from odeflow.errors import OdeflowError  # noqa: PLC0415

            if isinstance(exc, OdeflowError):  # the field's own input errors are real errors
                raise
            warnings.warn(
                f"torch.compile of the field failed ({type(exc).__name__}: {exc}); using the eager field",
                RuntimeWarning,
                stacklevel=2,
            )
            self.fallback = True
            return self.field(t, x)

    def __getattr__(self, name: str) -> Any:
        if name in ("field", "_compiled", "compile_options", "fallback"):
            raise AttributeError(name)
        return getattr(self.field, name)

    def __repr__(self) -> str:
        return f"CompiledField({self.field!r})"


def compile_field(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, dynamic: bool | None = True, **options: Any
) -> CompiledField:
    """Wrap ``field`` so that its evaluations run through ``torch.compile(field, dynamic=..., **options)``.

    ``dynamic=True`` (default) traces sizes *and Python floats* symbolically. Fields with host-side
    checks (``float(t)`` for a range check, as ours have) would otherwise be re-specialised and
    recompiled for every new time value, which exhausts dynamo's recompile limit after 8 times
    and silently falls back to eager code. ``options`` go to ``torch.compile``
    (``mode="max-autotune"``, ``backend=...``).
    """
    return CompiledField(field, dynamic=dynamic, **options)
