r"""`OdeflowScheduler`: run any odeflow ODE or exponential solver inside a diffusers pipeline.

diffusers pipelines drive a scheduler one model call at a time::

    scheduler.set_timesteps(num_inference_steps, device, sigmas=..., mu=...)
    for t in scheduler.timesteps:
        v = model(latents, t / 1000)
        latents = scheduler.step(v, t, latents).prev_sample

An s-stage solver needs s model calls per step, at stage times and stage inputs that depend on
the earlier stages. `OdeflowScheduler` therefore lists **one timestep per model evaluation**
($1000\,t$ as float32, never truncated) and, in ``step``, re-runs ``solver.step`` on a copy of
its state with a field that *replays* the model outputs received so far in this step: at the
first output it does not have yet, the replay stops and ``step`` returns that stage's input
$x$ as ``prev_sample`` — the latents at which the pipeline evaluates the model next. When every
stage output is there the step completes and ``prev_sample`` is the new state. The stage times
come from a probe run in ``set_timesteps`` (a zero field; stage times of fixed-grid methods do
not depend on the state).

The model output is read as the rectified-flow velocity $v = \varepsilon - x_0$ on the linear
path $x_\sigma = (1-\sigma)x_0 + \sigma\varepsilon$ (Flux, SD3), so the field handed to the solver
is a `odeflow.ProbabilityFlow` on `odeflow.LinearPath` and exponential integrators (DDIM,
DPM-Solver++, UniPC) work too. The $\sigma$ grid is exactly that of diffusers'
``FlowMatchEulerDiscreteScheduler`` with the same config: its default $\sigma$'s or the
``sigmas`` a pipeline passes, shifted statically (``shift``) or dynamically with ``mu`` (Flux:
$\sigma' = e^\mu/(e^\mu + 1/\sigma - 1)$), with a final $\sigma = 0$ appended. State arithmetic is
float32 (as diffusers); ``prev_sample`` has the model output's dtype.

Install into a pipeline::

    from solvers.diffusers import OdeflowScheduler
    pipe.scheduler = OdeflowScheduler.from_config(pipe.scheduler.config, solver="heun")

Caveats: img2img pipelines compute their start as ``t_start * scheduler.order`` — exact for
solvers with one model call per step (Euler, DPM-Solver++ multistep, UniPC with
``warmup="lower_order"``); ``set_begin_index`` refuses an index that is not the start of a
step. A callback that edits latents between the stages of one step is not seen by that step.
diffusers is imported only by this module; ``import solvers`` does not need it.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath
from solvers.base import get_solver, solver_names

__all__ = ["OdeflowScheduler"]

_LINEAR = LinearPath()


class _NeedModel(BaseException):  # noqa: N818 — a private control-flow signal, not an error
    """Raised by the replay field at the first stage whose model output has not arrived yet."""

    def __init__(self, t: torch.Tensor, x: torch.Tensor) -> None:
        super().__init__()
        self.t = t
        self.x = x


class _Replay:
    """A model that returns recorded outputs in call order and stops at the first missing one."""

    def __init__(self, outputs: list[torch.Tensor]) -> None:
        self.outputs = outputs
        self.calls = 0

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        k = self.calls
        self.calls += 1
        if k < len(self.outputs):
            return self.outputs[k]
        raise _NeedModel(t, x)


class _Recorder:
    """The probe model: zero velocity, records the time of every call."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.times.append(float(t))
        return torch.zeros_like(x)


class OdeflowScheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler that runs the odeflow solver ``solver`` (a registered name) on flow-matching sigmas.

    ``solver_options`` are passed to the solver's constructor (e.g. ``{"order": 3}``). The other
    parameters are those of ``FlowMatchEulerDiscreteScheduler`` and give the same sigmas;
    ``invert_sigmas``, ``stochastic_sampling`` and the karras/exponential/beta sigma options are
    not supported. Adaptive and SDE solvers are refused (a pipeline needs a fixed list of calls).
    """

    config_name = "scheduler_config.json"
    _compatibles: list[Any] = []
    order = 1

    @register_to_config
    def __init__(
        self,
        solver: str = "euler",
        solver_options: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
    ) -> None:
        import solvers  # noqa: F401,PLC0415 — registers the built-in solvers
        import solvers.ddim  # noqa: F401,PLC0415
        import solvers.dpm_solver  # noqa: F401,PLC0415
        import solvers.unipc  # noqa: F401,PLC0415

        if not isinstance(solver, str):
            raise InvalidInputError(
                f"solver must be a registered solver name (the scheduler config is JSON), got {type(solver).__name__}; "
                f"valid names: {', '.join(solver_names())}"
            )
        options = dict(solver_options or {})
        self.solver = get_solver(solver, **options)
        if getattr(self.solver, "adaptive", False) or getattr(self.solver, "kind", "ode") == "sde":
            raise InvalidInputError(
                f"solver {solver!r} is {'adaptive' if self.solver.adaptive else 'an SDE solver'}; a diffusers "
                "pipeline needs a fixed list of model calls: use a fixed-step ODE, multistep or exponential solver"
            )
        if hasattr(self.solver, "solve_full"):
            raise InvalidInputError(
                f"solver {solver!r} is a whole-solve backend (torchdiffeq/scipy) whose model calls are not known in "
                "advance; use one of odeflow's own fixed-step solvers (euler, heun, rk4, dpm_solver_pp, unipc, ...)"
            )
        unsupported = {
            "invert_sigmas": invert_sigmas,
            "use_karras_sigmas": use_karras_sigmas,
            "use_exponential_sigmas": use_exponential_sigmas,
            "use_beta_sigmas": use_beta_sigmas,
            "stochastic_sampling": stochastic_sampling,
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise InvalidInputError(f"OdeflowScheduler does not support {', '.join(bad)}; set them to False")
        if time_shift_type not in ("exponential", "linear"):
            raise InvalidInputError(f"time_shift_type must be 'exponential' or 'linear', got {time_shift_type!r}")
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
            raise InvalidInputError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
        # the training sigmas of FlowMatchEulerDiscreteScheduler (float32), for the default grid's ends
        train = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()
        train_sigmas = torch.from_numpy(train) / num_train_timesteps
        if not use_dynamic_shifting:
            train_sigmas = shift * train_sigmas / (1 + (shift - 1) * train_sigmas)
        self.sigma_min = train_sigmas[-1].item()
        self.sigma_max = train_sigmas[0].item()
        self._shift = shift
        self.order = int(getattr(self.solver, "nfe_per_step", 1))
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = train_sigmas * num_train_timesteps
        self.sigmas = train_sigmas
        self._grid: list[float] = []
        self._stage_times: list[float] = []
        self._stage_of: list[tuple[int, int]] = []  # stage index -> (step, stage within step)
        self._stage_index: int | None = None
        self._begin_index: int | None = None
        self._reset_run()

    # --- diffusers scheduler API ----------------------------------------------------------------------
    @property
    def step_index(self) -> int | None:
        """Index into ``timesteps`` of the next model output ``step`` expects."""
        return self._stage_index

    @property
    def begin_index(self) -> int | None:
        """The first index into ``timesteps`` (set by pipelines with ``set_begin_index``)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]``, which must be the first model call of a step."""
        if self._stage_of and (begin_index < 0 or begin_index >= len(self._stage_of)):
            raise InvalidInputError(f"begin_index {begin_index} is outside [0, {len(self._stage_of)})")
        if self._stage_of and self._stage_of[begin_index][1] != 0:
            step, stage = self._stage_of[begin_index]
            raise InvalidInputError(
                f"begin_index {begin_index} is stage {stage} of step {step} of {type(self.solver).__name__}; a solve "
                f"can only begin at a step's first model call (img2img pipelines need a solver with one call per step)"
            )
        if self._stage_of and begin_index > 0:
            start = self._stage_of[begin_index][0]
            replanned = [t for times in self._probe(start) for t in times]
            if replanned != self._stage_times[begin_index:]:
                raise InvalidInputError(
                    f"{type(self.solver).__name__} makes a different sequence of model calls when it starts at step "
                    f"{start} (its warm-up moves), so it cannot begin mid-schedule; use warmup='lower_order'"
                )
        self._begin_index = begin_index

    @property
    def shift(self) -> float:
        """The static shift applied by ``set_timesteps`` when ``use_dynamic_shifting`` is off."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """Change the static shift used by the next ``set_timesteps`` (as FlowMatchEulerDiscreteScheduler)."""
        self._shift = shift

    def _time_shift(self, mu: float, sigmas: np.ndarray) -> np.ndarray:
        if self.config.time_shift_type == "exponential":
            return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)
        return mu / (mu + (1 / sigmas - 1) ** 1.0)

    def _sigma_grid(self, num_inference_steps: int | None, sigmas: Any, mu: float | None) -> torch.Tensor:
        """The sigmas of FlowMatchEulerDiscreteScheduler.set_timesteps (float32), final 0 appended."""
        cfg = self.config
        if cfg.use_dynamic_shifting and mu is None:
            raise InvalidInputError("mu must be passed when use_dynamic_shifting=True (FluxPipeline passes it)")
        if sigmas is None:
            if num_inference_steps is None:
                raise InvalidInputError("give num_inference_steps or sigmas")
            if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
                raise InvalidInputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
            if num_inference_steps < 1:
                raise InvalidInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            ts = np.linspace(
                self.sigma_max * cfg.num_train_timesteps, self.sigma_min * cfg.num_train_timesteps, num_inference_steps
            )
            s = ts / cfg.num_train_timesteps
        else:
            s = np.array(sigmas).astype(np.float32)
            if s.ndim != 1 or s.size == 0:
                raise InvalidInputError(f"sigmas must be a non-empty 1-d sequence, got shape {s.shape}")
            if num_inference_steps is not None and num_inference_steps != s.size:
                raise InvalidInputError(
                    f"num_inference_steps ({num_inference_steps}) must equal len(sigmas) ({s.size}) when both are given"
                )
            if not np.all(np.isfinite(s)) or s.min() <= 0 or s.max() > 1:
                raise InvalidInputError("sigmas must lie in (0, 1] (a final 0 is appended by the scheduler)")
        if cfg.use_dynamic_shifting:
            s = self._time_shift(mu, s)
        else:
            s = self._shift * s / (1 + (self._shift - 1) * s)
        if cfg.shift_terminal:
            one_minus = 1 - s
            s = 1 - one_minus / (one_minus[-1] / (1 - cfg.shift_terminal))
        grid = torch.cat([torch.from_numpy(np.asarray(s)).to(torch.float32), torch.zeros(1)])
        if not bool((grid[1:] < grid[:-1]).all()):
            raise InvalidInputError(f"the sigmas must be strictly decreasing, got {grid.tolist()}")
        return grid

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Any = None,
        mu: float | None = None,
    ) -> None:
        """Build the sigma grid (as FlowMatchEulerDiscreteScheduler) and list one timestep per model call."""
        grid = self._sigma_grid(num_inference_steps, sigmas, mu)
        self.sigmas = grid
        self._grid = grid.double().tolist()
        self.num_inference_steps = len(self._grid) - 1
        per_step = self._probe(0)
        self._stage_times = [t for times in per_step for t in times]
        self._stage_of = [(i, j) for i, times in enumerate(per_step) for j in range(len(times))]
        self.timesteps = (torch.tensor(self._stage_times, dtype=torch.float64) * self.config.num_train_timesteps).to(
            device=device, dtype=torch.float32
        )
        self._stage_index = None
        self._begin_index = None
        self._reset_run()

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Flow models take the latents unscaled."""
        return sample

    def index_for_timestep(self, timestep: float | torch.Tensor, step_start: bool = False) -> int:
        """The first index of ``timestep`` in ``timesteps`` (the first that starts a step, if ``step_start``)."""
        t = torch.as_tensor(timestep).to(self.timesteps.device, torch.float32).reshape(())
        hits = [int(i) for i in (self.timesteps == t).nonzero().flatten().tolist()]
        if step_start:
            hits = [i for i in hits if self._stage_of[i][1] == 0]
        if not hits:
            raise InvalidInputError(f"timestep {float(t)} is not one of the scheduler's timesteps")
        return hits[0]

    def scale_noise(
        self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Forward noising $\\sigma\\,\\varepsilon + (1-\\sigma)\\,x_0$ at the timestep's $\\sigma$ (for img2img)."""
        if noise is None:
            raise InvalidInputError("scale_noise needs noise= (a tensor shaped like sample)")
        ts = torch.as_tensor(timestep).reshape(-1)
        if self._begin_index is None:
            idx = [self.index_for_timestep(t) for t in ts]
        elif self._stage_index is not None:
            idx = [self._stage_index] * ts.numel()
        else:
            idx = [self._begin_index] * ts.numel()
        sig = torch.tensor([self._stage_times[i] for i in idx], dtype=sample.dtype, device=sample.device)
        while sig.dim() < sample.dim():
            sig = sig.unsqueeze(-1)
        return sig * noise + (1.0 - sig) * sample

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """Take the model output for the current timestep; return the next latents to evaluate (or the new state)."""
        if self.num_inference_steps is None:
            raise InvalidInputError("call set_timesteps before step")
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()):
            raise InvalidInputError("pass one of scheduler.timesteps (floats) as timestep, not an integer index")
        if self._stage_index is None:
            if self._begin_index is not None:
                self._stage_index = self._begin_index
            else:
                self._stage_index = self.index_for_timestep(timestep, step_start=True)
        if self._stage_index >= len(self._stage_of):
            raise InvalidInputError("step called after the last timestep; call set_timesteps again")
        if model_output.shape != sample.shape:
            raise InvalidInputError(
                f"model_output has shape {tuple(model_output.shape)} but sample has {tuple(sample.shape)}"
            )
        step_i, stage_j = self._stage_of[self._stage_index]
        if stage_j == 0:
            self._x_step = sample.to(torch.float32)
            self._outputs = []
            if self._state is None:
                self._start = step_i
        self._outputs.append(model_output.to(device=self._x_step.device, dtype=torch.float32))
        t0, t1 = self._grid[step_i], self._grid[step_i + 1]
        flow = ProbabilityFlow(_Replay(self._outputs), _LINEAR, "velocity")
        state = self._init_state(flow, self._start, self._x_step) if self._state is None else copy.deepcopy(self._state)
        try:
            x_new, state = self.solver.step(flow, t0, t1, self._x_step, state)
        except _NeedModel as need:
            prev = need.x
        else:
            self._state = state
            prev = x_new
        self._stage_index += 1
        prev = prev.to(model_output.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # --- internals ----------------------------------------------------------------------------------------
    def _reset_run(self) -> None:
        self._state: Any = None
        self._x_step: torch.Tensor | None = None
        self._outputs: list[torch.Tensor] = []
        self._start = 0

    def _init_state(self, flow: ProbabilityFlow, start: int, x: torch.Tensor) -> Any:
        """``solver.init`` at grid point ``start`` (with the remaining grid when the solver takes one)."""
        params = inspect.signature(self.solver.init).parameters
        if "grid" in params:
            return self.solver.init(flow, self._grid[start], x, grid=self._grid[start:])
        return self.solver.init(flow, self._grid[start], x)

    def _probe(self, start: int) -> list[list[float]]:
        """Stage times of every step from grid point ``start`` on (one probe solve with a zero velocity)."""
        rec = _Recorder()
        flow = ProbabilityFlow(rec, _LINEAR, "velocity")
        x = torch.zeros(1, 1, dtype=torch.float64)
        state = self._init_state(flow, start, x)
        per_step = []
        for i in range(start, len(self._grid) - 1):
            rec.times = []
            nfe_before = state.nfe
            x, state = self.solver.step(flow, self._grid[i], self._grid[i + 1], x, state)
            if state.nfe - nfe_before != len(rec.times):
                raise InvalidInputError(
                    f"{type(self.solver).__name__} counted {state.nfe - nfe_before} evaluations in step {i} but made "
                    f"{len(rec.times)}; the scheduler needs exact NFE accounting"
                )
            if not rec.times:
                raise InvalidInputError(f"{type(self.solver).__name__} made no model call in step {i}")
            per_step.append(rec.times)
        return per_step
