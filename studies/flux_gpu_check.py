r"""GPU check: does ``solve(field, …)`` run FLUX.1 as fast as diffusers' own Euler loop?

::

    python -m studies.flux_gpu_check [--weights DIR_OR_REPO] [--variant dev|schnell]
                                     [--height 1024] [--width 1024] [--steps 28] [--repeats 3]
                                     [--out results/flux_gpu_check]
    python -m studies.flux_gpu_check --tiny      # the tiny random model; also runs on CPU

On a CUDA machine it builds the full-size FLUX.1 transformer — the real weights when
``--weights`` resolves to a local folder or a Hugging Face cache entry, otherwise the same
architecture with random bf16 weights (the speed of a step does not depend on the values) — and
times, side by side in one process, with common inputs (random T5/CLIP embeddings of the real
shapes, one 1024² latent):

* **ours**: ``solve(model.field(cond, H, W), x1, solver="euler", grid=field.default_grid(steps))``;
* **pipeline**: diffusers' ``FluxPipeline`` with text encoders ``None``, ``prompt_embeds=``,
  ``latents=`` and ``output_type="latent"`` (its denoising loop only);
* **loop**: the plain loop inside that pipeline, written out: ``FlowMatchEulerDiscreteScheduler``
  timesteps, one transformer call and one ``scheduler.step`` per step.

Runs are interleaved (ours, pipeline, loop, ours, …) after one warm-up of each, and the median
of ``--repeats`` is kept. It reports steps per second, the ratios ours/pipeline and ours/loop
(the target is ≥ 0.98), peak CUDA memory of each, and the largest difference between our final
latent and the pipeline's (the pipeline keeps bf16 latents between steps, we keep float32, so
they differ at bf16 rounding, not more). Results go to ``--out`` as ``gpu_check.json`` and
``gpu_check.md``; the exit status is 0 when both ratios reach the target, 1 otherwise, 2 on bad
input — including a machine without CUDA (unless ``--tiny``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from odeflow.errors import InvalidInputError, OdeflowError

__all__ = ["main", "run_check", "TARGET_RATIO"]

TARGET_RATIO = 0.98
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.flux_gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="FLUX.1 folder or repo id in the HF cache (default: by variant)")
    p.add_argument("--variant", default="dev", choices=("dev", "schnell"), help="architecture when weights are absent")
    p.add_argument("--height", type=int, default=None, help="image height in pixels (default 1024; tiny: 32)")
    p.add_argument("--width", type=int, default=None, help="image width in pixels (default 1024; tiny: 32)")
    p.add_argument("--steps", type=int, default=28, help="Euler steps (diffusers' dev default: 28)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (median kept)")
    p.add_argument("--batch", type=int, default=1, help="images per solve")
    p.add_argument("--out", default="results/flux_gpu_check", help="output folder")
    p.add_argument("--tiny", action="store_true", help="the tiny random model (CPU allowed): checks the script")
    p.add_argument("--device", default=None, help="torch device (default: cuda; cpu only with --tiny)")
    return p


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _build_model(args: argparse.Namespace, device: torch.device) -> tuple[Any, str]:
    """A FluxModel with a transformer: tiny, real weights, or the full architecture with random weights."""
    from models.flux import DEFAULT_SCHEDULES, FluxModel, resolve_weights  # noqa: PLC0415

    if args.tiny:
        return FluxModel.tiny(seed=0, guidance_embeds=args.variant == "dev", device=device), "tiny random"
    weights = args.weights or f"black-forest-labs/FLUX.1-{args.variant}"
    try:
        resolve_weights(weights, components=("transformer",), local_files_only=True)
    except InvalidInputError as exc:
        if args.weights:  # asked for explicitly: do not silently replace it by random weights
            raise
        reason = str(exc).splitlines()[0]
        print(f"[flux_gpu_check] no local weights ({reason}); using random bf16 weights", file=sys.stderr)
    else:
        model = FluxModel.from_pretrained(
            weights, torch_dtype=torch.bfloat16, device=device, components=("transformer",), embedding_cache=False
        )
        return model, f"weights {weights}"
    from diffusers import FluxTransformer2DModel  # noqa: PLC0415

    with torch.device(device), _default_dtype(torch.bfloat16):  # 12 B parameters straight to the GPU in bf16
        transformer = FluxTransformer2DModel(guidance_embeds=args.variant == "dev")
    transformer.eval()
    schedule = dict(DEFAULT_SCHEDULES[args.variant])
    model = FluxModel(transformer=transformer, schedule=schedule, torch_dtype=torch.bfloat16, device=device)
    return model, "random bf16 weights (full FLUX.1 architecture)"


def _pipeline(model: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline  # noqa: PLC0415

    s = model.schedule
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=s["use_dynamic_shifting"],
        base_shift=s["base_shift"],
        max_shift=s["max_shift"],
        shift=s["shift"],
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=model.vae,  # None is fine for output_type="latent" (the factor defaults to 8, FLUX.1's)
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=model.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _plain_loop(pipe: Any, model: Any, cond: Any, latents: torch.Tensor, field: Any, steps: int) -> torch.Tensor:
    """The denoising loop of FluxPipeline, written out (scheduler timesteps, call, scheduler.step)."""
    import numpy as np  # noqa: PLC0415

    from solvers.grids import flux_mu  # noqa: PLC0415

    scheduler = pipe.scheduler
    sigmas = np.linspace(1.0, 1.0 / steps, steps)
    scheduler.set_timesteps(sigmas=sigmas, device=latents.device, mu=flux_mu(field.seq_len))
    scheduler.set_begin_index(0)
    dtype = cond.prompt_embeds.dtype
    x = latents.to(dtype)
    batch = x.shape[0]
    guidance = torch.full((batch,), 3.5, device=x.device, dtype=torch.float32) if model.guidance_embeds else None
    txt_ids = torch.zeros(cond.prompt_embeds.shape[1], 3, device=x.device, dtype=dtype)
    img_ids = field.img_ids
    for t in scheduler.timesteps:
        v = model.transformer(
            hidden_states=x,
            timestep=t.expand(batch).to(dtype) / 1000,
            guidance=guidance,
            pooled_projections=cond.pooled,
            encoder_hidden_states=cond.prompt_embeds,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        x = scheduler.step(v, t, x, return_dict=False)[0]
    return x


def _time(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return wall, peak, out


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Build, warm up, time the three contenders interleaved; return the measurements."""
    from models.flux import FluxCondition  # noqa: PLC0415
    from solvers import solve  # noqa: PLC0415

    if args.device is not None:
        device = torch.device(args.device)
    else:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type != "cuda" and not args.tiny:
        raise InvalidInputError(
            "flux_gpu_check measures the full-size FLUX.1 transformer and needs a CUDA GPU; none is available "
            "here. On CPU, run it with --tiny (the tiny random model) to check the script itself."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {str(device)!r} asked for but CUDA is not available")
    height = args.height or (32 if args.tiny else 1024)
    width = args.width or (32 if args.tiny else 1024)
    for name, v in (("steps", args.steps), ("repeats", args.repeats), ("batch", args.batch)):
        if v < 1:
            raise InvalidInputError(f"--{name} must be >= 1, got {v}")

    model, source = _build_model(args, device)
    dtype = next(model.transformer.parameters()).dtype
    cfg = model.transformer.config
    gen = torch.Generator().manual_seed(0)
    text_len = model.max_sequence_length
    cond = FluxCondition(
        torch.randn(args.batch, text_len, int(cfg.joint_attention_dim), generator=gen).to(device, dtype),
        torch.randn(args.batch, int(cfg.pooled_projection_dim), generator=gen).to(device, dtype),
    )
    field = model.field(cond, height, width, guidance=3.5)
    x1 = field.noise(args.batch, torch.Generator().manual_seed(1))
    grid = field.default_grid(args.steps)
    pipe = _pipeline(model)

    def ours() -> torch.Tensor:
        return solve(field, x1, solver="euler", grid=grid).x

    def pipeline() -> torch.Tensor:
        return pipe(
            prompt_embeds=cond.prompt_embeds,
            pooled_prompt_embeds=cond.pooled,
            latents=x1.to(dtype),
            height=height,
            width=width,
            num_inference_steps=args.steps,
            guidance_scale=3.5,
            output_type="latent",
        ).images

    def loop() -> torch.Tensor:
        return _plain_loop(pipe, model, cond, x1, field, args.steps)

    contenders = {"ours": ours, "pipeline": pipeline, "loop": loop}
    walls: dict[str, list[float]] = {k: [] for k in contenders}
    peaks: dict[str, float] = {k: 0.0 for k in contenders}
    finals: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for fn in contenders.values():  # warm-up (kernels, allocator, autotuning)
            _time(fn, device)
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                wall, peak, out = _time(fn, device)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak) if not math.isnan(peak) else peak
                finals[name] = out
    med = {k: statistics.median(v) for k, v in walls.items()}
    sps = {k: args.steps / med[k] for k in med}
    ref = finals["pipeline"].float()
    scale = float(ref.abs().max())
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "source": source,
        "variant": model.variant,
        "dtype": str(dtype).replace("torch.", ""),
        "height": height,
        "width": width,
        "tokens": field.seq_len,
        "text_tokens": text_len,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "median_wall_s": med,
        "all_wall_s": walls,
        "steps_per_s": sps,
        "ratio_vs_pipeline": sps["ours"] / sps["pipeline"],
        "ratio_vs_loop": sps["ours"] / sps["loop"],
        "target_ratio": TARGET_RATIO,
        "peak_mem_gb": peaks,
        "max_abs_diff_vs_pipeline": float((finals["ours"].float() - ref).abs().max()),
        "max_abs_diff_vs_loop": float((finals["ours"].float() - finals["loop"].float()).abs().max()),
        "latent_scale": scale,
        "torch": torch.__version__,
    }
    result["passed"] = result["ratio_vs_pipeline"] >= TARGET_RATIO and result["ratio_vs_loop"] >= TARGET_RATIO
    return result


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# FLUX.1 solve speed vs diffusers",
        "",
        f"{r['device']}, {r['source']}, {r['variant']}, {r['dtype']}, {r['height']}×{r['width']} "
        f"({r['tokens']} image + {r['text_tokens']} text tokens), batch {r['batch']}, {r['steps']} Euler steps, "
        f"median of {r['repeats']} interleaved runs.",
        "",
        "| contender | median wall (s) | steps/s | peak CUDA memory (GB) |",
        "|---|---:|---:|---:|",
    ]
    for k in ("ours", "pipeline", "loop"):
        lines.append(f"| {k} | {r['median_wall_s'][k]:.3f} | {r['steps_per_s'][k]:.3f} | {r['peak_mem_gb'][k]:.2f} |")
    verdict = "PASS" if r["passed"] else "FAIL"
    if r["source"] == "tiny random":
        verdict += " (tiny random model: a check of the script, not a measurement of Flux)"
    lines += [
        "",
        f"ours/pipeline = {r['ratio_vs_pipeline']:.3f}, ours/loop = {r['ratio_vs_loop']:.3f} "
        f"(target ≥ {r['target_ratio']}): **{verdict}**.",
        f"Largest |ours − pipeline| on the final latent: {r['max_abs_diff_vs_pipeline']:.3g} "
        f"(latent scale {r['latent_scale']:.3g}; the pipeline keeps bf16 latents between steps, we keep float32).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = run_check(args)
    except InvalidInputError as exc:
        print(f"flux_gpu_check: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OdeflowError as exc:
        print(f"flux_gpu_check: the solve failed: {exc}", file=sys.stderr)
        return 1
    from studies.report import atomic_write_text  # noqa: PLC0415

    out = Path(args.out)
    atomic_write_text(out / "gpu_check.json", json.dumps(result, indent=2) + "\n")
    text = _markdown(result)
    atomic_write_text(out / "gpu_check.md", text)
    print(text)
    if args.tiny:
        return 0  # the tiny model checks that the script runs; its timings say nothing about Flux
    return 0 if result["passed"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
