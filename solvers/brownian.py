r"""`BrownianPath`: one Brownian motion $W$, queried on any interval, the same under every refinement.

A sweep over step counts must integrate every step count against the *same* Brownian path,
otherwise strong errors cannot be compared. `BrownianPath` defines $W$ on a time span
$[t_a, t_b]$ (default $[0, 1]$) by a **Brownian bridge tree** (the virtual Brownian tree of
Li et al. 2020, *Scalable gradients for SDEs*, built here from counter-seeded draws): with
$u = (t - t_a)/(t_b - t_a)$ and $T = t_b - t_a$,

* $W(t_a) = 0$, $W(t_b) = \sqrt{T}\,z_{\text{root}}$;
* the midpoint $m$ of a dyadic interval $[a, b]$ (in $u$) at depth $d$, index $k$, is
  $W(m) = \tfrac12\big(W(a) + W(b)\big) + \sqrt{T(b-a)/4}\;z_{d,k}$ — the exact conditional law
  of a Brownian motion given its two end values;
* every $z$ is a standard normal drawn from a generator seeded by a hash of
  ``(seed, d, k)``, so a node's value depends only on the seed and the node, never on the order
  or number of queries.

A query $W(t)$ descends from the root to the node whose midpoint is $u$ (exact for every dyadic
$u = j/2^d$, $d \le$ ``depth``, which covers uniform grids of $2^k$ steps and times that differ
from such points by float rounding, which are snapped to them). Other times stop at a leaf
interval of width $2^{-\text{depth}}$ and are drawn from the bridge between its ends, with a
normal keyed by the time itself: the law of each value is exact, only two non-dyadic times
inside one leaf (closer than $T\,2^{-\text{depth}}$) are not jointly exact. Times within $10^{-12}T$
of a dyadic point of depth $\le$ ``depth`` are taken to be that point.

``bp(t0, t1)`` returns $W(t_1) - W(t_0)$ for any $t_0, t_1$ in the span, in either order —
for a decreasing step ($t_1 < t_0$, sampling from noise to data) it is the increment over a
step of negative length, with variance $|t_1 - t_0|$. Values are computed in float64 on the
CPU (so a seed gives the same path on every device and dtype) and returned in ``dtype`` on
``device``. A bounded LRU cache of node values makes consecutive queries cheap: a query costs at
most ``depth`` normal draws of ``shape`` and usually far fewer.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Sequence

import torch

from odeflow._checks import FLOAT_DTYPES, check_positive
from odeflow.errors import InvalidInputError

__all__ = ["BrownianPath"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of the SplitMix64 finaliser (Steele et al. 2014): a 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _key(*parts: int) -> int:
    h = 0x243F6A8885A308D3
    for p in parts:
        h = _splitmix64(h ^ (p & _MASK64))
    return h


class BrownianPath:
    r"""A Brownian motion of shape ``shape`` on ``[t_start, t_end]``; ``bp(t0, t1) = W(t1) - W(t0)``.

    Parameters
    ----------
    seed: integer seed; the path is a deterministic function of it (on every device and dtype).
    shape: shape of $W(t)$ — the shape of the SDE state, ``(batch, *dims)``: every sample and
        coordinate gets an independent Brownian motion.
    dtype, device: of the returned increments.
    t_start, t_end: the time span (default $[0, 1]$, the whole time axis of odeflow).
    depth: depth of the bridge tree; dyadic times $j/2^d$ with $d \le$ ``depth`` are exact nodes.
    cache_size: how many node values to keep (LRU); each holds one float64 tensor of ``shape``.
    """

    def __init__(
        self,
        seed: int,
        shape: Sequence[int] | torch.Size,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        *,
        t_start: float = 0.0,
        t_end: float = 1.0,
        depth: int = 24,
        cache_size: int = 2048,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an integer, got {seed!r}")
        try:
            shape_t = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"shape must be a sequence of non-negative integers, got {shape!r}") from None
        if any(s < 0 for s in shape_t):
            raise InvalidInputError(f"shape must have non-negative sizes, got {shape_t}")
        if dtype not in FLOAT_DTYPES:
            raise InvalidInputError(f"dtype must be a floating dtype (float32, float64, ...), got {dtype}")
        check_positive(depth, "depth", integer=True)
        if depth > 52:
            raise InvalidInputError(f"depth must be <= 52 (float64 resolution of the span), got {depth}")
        check_positive(cache_size, "cache_size", integer=True)
        lo, hi = float(t_start), float(t_end)
        if not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
            raise InvalidInputError(f"need finite t_start < t_end, got t_start = {t_start!r}, t_end = {t_end!r}")
        self.seed = seed
        self.shape = torch.Size(shape_t)
        self.dtype = dtype
        self.device = torch.device(device)
        self.t_start, self.t_end = lo, hi
        self.depth = depth
        self.cache_size = cache_size
        self._span = hi - lo
        self._root = math.sqrt(self._span) * self._normal(_key(seed, 0xB0, 0))
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    # --- random draws ---------------------------------------------------------------------------------
    def _normal(self, key: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(key)
        z = torch.randn(self.shape, generator=gen, dtype=torch.float64)
        return z.to(self.device)

    def _midpoint(self, d: int, k: int, w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
        node = (d, k)
        cached = self._cache.get(node)
        if cached is not None:
            self._cache.move_to_end(node)
            return cached
        half_width = self._span * 2.0 ** (-(d + 1))  # (b - a)/2 in time units
        w_m = 0.5 * (w_a + w_b) + math.sqrt(0.5 * half_width) * self._normal(_key(self.seed, 0xB1, d, k))
        self._cache[node] = w_m
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return w_m

    # --- queries ----------------------------------------------------------------------------------------
    def _u(self, t: float) -> float:
        try:
            t = float(t)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInputError(f"Brownian path times must be numbers, got {type(t).__name__}") from None
        if not math.isfinite(t) or t < self.t_start or t > self.t_end:
            raise InvalidInputError(
                f"time {t!r} is outside the Brownian path's span [{self.t_start:g}, {self.t_end:g}]; "
                "build the BrownianPath with t_start/t_end covering the grid"
            )
        u = (t - self.t_start) / self._span
        scale = 2.0**self.depth
        snapped = round(u * scale) / scale
        if abs(u - snapped) <= 1e-12:  # float rounding of a dyadic grid point (e.g. from linspace)
            u = snapped
        return min(max(u, 0.0), 1.0)

    def _w(self, u: float) -> torch.Tensor:
        """$W$ at normalised time ``u`` (float64, on ``device``)."""
        if u == 0.0:
            return torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        if u == 1.0:
            return self._root
        a, b = 0.0, 1.0
        w_a = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        w_b = self._root
        k = 0
        for d in range(self.depth):
            m = 0.5 * (a + b)
            w_m = self._midpoint(d, k, w_a, w_b)
            if u == m:
                return w_m
            if u < m:
                b, w_b, k = m, w_m, 2 * k
            else:
                a, w_a, k = m, w_m, 2 * k + 1
        # a leaf: the exact bridge law between its ends, keyed by the time itself
        frac = (u - a) / (b - a)
        std = math.sqrt(self._span * (u - a) * (b - u) / (b - a))
        bits = int.from_bytes(struct.pack("<d", u), "little")
        return w_a + frac * (w_b - w_a) + std * self._normal(_key(self.seed, 0xB2, bits))

    def value(self, t: float) -> torch.Tensor:
        """$W(t)$ with $W(t_{\\rm start}) = 0$, in ``dtype`` on ``device``."""
        return self._w(self._u(t)).to(self.dtype)

    def __call__(self, t0: float, t1: float) -> torch.Tensor:
        """The increment $W(t_1) - W(t_0)$ (either order of ``t0``, ``t1``), in ``dtype`` on ``device``."""
        u0, u1 = self._u(t0), self._u(t1)
        if u0 == u1:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        return (self._w(u1) - self._w(u0)).to(self.dtype)

    def normal(self, t0: float, t1: float) -> torch.Tensor:
        r"""The standardised increment $(W(t_1) - W(t_0))/\sqrt{|t_1 - t_0|}$, a standard normal."""
        if float(t0) == float(t1):
            raise InvalidInputError("normal(t0, t1) needs t0 != t1")
        return self(t0, t1) / math.sqrt(abs(float(t1) - float(t0)))

    def __repr__(self) -> str:
        return (
            f"BrownianPath(seed={self.seed}, shape={tuple(self.shape)}, dtype={self.dtype}, "
            f"device={str(self.device)!r}, t_start={self.t_start:g}, t_end={self.t_end:g})"
        )
