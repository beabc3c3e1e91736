r"""Training small networks on Gaussian paths: flow matching, denoising (ε / x0 / score), reflow.

Given data $x_0$, noise $x_1$ ($= \varepsilon$; independent $N(0, I)$ unless a coupling is
given) and a time $t$, the path point is $x_t = \alpha(t)\,x_0 + \sigma(t)\,x_1$ and the
network $F_\theta(t, x_t)$ regresses one prediction kind (DESIGN.md §1):

| kind | target | per-sample loss |
|---|---|---|
| ``"velocity"`` | $u = \dot\alpha\,x_0 + \dot\sigma\,x_1$ ($= x_1 - x_0$ on the linear path) | $\lVert F - u\rVert^2$ |
| ``"epsilon"`` | $x_1$ | $\lVert F - x_1\rVert^2$ |
| ``"x0"`` | $x_0$ | $\lVert F - x_0\rVert^2$ |
| ``"score"`` | $-x_1/\sigma$ | $\sigma^2\lVert F + x_1/\sigma\rVert^2 = \lVert\sigma F + x_1\rVert^2$ |

(squared norms are means over the data dimensions). The minimiser of each is the conditional
expectation of its target given $x_t$ — the marginal velocity of the path (conditional flow
matching, Lipman et al. 2023; rectified flow, Liu et al. 2022) or the denoiser / noise
prediction / score (denoising score matching with Song et al. 2021's weighting
$\lambda(t) = \sigma^2$, which keeps the score loss finite as $\sigma \to 0$).

Times are drawn ``"uniform"`` on ``t_range`` or ``"logit_normal"``: $t = \mathrm{sigmoid}(m + s\,n)$,
$n \sim N(0, 1)$, mapped affinely onto ``t_range`` (Esser et al. 2024, SD3 §3.1; their best
setting is $m = 0$, $s = 1$, which puts more weight on intermediate times). A 1-d tensor of
times samples uniformly among those times (used by `distill`).

`reflow` (Liu et al. 2022, "Flow straight and fast", Alg. 1): draw fresh noise $x_1$, solve the
current flow's ODE from $t = 1$ to $0$ to get the coupling $(x_0 = \Phi(x_1), x_1)$, and train
the next rectified flow on $x_t = (1 - t)x_0 + t\,x_1$ with target $x_1 - x_0$. Minibatches are
i.i.d. draws of whole pairs from the coupling, so the noise of a pair is never re-drawn: the
pairing is what makes the $k$-rectified flow straighter (its expected straightness is
$O(1/k)$, Liu et al. Thm. 3.7). `rectify` chains rounds; `distill` trains a $k$-step sampler
on a coupling (target $x_1 - x_0$ only at the $k$ uniform grid times).

Everything is seeded by ``seed`` through a private ``torch.Generator`` (data indices, noise,
times): the same seed, model initialisation and thread count give the same losses.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from odeflow._checks import check_choice, check_positive
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError, NonFiniteError
from odeflow.paths import GaussianPath, LinearPath, get_path
from odeflow.predictions import PREDICTION_KINDS
from solvers.base import Solver
from solvers.solve import solve

__all__ = [
    "T_SAMPLINGS",
    "LR_SCHEDULES",
    "TrainResult",
    "ReflowResult",
    "sample_times",
    "loss_terms",
    "train",
    "sample_flow",
    "reflow",
    "rectify",
    "distill",
]

T_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")

Data = Any  # tensor | (x0, x1) | object with .sample(n, generator=) | callable (n, generator) -> tensor


# --------------------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What `train` returns: the loss of every step (float64, shape ``(steps,)``), the wall time,
    and the settings used (seed, time sampling, EMA decay)."""

    losses: torch.Tensor
    seconds: float
    seed: int
    t_sampling: str
    ema: float | None

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10 % of the steps (a less noisy summary than the last step)."""
        n = max(1, len(self.losses) // 10)
        return float(self.losses[-n:].mean())


@dataclass
class ReflowResult:
    """One reflow round: the new ``flow`` (and its ``model``), the coupling it was trained on
    (``x1`` noise, ``x0 = ODE(x1)`` of the previous flow) and the training record."""

    flow: ProbabilityFlow
    model: nn.Module
    x1: torch.Tensor
    x0: torch.Tensor
    train: TrainResult
    coupling_nfe: int = 0
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- pieces
def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an int, got {seed!r}")
    return seed


def _check_t_range(t_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in t_range)
    except (TypeError, ValueError):
        raise InvalidInputError(f"t_range must be a pair (t_lo, t_hi), got {t_range!r}") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise InvalidInputError(f"t_range must satisfy 0 <= t_lo < t_hi <= 1, got ({lo}, {hi})")
    return lo, hi


def sample_times(
    n: int,
    t_sampling: str | torch.Tensor = "uniform",
    *,
    generator: torch.Generator | None = None,
    t_range: tuple[float, float] = (0.0, 1.0),
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""``n`` training times in ``t_range``.

    ``"uniform"``: $t \sim U(t_{lo}, t_{hi})$. ``"logit_normal"``: $t = t_{lo} + (t_{hi} - t_{lo})\,
    \mathrm{sigmoid}(m + s\,n)$, $n \sim N(0, 1)$ (SD3). A 1-d tensor: uniform draws among its
    entries (``t_range`` is ignored; the entries must lie in [0, 1]).
    """
    check_positive(n, "n", integer=True)
    if isinstance(t_sampling, torch.Tensor):
        values = t_sampling.detach().to(torch.float64).cpu().reshape(-1)
        if values.numel() == 0 or not bool(torch.isfinite(values).all()) or values.min() < 0 or values.max() > 1:
            raise InvalidInputError("a tensor t_sampling must hold at least one time, all inside [0, 1]")
        idx = torch.randint(values.numel(), (n,), generator=generator)
        return values[idx].to(dtype)
    check_choice(t_sampling, T_SAMPLINGS, "t_sampling")
    lo, hi = _check_t_range(t_range)
    if t_sampling == "uniform":
        u = torch.rand(n, generator=generator, dtype=torch.float64)
    else:
        check_positive(logit_std, "logit_std")
        u = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator, dtype=torch.float64))
    return (lo + (hi - lo) * u).to(dtype)


