"""Boundary checks shared by the public entry points (raise `InvalidInputError`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from odeflow.errors import InvalidInputError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_choice(value: Any, allowed: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise list the valid names."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"unknown {what} {value!r}; valid {what}s are: {', '.join(map(repr, allowed))}")
    return value


def check_time(t: float | torch.Tensor, name: str = "t", lo: float = 0.0, hi: float = 1.0) -> None:
    """Check that ``t`` (float or tensor) is finite and inside ``[lo, hi]``.

    Tensors on an accelerator are not checked (the check would synchronise the host);
    CPU tensors and Python numbers always are.
    """
    if isinstance(t, torch.Tensor):
        if t.device.type != "cpu":
            return
        if not torch.is_floating_point(t):
            t = t.double()
        if t.numel() == 0:
            raise InvalidInputError(f"{name} is empty; give at least one time in [{lo:g}, {hi:g}]")
        if not bool(torch.isfinite(t).all()):
            raise InvalidInputError(f"{name} has non-finite values; times must lie in [{lo:g}, {hi:g}]")
        t_min, t_max = float(t.min()), float(t.max())
    else:
        try:
            t_min = t_max = float(t)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a float or a tensor, got {type(t).__name__}") from None
        if not math.isfinite(t_min):
            raise InvalidInputError(f"{name} = {t_min} is not finite; times must lie in [{lo:g}, {hi:g}]")
    if t_min < lo or t_max > hi:
        bad = t_min if t_min < lo else t_max
        raise InvalidInputError(f"{name} = {bad:g} is outside [{lo:g}, {hi:g}] (t = 0 is data, t = 1 noise)")


def check_state(x: Any, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a floating tensor with a batch dimension and finite values."""
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor of shape (batch, *dims), got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise InvalidInputError(
            f"{name} has dtype {x.dtype}; use a floating dtype (float32 or float64; bf16/fp16 for Flux)"
        )
    if x.dim() < 1:
        raise InvalidInputError(f"{name} must have a batch dimension: shape (batch, *dims), got a 0-d tensor")
    if x.device.type == "cpu" and not bool(torch.isfinite(x).all()):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Check that two tensors have the same shape, dtype and device."""
    if a.shape != b.shape:
        raise InvalidInputError(
            f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has shape {tuple(b.shape)}; they must match"
        )
    if a.dtype != b.dtype:
        raise InvalidInputError(f"{names[0]} has dtype {a.dtype} but {names[1]} has dtype {b.dtype}; they must match")
    if a.device != b.device:
        raise InvalidInputError(
            f"{names[0]} is on {a.device} but {names[1]} is on {b.device}; they must be on one device"
        )


def check_positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
    """Check that a number is positive (or non-negative) and, optionally, an integer."""
    ok_type = (
        isinstance(value, int) and not isinstance(value, bool)
        if integer
        else isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    if not ok_type:
        kind = "an integer" if integer else "a number"
        raise InvalidInputError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{name} must be {bound}, got {value!r}")
    return value
