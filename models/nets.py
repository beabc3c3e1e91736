r"""Small time-conditioned networks for learned fields on toy data.

`TimeMLP` maps $(t, x) \mapsto$ a prediction of one kind (``"velocity"``, ``"epsilon"``,
``"x0"`` or ``"score"``, see `odeflow.predictions`) with the shape of $x$. It is a plain MLP on
the concatenation $[x,\ \mathrm{emb}(t)]$, where the sinusoidal embedding (Vaswani et al. 2017;
Ho et al. 2020) is

$$\mathrm{emb}(t) = \big[\sin(\omega_1 t), \dots, \sin(\omega_m t), \cos(\omega_1 t), \dots, \cos(\omega_m t)\big],
\qquad \omega_k = \omega_{\min}\,(\omega_{\max}/\omega_{\min})^{(k-1)/(m-1)} .$$

The frequencies are geometric between ``min_freq`` and ``max_freq`` radians per unit of $t$
(defaults 1 and 64). Keeping $\omega_{\max}$ moderate keeps the learned field smooth in $t$,
which the ODE solvers see as a smooth right-hand side (DDPM's $\times 1000$ time scale puts
frequencies of up to 1000 rad per unit $t$ into the field, which helps nothing on toys and
makes high-order solvers look worse than they are).

The network is called as ``model(t, x)`` with ``t`` a number, a 0-d tensor (the solver
contract, DESIGN.md §1) or a per-sample tensor of shape ``(batch,)`` (training), and ``x`` of
shape ``(batch, *dims)``; so ``ProbabilityFlow(model, path, model.prediction)`` (or
`TimeMLP.flow`) is an ODE field. Cost of one call: about
$2\,B\,(d + E)\,W + 2\,B\,(L-1)\,W^2 + 2\,B\,W\,d$ flops for batch $B$, data dimension $d$,
embedding size $E$, width $W$ and $L$ hidden layers (width 128, depth 3, $d = 2$, $E = 32$: ~75 kflop per sample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from odeflow._checks import check_choice, check_positive
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.paths import GaussianPath
from odeflow.predictions import PREDICTION_KINDS

__all__ = ["SinusoidalTimeEmbedding", "TimeMLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "selu": nn.SELU,
}


class SinusoidalTimeEmbedding(nn.Module):
    r"""$t \mapsto [\sin(\omega_k t), \cos(\omega_k t)]_{k=1..m}$ with geometric $\omega_k$ (no parameters).

    ``dim`` = $2m$ must be even and $\ge 2$. Accepts ``t`` of shape ``()`` or ``(batch,)`` and
    returns ``(batch, dim)`` (``batch`` = 1 for a 0-d ``t`` unless ``batch`` is given).
    """

    def __init__(self, dim: int = 32, min_freq: float = 1.0, max_freq: float = 64.0) -> None:
        super().__init__()
        check_positive(dim, "dim", integer=True)
        if dim % 2 or dim < 2:
            raise InvalidInputError(f"time embedding dim must be an even integer >= 2, got {dim}")
        check_positive(min_freq, "min_freq")
        check_positive(max_freq, "max_freq")
        if max_freq < min_freq:
            raise InvalidInputError(f"max_freq ({max_freq}) must be >= min_freq ({min_freq})")
        half = dim // 2
        if half == 1:
            freqs = torch.tensor([float(min_freq)], dtype=torch.float64)
        else:
            freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), half, dtype=torch.float64))
        self.dim = dim
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()), persistent=False)

    def forward(self, t: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        t = t.reshape(-1)
        if batch is not None and t.numel() == 1:
            t = t.expand(batch)
        arg = t[:, None] * self.freqs.to(t.dtype)[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class TimeMLP(nn.Module):
    r"""A time-conditioned MLP that outputs one prediction kind, shaped like its input.

    Parameters
    ----------
    data_shape: the per-sample shape ``dims`` of ``x`` (an int for vectors, e.g. ``2``).
    width: hidden width $W$ (128–256 trains 2-D toys in seconds on a CPU).
    depth: number of hidden layers $L \ge 1$.
    prediction: what the output means (``"velocity"``, ``"epsilon"``, ``"x0"``, ``"score"``);
        stored as ``self.prediction`` and used by `flow` and `models.training.train`.
    time_dim: size of the sinusoidal time embedding (even).
    min_freq, max_freq: embedding frequencies in radians per unit $t$.
    activation: one of `ACTIVATIONS`.
    seed: if given, the initial weights come from ``torch.manual_seed(seed)`` in a forked RNG
        (the global RNG is untouched), so two nets built with one seed are identical.
    dtype: parameter dtype (default: torch's default dtype).

    The last layer is initialised to zero, so an untrained net predicts 0 everywhere.
    """

    def __init__(
        self,
        data_shape: int | Sequence[int] = 2,
        *,
        width: int = 128,
        depth: int = 3,
        prediction: str = "velocity",
        time_dim: int = 32,
        min_freq: float = 1.0,
        max_freq: float = 64.0,
        activation: str = "silu",
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
        if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise InvalidInputError(f"data_shape must be a positive int or a tuple of them, got {data_shape!r}")
        check_positive(width, "width", integer=True)
        check_positive(depth, "depth", integer=True)
        check_choice(prediction, PREDICTION_KINDS, "prediction kind")
        check_choice(activation, ACTIVATIONS, "activation")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputError(f"seed must be an int or None, got {seed!r}")
        self.data_shape = shape
        self.dim = math.prod(shape)
        self.width = width
        self.depth = depth
        self.prediction = prediction
        self.activation = activation
        self._config = {
            "data_shape": shape,
            "width": width,
            "depth": depth,
            "prediction": prediction,
            "time_dim": time_dim,
            "min_freq": min_freq,
            "max_freq": max_freq,
            "activation": activation,
        }
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.embed = SinusoidalTimeEmbedding(time_dim, min_freq, max_freq)
            act = ACTIVATIONS[activation]
            layers: list[nn.Module] = [nn.Linear(self.dim + time_dim, width), act()]
            for _ in range(depth - 1):
                layers += [nn.Linear(width, width), act()]
            out = nn.Linear(width, self.dim)
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            layers.append(out)
            self.net = nn.Sequential(*layers)
        if dtype is not None:
            self.to(dtype)

    @property
    def config(self) -> dict:
        """Constructor arguments (without ``seed``/``dtype``): ``TimeMLP(**net.config)`` rebuilds the architecture."""
        return dict(self._config)

    def forward(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Prediction at ``(t, x)``; ``t`` is a number, a 0-d tensor or a ``(batch,)`` tensor."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or tuple(x.shape[1:]) != self.data_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(f"x must have shape (batch, {', '.join(map(str, self.data_shape))}), got {got}")
        batch = x.shape[0]
        p = self.net[0].weight
        t = torch.as_tensor(t, dtype=p.dtype, device=p.device)
        if t.dim() > 1 or (t.dim() == 1 and t.numel() not in (1, batch)):
            raise InvalidInputError(f"t must be a number, a 0-d tensor or of shape ({batch},), got {tuple(t.shape)}")
        h = torch.cat([x.reshape(batch, -1).to(p.dtype), self.embed(t, batch)], dim=-1)
        return self.net(h).reshape(x.shape).to(x.dtype)

    def flow(self, path: GaussianPath) -> ProbabilityFlow:
        """``ProbabilityFlow(self, path, self.prediction)``: the PF-ODE field of this net on ``path``."""
        return ProbabilityFlow(self, path, self.prediction)

    def extra_repr(self) -> str:
        return f"data_shape={self.data_shape}, width={self.width}, depth={self.depth}, prediction={self.prediction!r}"