def _data_sampler(
    data: Data, dtype: torch.dtype, device: torch.device
) -> Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]]:
    """Normalise the accepted data sources to ``draw(n, gen) -> (x0, x1 or None)``."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not all(isinstance(d, torch.Tensor) for d in data):
            raise InvalidInputError("a coupling must be a pair of tensors (x0, x1) of equal shape")
        x0_all, x1_all = data
        if x0_all.shape != x1_all.shape or x0_all.dim() < 2 or x0_all.shape[0] < 1:
            raise InvalidInputError(
                "coupling tensors must have equal shape (n, *dims); "
                f"got {tuple(x0_all.shape)} and {tuple(x1_all.shape)}"
            )
        _check_finite(x0_all, "x0 of the coupling")
        _check_finite(x1_all, "x1 of the coupling")
        x0_all = x0_all.detach().to(dtype=dtype, device=device)
        x1_all = x1_all.detach().to(dtype=dtype, device=device)

        def draw_pairs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
            idx = torch.randint(x0_all.shape[0], (n,), generator=gen).to(device)
            return x0_all[idx], x1_all[idx]

        return draw_pairs
    if isinstance(data, torch.Tensor):
        if data.dim() < 2 or data.shape[0] < 1:
            raise InvalidInputError(f"a data tensor must have shape (n, *dims) with n >= 1, got {tuple(data.shape)}")
        _check_finite(data, "data")
        data_all = data.detach().to(dtype=dtype, device=device)

        def draw_points(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
            idx = torch.randint(data_all.shape[0], (n,), generator=gen).to(device)
            return data_all[idx], None

        return draw_points
    sample = getattr(data, "sample", None)
    if callable(sample):

        def draw_from(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
            return sample(n, generator=gen).to(dtype=dtype, device=device), None

        return draw_from
    if callable(data):

        def draw_call(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
            return data(n, gen).to(dtype=dtype, device=device), None

        return draw_call
    raise InvalidInputError(
        "data must be a tensor of samples (n, *dims), a coupling (x0, x1), an object with "
        ".sample(n, generator=) (e.g. a GaussianMixture) or a callable (n, generator) -> tensor; "
        f"got {type(data).__name__}"
    )


def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.device.type == "cpu" and not bool(torch.isfinite(x).all()):
        raise InvalidInputError(f"{name} contains NaN or infinite values")


def _bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return c.reshape((-1,) + (1,) * (x.dim() - 1)).to(dtype=x.dtype, device=x.device)


def loss_terms(
    output: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, path: GaussianPath, prediction: str
) -> torch.Tensor:
    r"""Per-sample losses (shape ``(batch,)``) of a ``prediction``-kind ``output`` at $x_t = \alpha x_0 + \sigma x_1$.

    See the module table: plain mean-squared error for velocity / epsilon / x0, and the
    $\sigma^2$-weighted denoising score matching loss $\lVert\sigma F + x_1\rVert^2$ for score.
    """
    check_choice(prediction, PREDICTION_KINDS, "prediction kind")
    coeffs = tuple(_bcast(c, x0) for c in path.coefficients(t.detach().to(torch.float64).cpu()))
    return _loss(output, x0, x1, coeffs, prediction)


def _loss(
    output: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, coeffs: tuple[torch.Tensor, ...], prediction: str
) -> torch.Tensor:
    _, sigma, d_alpha, d_sigma = coeffs
    if prediction == "velocity":
        residual = output - (d_alpha * x0 + d_sigma * x1)
    elif prediction == "epsilon":
        residual = output - x1
    elif prediction == "x0":
        residual = output - x0
    else:  # score, weighted by sigma^2
        residual = sigma * output + x1
    return residual.pow(2).reshape(residual.shape[0], -1).mean(dim=1)


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(iter(model.parameters()), None)
    if p is None:
        raise InvalidInputError("model has no parameters to train")
    return p.dtype, p.device


# --------------------------------------------------------------------------------------------- train
def train(
    model: nn.Module,
    data: Data,
    path: GaussianPath | str = "linear",
    prediction: str | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    lr_schedule: str = "cosine",
    t_sampling: str | torch.Tensor = "uniform",
    t_range: tuple[float, float] = (0.0, 1.0),
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    ema: float | None = None,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    progress: bool = False,
    desc: str = "train",
) -> TrainResult:
    r"""Train ``model`` in place to predict ``prediction`` on ``path`` (see the module docstring).

    Parameters
    ----------
    model: an ``nn.Module`` called as ``model(t, x)`` with per-sample ``t`` of shape ``(batch,)``
        (e.g. `models.nets.TimeMLP`).
    data: samples $x_0$ — a tensor ``(n, *dims)`` (minibatches drawn with replacement), an object
        with ``.sample(n, generator=)`` (e.g. a ``GaussianMixture``), a callable
        ``(n, generator) -> tensor``, or a coupling ``(x0, x1)`` of paired tensors (minibatches are
        i.i.d. draws of whole pairs; the noise is not re-drawn). Otherwise $x_1 \sim N(0, I)$ fresh.
    path: a `GaussianPath` or its name; prediction: a kind (default ``model.prediction``).
    steps, batch_size: Adam steps and minibatch size. lr, lr_schedule: peak learning rate and
        ``"cosine"`` (decays to 0) or ``"constant"``. weight_decay: AdamW decoupled decay.
    t_sampling, t_range, logit_mean, logit_std: see `sample_times`.
    ema: decay of an exponential moving average of the weights (e.g. 0.999) or None; with EMA
        the model ends up holding the averaged weights.
    grad_clip: clip the gradient norm to this value (None: no clipping).
    seed: seeds every random draw of the run (not the model's initialisation).
    progress: show a tqdm bar (its loss read-out syncs the host every 50 steps).

    Returns a `TrainResult` whose ``losses`` are the per-step minibatch losses; raises
    `NonFiniteError` (with the `TrainResult` in ``.partial``) if a loss was NaN or infinite.
    Velocity targets on the VP path contain $\dot\sigma \sim t^{-1/2}$: train them with
    ``t_range=(1e-3, 1.0)`` or so. Cost: ``steps`` forward + backward passes on ``batch_size``
    samples.
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module called as model(t, x), got {type(model).__name__}")
    path = get_path(path)
    if prediction is None:
        prediction = getattr(model, "prediction", None)
        if prediction is None:
            kinds = ", ".join(PREDICTION_KINDS)
            raise InvalidInputError(f"pass prediction= (one of {kinds}); the model has no .prediction")
    check_choice(prediction, PREDICTION_KINDS, "prediction kind")
    check_positive(steps, "steps", integer=True)
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    check_choice(lr_schedule, LR_SCHEDULES, "lr_schedule")
    seed = _check_seed(seed)
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, float) or not 0.0 < ema < 1.0):
        raise InvalidInputError(f"ema must be None or a decay in (0, 1) such as 0.999, got {ema!r}")
    if grad_clip is not None:
        check_positive(grad_clip, "grad_clip")
    # validate the time sampling once (and fail before any work)
    sample_times(1, t_sampling, t_range=t_range, logit_mean=logit_mean, logit_std=logit_std)
    t_name = "grid" if isinstance(t_sampling, torch.Tensor) else t_sampling

    dtype, device = _model_dtype_device(model)
    draw = _data_sampler(data, dtype, device)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if weight_decay:
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    else:
        opt = torch.optim.Adam(params, lr=lr, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if lr_schedule == "cosine" else None
    shadow = [p.detach().clone() for p in params] if ema is not None else None
    losses = torch.empty(steps, dtype=torch.float64, device=device)

    from tqdm.auto import tqdm  # noqa: PLC0415 (optional progress bar)

    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    model.train()
    start = time.perf_counter()
    for i in bar:
        x0, x1 = draw(batch_size, gen)
        if x1 is None:
            x1 = torch.randn(x0.shape, generator=gen, dtype=dtype).to(device)
        t = sample_times(
            batch_size,
            t_sampling,
            generator=gen,
            t_range=t_range,
            logit_mean=logit_mean,
            logit_std=logit_std,
            dtype=torch.float64,
        )
        coeffs = tuple(_bcast(c, x0) for c in path.coefficients(t))
        xt = coeffs[0] * x0 + coeffs[1] * x1
        out = model(t.to(dtype=dtype, device=device), xt)
        loss = _loss(out, x0, x1, coeffs, prediction).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        opt.step()
        if sched is not None:
            sched.step()
        if shadow is not None:
            with torch.no_grad():
                torch._foreach_lerp_(shadow, [p.detach() for p in params], 1.0 - ema)
        losses[i] = loss.detach()
        if progress and (i % 50 == 0 or i == steps - 1):
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    seconds = time.perf_counter() - start
    if shadow is not None:
        with torch.no_grad():
            for p, s in zip(params, shadow):
                p.copy_(s)
    model.eval()  # trained models are used as fields
    result = TrainResult(losses=losses.cpu(), seconds=seconds, seed=seed, t_sampling=t_name, ema=ema)
    if not bool(torch.isfinite(losses).all()):
        bad = int(torch.nonzero(~torch.isfinite(losses))[0])
        raise NonFiniteError(
            f"training diverged: the loss became non-finite at step {bad} (lower lr, was {lr:g}; on a path "
            "whose sigma-dot is infinite at t = 0, such as VP, keep t away from 0 with t_range); "
            "the TrainResult is in .partial",
            partial=result,
            step=bad,
        )
    return result


# --------------------------------------------------------------------------------------------- reflow
def _noise_shape(flow: ProbabilityFlow, model: nn.Module, noise_shape: Sequence[int] | None) -> tuple[int, ...]:
    if noise_shape is not None:
        try:
            shape = tuple(int(s) for s in noise_shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"noise_shape must be a sequence of positive ints, got {noise_shape!r}") from None
        if not shape or min(shape) < 1:
            raise InvalidInputError(f"noise_shape must be a sequence of positive ints, got {noise_shape!r}")
        return shape
    for source in (getattr(flow, "model", None), model):
        shape = getattr(source, "data_shape", None)
        if shape is not None:
            return tuple(shape)
    raise InvalidInputError("pass noise_shape= (the per-sample shape): neither model has a .data_shape")


@torch.no_grad()
def sample_flow(
    flow: Any,
    x1: torch.Tensor,
    *,
    solver: str | Solver = "rk4",
    grid: Any,
    chunk: int = 65536,
) -> tuple[torch.Tensor, int]:
    """Solve the flow's ODE from ``x1`` at ``grid[0]`` (normally t = 1) to ``grid[-1]``, in chunks.

    Returns the end states and the NFE per sample. The model is put in eval mode; no autograd graph.
    """
    check_positive(chunk, "chunk", integer=True)
    model = getattr(flow, "model", None)
    if isinstance(model, nn.Module):
        model.eval()
    outs, nfe = [], 0
    for part in torch.split(x1, chunk):
        sol = solve(flow, part, solver=solver, grid=grid)
        outs.append(sol.x)
        nfe = sol.stats.nfe
    return torch.cat(outs), nfe


def _next_model(flow: ProbabilityFlow, model: nn.Module | None, init: str, path: GaussianPath, seed: int) -> nn.Module:
    if model is not None:
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        return model
    check_choice(init, ("copy", "fresh"), "init")
    old = flow.model
    if not isinstance(old, nn.Module):
        raise InvalidInputError("the flow's model is not an nn.Module: pass model= (the network to train)")
    if init == "copy":
        if flow.prediction != "velocity" or flow.path != path:
            raise InvalidInputError(
                f"init='copy' needs a velocity model on {path!r} (got {flow.prediction!r} on {flow.path!r}); "
                "use init='fresh' or pass model="
            )
        return copy.deepcopy(old)
    config = getattr(old, "config", None)
    if config is None:
        raise InvalidInputError("init='fresh' needs a model with .config (e.g. TimeMLP); otherwise pass model=")
    config = dict(config, prediction="velocity")
    param = next(iter(old.parameters()))
    return type(old)(**config, seed=seed).to(dtype=param.dtype, device=param.device)


def reflow(
    flow: ProbabilityFlow,
    *,
    solver: str | Solver = "rk4",
    grid: Any,
    n_pairs: int = 20000,
    model: nn.Module | None = None,
    init: str = "copy",
    path: GaussianPath | str = "linear",
    noise_shape: Sequence[int] | None = None,
    seed: int = 0,
    chunk: int = 65536,
    **train_kwargs: Any,
) -> ReflowResult:
    r"""One round of reflow: couple fresh noise with the flow's ODE image, train the next rectified flow.

    1. $x_1 \sim N(0, I)$, ``n_pairs`` samples of shape ``noise_shape`` (default: the
       ``data_shape`` of the flow's model or of the new model), drawn from ``seed``.
    2. $x_0 = \Phi(x_1)$: ``solve(flow, x1, solver=solver, grid=grid)`` (cost: ``n_pairs`` × NFE
       model calls, no gradients).
    3. Train a velocity model on ``path`` (default linear) with the coupling ``(x0, x1)``:
       target $x_1 - x_0$ at $x_t = (1 - t)x_0 + t x_1$, minibatches of i.i.d. pairs (see `train`;
       ``train_kwargs`` go there, e.g. ``steps``, ``batch_size``, ``lr``, ``t_sampling``).

    The new model is ``model`` if given; else ``init="copy"`` warm-starts from a copy of the
    current model (as Liu et al. 2022 do; needs a velocity model on ``path``) and ``init="fresh"``
    builds the same architecture anew from ``seed``. The current flow is not modified.
    Returns a `ReflowResult` with the new flow and its coupling.
    """
    if not isinstance(flow, ProbabilityFlow):
        raise InvalidInputError(f"flow must be a ProbabilityFlow, got {type(flow).__name__}")
    check_positive(n_pairs, "n_pairs", integer=True)
    seed = _check_seed(seed)
    path = get_path(path)
    if "prediction" in train_kwargs and train_kwargs["prediction"] != "velocity":
        raise InvalidInputError("a rectified flow predicts the velocity; drop prediction=")
    train_kwargs.pop("prediction", None)
    new_model = _next_model(flow, model, init, path, seed)
    dtype, device = _model_dtype_device(new_model)
    shape = _noise_shape(flow, new_model, noise_shape)
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn((n_pairs, *shape), generator=gen, dtype=dtype).to(device)
    x0, nfe = sample_flow(flow, x1, solver=solver, grid=grid, chunk=chunk)
    if not bool(torch.isfinite(x0).all()):
        raise InvalidInputError("the current flow's ODE produced non-finite samples; check the flow and the grid")
    result = train(new_model, (x0, x1), path, "velocity", seed=seed + 1, **train_kwargs)
    return ReflowResult(
        flow=ProbabilityFlow(new_model, path, "velocity"), model=new_model, x1=x1, x0=x0, train=result, coupling_nfe=nfe
    )


def rectify(flow: ProbabilityFlow, rounds: int, *, seed: int = 0, **reflow_kwargs: Any) -> list[ReflowResult]:
    """Chain ``rounds`` reflows starting from ``flow`` (a $k$-RF gives the $(k+1)$-RF, …).

    Round $i$ uses seed ``seed + 1000 i``; ``reflow_kwargs`` go to every `reflow` call.
    Returns the list of rounds; ``[-1].flow`` is the $(k + \\text{rounds})$-rectified flow.
    """
    check_positive(rounds, "rounds", integer=True)
    seed = _check_seed(seed)
    results: list[ReflowResult] = []
    current = flow
    for i in range(rounds):
        res = reflow(current, seed=seed + 1000 * i, **reflow_kwargs)
        results.append(res)
        current = res.flow
    return results


def distill(
    coupling: ReflowResult | tuple[torch.Tensor, torch.Tensor],
    model: nn.Module,
    *,
    n_steps: int = 1,
    seed: int = 0,
    **train_kwargs: Any,
) -> TrainResult:
    r"""$k$-step distillation of a coupling (Liu et al. 2022, §2.3): train ``model`` (a velocity
    model on the linear path) so that $k$ = ``n_steps`` uniform Euler steps map $x_1$ to $x_0$.

    Same loss as reflow, $\lVert F(t, x_t) - (x_1 - x_0)\rVert^2$, but only at the start times
    $t \in \{1, (k-1)/k, \dots, 1/k\}$ of the $k$ uniform Euler steps. For $k = 1$ the optimum
    is $F(1, x_1) = x_1 - \mathbb E[x_0|x_1]$, so one Euler step returns the coupled $x_0$ exactly
    for a deterministic coupling. Sample with ``solve(flow, x1, solver="euler", grid=uniform(k))``.
    """
    check_positive(n_steps, "n_steps", integer=True)
    if isinstance(coupling, ReflowResult):
        pair = (coupling.x0, coupling.x1)
    else:
        pair = coupling
    times = torch.arange(n_steps, 0, -1, dtype=torch.float64) / n_steps
    for bad in ("t_sampling", "prediction"):
        if bad in train_kwargs:
            raise InvalidInputError(f"distill sets {bad} itself; drop {bad}=")
    return train(model, pair, LinearPath(), "velocity", t_sampling=times, seed=seed, **train_kwargs)
