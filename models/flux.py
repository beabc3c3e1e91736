r"""FLUX.1 as a rectified-flow field: load local weights, encode prompts, integrate with any solver.

FLUX.1 [dev] and [schnell] (Black Forest Labs 2024) are 12 B-parameter MMDiT transformers trained
as rectified flows on the latent space of a 16-channel VAE. On our time axis (DESIGN.md §1,
$t = 0$ data, $t = 1$ noise) Flux's noise level $\sigma$ *is* the time: the latent path is
$x_t = (1 - t)\,x_0 + t\,\varepsilon$ (`odeflow.LinearPath`) and the transformer predicts the
velocity $v = \varepsilon - x_0$, so one Euler step is $x \leftarrow x + (t_{i+1} - t_i)\,v$ —
exactly diffusers' ``FlowMatchEulerDiscreteScheduler``. `FluxModel.field` returns a
`odeflow.ProbabilityFlow` over *packed* latents of shape ``(batch, H/16 · W/16, 64)``
(2×2 patches of the 16-channel latent, H and W in pixels), so every solver in `solvers`
integrates Flux unchanged.

Conventions kept here (checked against diffusers 0.42, see ``/work/shared/NOTES.md``):

* the transformer is called with ``timestep = t`` (it multiplies by 1000 itself) and, for dev,
  ``guidance = 3.5`` (also scaled by 1000 inside); schnell has no guidance embedding;
* image position ids are rows ``[0, row, col]`` on the ``H/16 × W/16`` token grid, text ids are
  zeros; both 2-d;
* the solver state stays float32 while the transformer runs in its own dtype (bf16 on GPU:
  there $t$ is quantised to about $2^{-8}$ inside the network, the state is not);
* decoding: $z = x / 0.3611 + 0.1159$ (the VAE's ``scaling_factor`` and ``shift_factor``),
  then the VAE decoder (8× upsampling, 16 → 3 channels).

Weights are never downloaded unless the caller passes ``local_files_only=False``: a local folder
in the diffusers layout or a repository id already in the Hugging Face cache is required, and a
missing or partial folder fails at once with the list of expected files. Only safetensors are
loaded. diffusers and transformers are optional dependencies (``pip install odeflow[flux]``);
this module imports them lazily, so ``import models`` never needs them.

Memory: the transformer is 11.9 B parameters (23.8 GB in bf16), T5-XXL 9.5 GB, CLIP-L 0.25 GB,
the VAE 0.17 GB. `FluxModel.encode` keeps an on-disk cache of prompt embeddings and can free the
text encoders (``free_encoders=True``) before the transformer is loaded, so the two never need
to be resident together.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from odeflow._checks import check_positive
from odeflow.dynamics import ProbabilityFlow
from odeflow.errors import InvalidInputError
from odeflow.paths import LinearPath

__all__ = [
    "FluxModel",
    "FluxField",
    "FluxCondition",
    "pack_latents",
    "unpack_latents",
    "latent_image_ids",
    "text_ids",
    "check_weights_folder",
    "resolve_weights",
    "default_device",
    "COMPONENTS",
]

COMPONENTS: tuple[str, ...] = ("transformer", "vae", "text")
LATENT_CHANNELS = 16
VAE_SCALING_FACTOR = 0.3611
VAE_SHIFT_FACTOR = 0.1159
MAX_SEQUENCE_LENGTH = {"dev": 512, "schnell": 256}
DEFAULT_SCHEDULES = {
    # diffusers' scheduler configs of the two public checkpoints
    "dev": {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "shift": 3.0},
    "schnell": {"use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15, "shift": 1.0},
}
EMBEDDING_CACHE_ENV = "ODEFLOW_FLUX_CACHE"
ODEFLOW_CONFIG = "odeflow_flux.json"  # optional: settings written by FluxModel.save_pretrained


# ----------------------------------------------------------------------------------------------
# packing: (B, C, h, w) latents <-> (B, h/2 · w/2, 4C) token sequences
# ----------------------------------------------------------------------------------------------
def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """Pack ``(B, C, h, w)`` latents into ``(B, (h/2)(w/2), 4C)`` tokens of 2×2 patches.

    Token ``(r, c)`` (row-major on the ``h/2 × w/2`` grid) holds the channels-major patch
    ``latents[:, :, 2r:2r+2, 2c:2c+2]`` flattened as ``(C, 2, 2)`` — Flux's layout.
    """
    if not isinstance(latents, torch.Tensor) or latents.dim() != 4:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise InvalidInputError(f"latents must be a (batch, channels, height, width) tensor, got {got}")
    b, c, h, w = latents.shape
    if h % 2 or w % 2:
        raise InvalidInputError(f"latent height and width must be even to pack 2x2 patches, got {h}x{w}")
    x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), 4 * c)


def unpack_latents(tokens: torch.Tensor, latent_height: int, latent_width: int) -> torch.Tensor:
    """Inverse of `pack_latents`: ``(B, (h/2)(w/2), 4C)`` → ``(B, C, h, w)`` with ``h, w`` the latent size."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise InvalidInputError(f"packed latents must be a (batch, tokens, 4*channels) tensor, got {got}")
    h, w = int(latent_height), int(latent_width)
    b, n, d = tokens.shape
    if h % 2 or w % 2 or n != (h // 2) * (w // 2) or d % 4:
        raise InvalidInputError(
            f"packed latents of shape {tuple(tokens.shape)} do not fit a {h}x{w} latent: "
            f"need {(h // 2) * (w // 2)} tokens and a channel count divisible by 4"
        )
    x = tokens.reshape(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def latent_image_ids(
    latent_height: int, latent_width: int, *, device: Any = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Rotary position ids of the image tokens: rows ``[0, row, col]``, shape ``((h/2)(w/2), 3)``."""
    rows, cols = int(latent_height) // 2, int(latent_width) // 2
    r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
    c = torch.arange(cols, dtype=torch.float64).repeat(rows)
    ids = torch.stack([torch.zeros_like(r), r, c], dim=1)
    return ids.to(device=device, dtype=dtype)


def text_ids(length: int, *, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rotary position ids of the text tokens: all zeros, shape ``(length, 3)``."""
    return torch.zeros(int(length), 3, device=device, dtype=dtype)


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible (the ``LOCAL_RANK``-th one under torchrun), else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# conditions (prompt embeddings)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FluxCondition:
    """Text conditioning of a batch: T5 sequence ``(B, L, D)``, CLIP pooled ``(B, P)``, the prompts."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pe, pp = self.prompt_embeds, self.pooled
        if not isinstance(pe, torch.Tensor) or pe.dim() != 3:
            raise InvalidInputError("prompt_embeds must be a (batch, tokens, dim) tensor of T5 embeddings")
        if not isinstance(pp, torch.Tensor) or pp.dim() != 2 or pp.shape[0] != pe.shape[0]:
            raise InvalidInputError(
                "pooled must be a (batch, dim) tensor of CLIP pooled embeddings with the batch of prompt_embeds"
            )

    def __len__(self) -> int:
        return self.prompt_embeds.shape[0]

    def select(self, index: int | Sequence[int]) -> FluxCondition:
        """The conditions of the given rows (an int keeps a batch of one)."""
        idx = [index] if isinstance(index, int) else list(index)
        prompts = tuple(self.prompts[i] for i in idx) if self.prompts else ()
        return FluxCondition(self.prompt_embeds[idx], self.pooled[idx], prompts)

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> FluxCondition:
        """Move both tensors to ``device`` / ``dtype``."""
        return FluxCondition(
            self.prompt_embeds.to(device=device, dtype=dtype), self.pooled.to(device=device, dtype=dtype), self.prompts
        )

    @staticmethod
    def cat(conds: Sequence[FluxCondition]) -> FluxCondition:
        """Concatenate conditions along the batch."""
        if not conds:
            raise InvalidInputError("cannot concatenate an empty list of conditions")
        return FluxCondition(
            torch.cat([c.prompt_embeds for c in conds]),
            torch.cat([c.pooled for c in conds]),
            tuple(p for c in conds for p in c.prompts),
        )


# ----------------------------------------------------------------------------------------------
# the field
# ----------------------------------------------------------------------------------------------
class FluxField(ProbabilityFlow):
    r"""Flux's velocity over packed latents as a PF-ODE on `LinearPath` (velocity prediction).

    ``field(t, x)``: ``x`` of shape ``(B, N, 64)`` (any float dtype; float32 recommended),
    ``t`` a 0-d tensor; one call is one transformer evaluation at $\sigma = t$. The conditions
    are broadcast when they hold one prompt, otherwise their batch must equal ``B``. Build it
    with `FluxModel.field`.
    """

    def __init__(
        self,
        transformer: Any,
        cond: FluxCondition,
        *,
        latent_height: int,
        latent_width: int,
        guidance: float | None,
        schedule: dict[str, Any],
        grad: bool = False,
    ) -> None:
        super().__init__(self._velocity, LinearPath(), "velocity")
        self.transformer = transformer
        param = next(transformer.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.cond = cond.to(self.device, self.dtype)
        self.latent_height, self.latent_width = int(latent_height), int(latent_width)
        self.seq_len = (self.latent_height // 2) * (self.latent_width // 2)
        self.channels = int(transformer.config.in_channels)
        self.guidance = guidance
        self.schedule = dict(schedule)
        self.grad = grad
        self._img_ids = latent_image_ids(self.latent_height, self.latent_width, device=self.device, dtype=self.dtype)
        self._txt_ids = text_ids(self.cond.prompt_embeds.shape[1], device=self.device, dtype=self.dtype)
        self._per_batch: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    @property
    def img_ids(self) -> torch.Tensor:
        """Image-token position ids passed to the transformer, ``(tokens, 3)``."""
        return self._img_ids

    @property
    def txt_ids(self) -> torch.Tensor:
        """Text-token position ids passed to the transformer (zeros), ``(text tokens, 3)``."""
        return self._txt_ids

    @property
    def shape(self) -> tuple[int, int]:
        """Per-sample state shape ``(tokens, channels)``."""
        return (self.seq_len, self.channels)

    def _inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        cached = self._per_batch.get(batch)
        if cached is not None:
            return cached
        n = len(self.cond)
        if n not in (1, batch):
            raise InvalidInputError(
                f"the field holds {n} prompts but the state has batch {batch}; give one prompt or one per sample"
            )
        pe, pp = self.cond.prompt_embeds, self.cond.pooled
        if n != batch:
            pe, pp = pe.expand(batch, -1, -1), pp.expand(batch, -1)
        g = None
        if self.guidance is not None:
            g = torch.full((batch,), float(self.guidance), device=self.device, dtype=torch.float32)
        self._per_batch[batch] = (pe, pp, g)
        return pe, pp, g

    def _velocity(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise InvalidInputError(
                f"Flux state must have shape (batch, {self.seq_len}, {self.channels}) (packed latents of a "
                f"{self.latent_height}x{self.latent_width} latent), got {tuple(x.shape)}"
            )
        batch = x.shape[0]
        pe, pp, g = self._inputs(batch)
        timestep = t.to(device=self.device, dtype=self.dtype).expand(batch)
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            out = self.transformer(
                hidden_states=x.to(device=self.device, dtype=self.dtype),
                encoder_hidden_states=pe,
                pooled_projections=pp,
                timestep=timestep,
                img_ids=self._img_ids,
                txt_ids=self._txt_ids,
                guidance=g,
                return_dict=False,
            )[0]
        return out.to(device=x.device, dtype=x.dtype)

    def noise(self, batch: int, generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Packed float32 Gaussian noise for this field's resolution (see `FluxModel.noise`)."""
        return _packed_noise(batch, self.latent_height, self.latent_width, generator, self.device, self.channels // 4)

    def default_grid(self, n: int) -> torch.Tensor:
        """The checkpoint's own schedule on ``n`` steps (dev: `solvers.grids.flux`; schnell: uniform)."""
        from solvers import grids  # noqa: PLC0415 (models may use solvers; lazy to keep imports light)

        s = self.schedule
        if s.get("use_dynamic_shifting", False):
            return grids.flux(n, self.seq_len, base_shift=s["base_shift"], max_shift=s["max_shift"])
        shift = float(s.get("shift", 1.0))
        return grids.uniform(n) if shift == 1.0 else grids.shifted(n, shift)

    def __repr__(self) -> str:
        return (
            f"FluxField(latent={self.latent_height}x{self.latent_width}, tokens={self.seq_len}, "
            f"prompts={len(self.cond)}, guidance={self.guidance}, dtype={self.dtype}, device={self.device})"
        )


def _packed_noise(
    batch: int,
    latent_height: int,
    latent_width: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: Any,
    channels: int = LATENT_CHANNELS,
) -> torch.Tensor:
    check_positive(batch, "batch", integer=True)
    shape = (channels, latent_height, latent_width)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn((batch, *shape), generator=generator, device=gen_device, dtype=torch.float32)
    else:
        gens = list(generator)
        if len(gens) != batch:
            raise InvalidInputError(f"got {len(gens)} generators for a batch of {batch}; give one per sample")
        z = torch.stack([torch.randn(shape, generator=g, device=g.device, dtype=torch.float32) for g in gens])
    return pack_latents(z.to(device))


# ----------------------------------------------------------------------------------------------
# weights on disk
# ----------------------------------------------------------------------------------------------
_WEIGHT_FILES = {
    "transformer": ("transformer", "diffusion_pytorch_model"),
    "vae": ("vae", "diffusion_pytorch_model"),
    "text_encoder": ("text_encoder", "model"),
    "text_encoder_2": ("text_encoder_2", "model"),
}
_TOKENIZER_FILES = {
    # a fast tokenizer.json, or the slow tokenizer's own files
    "tokenizer": (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "tokenizer_2": (("tokenizer.json",), ("spiece.model",)),
}


def _expected_layout(components: Sequence[str]) -> list[str]:
    lines = ["transformer/config.json"]
    subs = []
    if "transformer" in components:
        subs.append("transformer")
    if "vae" in components:
        subs.append("vae")
    if "text" in components:
        subs += ["text_encoder", "text_encoder_2"]
    for sub in subs:
        folder, stem = _WEIGHT_FILES[sub]
        if sub != "transformer":
            lines.append(f"{folder}/config.json")
        lines.append(f"{folder}/{stem}.safetensors (or {stem}.safetensors.index.json + its shards)")
    if "text" in components:
        lines.append("tokenizer/tokenizer_config.json + (tokenizer.json or vocab.json + merges.txt)")
        lines.append("tokenizer_2/tokenizer_config.json + (tokenizer.json or spiece.model)")
    return lines


def _missing_weights(root: Path, folder: str, stem: str) -> list[str]:
    d = root / folder
    single = d / f"{stem}.safetensors"
    index = d / f"{stem}.safetensors.index.json"
    if single.is_file():
        return []
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return [f"{folder}/{index.name} (unreadable)"]
        return [f"{folder}/{s}" for s in shards if not (d / s).is_file()]
    pickles = [p.name for p in d.glob("*.bin")] + [p.name for p in d.glob("*.pt")] if d.is_dir() else []
    note = f" (found {', '.join(sorted(pickles))}: only safetensors are loaded)" if pickles else ""
    return [f"{folder}/{stem}.safetensors{note}"]


def check_weights_folder(root: str | os.PathLike[str], components: Sequence[str] = COMPONENTS) -> Path:
    """Check that ``root`` holds the diffusers layout for ``components``; return it as a `Path`.

    Cheap (file-system only, no diffusers import). A missing folder or any missing file raises
    `InvalidInputError` listing every expected file and the missing ones.
    """
    components = _check_components(components)
    root = Path(root).expanduser()
    expected = "\n  ".join(_expected_layout(components))
    if not root.is_dir():
        raise InvalidInputError(
            f"Flux weights folder {str(root)!r} does not exist. Expected the diffusers layout:\n  {expected}\n"
            "Download it on a machine with network access (e.g. `hf download black-forest-labs/FLUX.1-dev "
            "--local-dir DIR`) and pass DIR, or a repository id already in the Hugging Face cache."
        )
    missing: list[str] = []
    if not (root / "transformer" / "config.json").is_file():
        missing.append("transformer/config.json")
    subs = [s for s in ("transformer", "vae") if s in components]
    if "text" in components:
        subs += ["text_encoder", "text_encoder_2"]
    for sub in subs:
        folder, stem = _WEIGHT_FILES[sub]
        if sub != "transformer" and not (root / folder / "config.json").is_file():
            missing.append(f"{folder}/config.json")
        missing += _missing_weights(root, folder, stem)
    if "text" in components:
        for tok, alternatives in _TOKENIZER_FILES.items():
            d = root / tok
            if not (d / "tokenizer_config.json").is_file():
                missing.append(f"{tok}/tokenizer_config.json")
            if not any(all((d / f).is_file() for f in alt) for alt in alternatives):
                missing.append(f"{tok}/" + " or ".join("+".join(alt) for alt in alternatives))
    if missing:
        raise InvalidInputError(
            f"Flux weights folder {str(root)!r} is incomplete for components {list(components)}; missing:\n  "
            + "\n  ".join(missing)
            + f"\nExpected the diffusers layout:\n  {expected}"
        )
    return root


def _hf_cache_snapshot(repo_id: str, cache_dir: str | os.PathLike[str] | None) -> tuple[Path | None, Path]:
    """The local snapshot folder of ``repo_id`` in the Hugging Face cache (no network), and the cache."""
    if cache_dir is None:
        from huggingface_hub import constants  # noqa: PLC0415 (light; keeps module import cheap)

        cache_dir = constants.HF_HUB_CACHE
    repo_dir = Path(cache_dir).expanduser() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = snapshots / ref.read_text().strip()
        if snap.is_dir():
            return snap, repo_dir
    if snapshots.is_dir():
        snaps = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if snaps:
            return snaps[-1], repo_dir
    return None, repo_dir


def _allow_patterns(components: Sequence[str]) -> list[str]:
    pats = ["model_index.json", "scheduler/*", "transformer/config.json"]
    if "transformer" in components:
        pats.append("transformer/*.safetensors*")
    if "vae" in components:
        pats += ["vae/config.json", "vae/*.safetensors"]
    if "text" in components:
        pats += ["text_encoder/*.json", "text_encoder/*.safetensors*", "text_encoder_2/*.json"]
        pats += ["text_encoder_2/*.safetensors*", "tokenizer/*", "tokenizer_2/*"]
    return pats


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def resolve_weights(
    path_or_repo: str | os.PathLike[str],
    *,
    components: Sequence[str] = COMPONENTS,
    local_files_only: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Find the weights folder: a local directory, or a repository id in the Hugging Face cache.

    With ``local_files_only=False`` (and only then) a repository id missing from the cache is
    downloaded (safetensors, configs and tokenizers of ``components`` only). The folder is
    checked with `check_weights_folder` before anything heavy is imported.
    """
    components = _check_components(components)
    if not isinstance(path_or_repo, (str, os.PathLike)) or not str(path_or_repo):
        raise InvalidInputError(f"path_or_repo must be a folder or a repository id, got {path_or_repo!r}")
    text = str(path_or_repo)
    local = Path(text).expanduser()
    if local.is_dir() or not _REPO_ID.match(text):
        return check_weights_folder(local, components)
    snap, repo_dir = _hf_cache_snapshot(text, cache_dir)
    if snap is not None:
        try:
            return check_weights_folder(snap, components)
        except InvalidInputError:
            if local_files_only:
                raise
    elif local_files_only:
        expected = "\n  ".join(_expected_layout(components))
        raise InvalidInputError(
            f"{text!r} is neither a local folder nor in the Hugging Face cache (looked in {str(repo_dir)!r}); "
            f"local_files_only=True, so nothing is downloaded. Expected the diffusers layout:\n  {expected}"
        )
    from huggingface_hub import snapshot_download  # noqa: PLC0415 (network only on explicit request)

    folder = snapshot_download(text, cache_dir=cache_dir, allow_patterns=_allow_patterns(components))
    return check_weights_folder(folder, components)


def _check_components(components: Any) -> tuple[str, ...]:
    if isinstance(components, str):
        components = (components,)
    try:
        comps = tuple(components)
    except TypeError:
        raise InvalidInputError(f"components must be a sequence of names from {COMPONENTS}") from None
    bad = [c for c in comps if c not in COMPONENTS]
    if bad:
        raise InvalidInputError(f"unknown Flux component(s) {bad}; valid components are: {', '.join(COMPONENTS)}")
    return comps


def _transformers_dtype_kwarg() -> str:
    import transformers  # noqa: PLC0415

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _diffusers_dtype_kwarg() -> str:
    """diffusers 0.42 renamed ``torch_dtype`` to ``dtype`` (the old name warns); older releases know only the old."""
    import diffusers  # noqa: PLC0415

    major, minor = (int(p) for p in diffusers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
class FluxModel:
    """FLUX.1 components and the glue between them: encode → field → noise → solve → decode.

    Build with `from_pretrained` (local weights) or `tiny` (random, CPU tests). Components are
    attributes (``transformer``, ``vae``, ``text_encoder``/``tokenizer`` (CLIP-L),
    ``text_encoder_2``/``tokenizer_2`` (T5-XXL)); any may be ``None`` and is loaded on demand
    from ``source`` (`load`) or freed (`unload`).

    Example::

        flux = FluxModel.from_pretrained("/data/FLUX.1-dev", components=("text",))
        cond = flux.encode(["a red fox in the snow"], free_encoders=True)
        flux.load("transformer", "vae")
        field = flux.field(cond, 1024, 1024)
        x1 = field.noise(1, torch.Generator().manual_seed(0))
        x0 = solve(field, x1, solver="euler", grid=field.default_grid(28)).x
        images = flux.decode(x0, 1024, 1024)   # (1, 3, 1024, 1024) in [0, 1]
    """

    def __init__(
        self,
        *,
        transformer: Any = None,
        vae: Any = None,
        text_encoder: Any = None,
        tokenizer: Any = None,
        text_encoder_2: Any = None,
        tokenizer_2: Any = None,
        transformer_config: dict[str, Any] | None = None,
        vae_config: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        max_sequence_length: int | None = None,
        source: Path | None = None,
        name: str = "flux",
        torch_dtype: torch.dtype = torch.bfloat16,
        device: Any = None,
        embedding_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.transformer = transformer
        self.vae = vae
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        if transformer_config is None:
            if transformer is None:
                raise InvalidInputError("FluxModel needs a transformer or its config (transformer_config)")
            transformer_config = dict(transformer.config)
        self.transformer_config = dict(transformer_config)
        self.vae_config = dict(vae_config) if vae_config is not None else (dict(vae.config) if vae is not None else {})
        self.guidance_embeds = bool(self.transformer_config.get("guidance_embeds", False))
        self.variant = "dev" if self.guidance_embeds else "schnell"
        self.schedule = dict(schedule) if schedule is not None else dict(DEFAULT_SCHEDULES[self.variant])
        self.max_sequence_length = int(max_sequence_length or MAX_SEQUENCE_LENGTH[self.variant])
        self.source = source
        self.name = name
        self.dtype = torch_dtype
        self.device = torch.device(device) if device is not None else default_device()
        self.embedding_cache = Path(embedding_cache).expanduser() if embedding_cache is not None else None

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike[str],
        *,
        torch_dtype: torch.dtype = torch.bfloat16,
        device: Any = None,
        local_files_only: bool = True,
        components: Sequence[str] = COMPONENTS,
        cache_dir: str | os.PathLike[str] | None = None,
        embedding_cache: str | os.PathLike[str] | None | bool = True,
        max_sequence_length: int | None = None,
    ) -> FluxModel:
        """Load FLUX.1 from a local folder (diffusers layout) or the local Hugging Face cache.

        ``components`` ⊆ ``("transformer", "vae", "text")`` are loaded now (``"text"`` = both
        encoders and tokenizers); the others can be loaded later with `load`. The folder is
        checked first (file system only), so a missing or partial download fails at once.
        schnell vs dev is read from ``transformer/config.json`` (``guidance_embeds``); T5 max
        length is 512 for dev and 256 for schnell unless ``max_sequence_length`` is given (or the
        folder has the ``odeflow_flux.json`` that `save_pretrained` writes).
        ``embedding_cache``: a folder for cached prompt embeddings, ``True`` for the default
        (``$ODEFLOW_FLUX_CACHE`` or ``~/.cache/odeflow/flux-embeddings``), ``False``/``None`` for none.
        """
        if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
            raise InvalidInputError(
                f"torch_dtype must be a floating torch.dtype (e.g. torch.bfloat16), got {torch_dtype!r}"
            )
        components = _check_components(components)
        root = resolve_weights(
            path_or_repo, components=components, local_files_only=local_files_only, cache_dir=cache_dir
        )
        transformer_config = json.loads((root / "transformer" / "config.json").read_text())
        vae_config_path = root / "vae" / "config.json"
        vae_config = json.loads(vae_config_path.read_text()) if vae_config_path.is_file() else None
        guidance = bool(transformer_config.get("guidance_embeds", False))
        schedule = dict(DEFAULT_SCHEDULES["dev" if guidance else "schnell"])
        sched_path = root / "scheduler" / "scheduler_config.json"
        if sched_path.is_file():
            cfg = json.loads(sched_path.read_text())
            schedule.update({k: cfg[k] for k in schedule if k in cfg})
        extra_path = root / ODEFLOW_CONFIG
        if max_sequence_length is None and extra_path.is_file():
            max_sequence_length = json.loads(extra_path.read_text()).get("max_sequence_length")
        if embedding_cache is True:
            embedding_cache = _default_embedding_cache()
        elif embedding_cache is False:
            embedding_cache = None
        model = cls(
            transformer_config=transformer_config,
            vae_config=vae_config,
            schedule=schedule,
            max_sequence_length=max_sequence_length,
            source=root,
            name=str(path_or_repo),
            torch_dtype=torch_dtype,
            device=device,
            embedding_cache=embedding_cache,
        )
        model.load(*components)
        return model

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        guidance_embeds: bool = True,
        *,
        torch_dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        max_sequence_length: int = 16,
        embedding_cache: str | os.PathLike[str] | None = None,
    ) -> FluxModel:
        """A random tiny FLUX.1 of the real architecture, for CPU tests.

        Transformer: diffusers' ``FluxTransformer2DModel`` with 1 double + 1 single block,
        2 heads of 16, T5/CLIP dims 32, rope axes (4, 4, 8), ``in_channels = 64`` (packed
        16-channel latents) — 82 k parameters. VAE: ``AutoencoderKL`` with two blocks
        (2× down-sampling, so images are twice the latent size), 16 latent channels and Flux's
        scaling/shift factors. Text: one-layer CLIP and T5 encoders with word-level tokenizers.
        The same ``seed`` always gives the same weights; the global RNG is left untouched.
        """
        from diffusers import AutoencoderKL, FluxTransformer2DModel  # noqa: PLC0415
        from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel  # noqa: PLC0415

        check_positive(max_sequence_length, "max_sequence_length", integer=True)
        clip_tok, t5_tok = _tiny_tokenizers()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer = FluxTransformer2DModel(**_tiny_transformer_config(guidance_embeds))
            vae = AutoencoderKL(**_tiny_vae_config())
            clip = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=len(clip_tok),
                    hidden_size=32,
                    intermediate_size=37,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    max_position_embeddings=77,
                    projection_dim=32,
                    bos_token_id=0,
                    eos_token_id=1,
                    pad_token_id=1,
                )
            )
            t5 = T5EncoderModel(
                T5Config(
                    vocab_size=len(t5_tok),
                    d_model=32,
                    d_kv=16,
                    d_ff=37,
                    num_layers=1,
                    num_heads=2,
                    relative_attention_num_buckets=8,
                    pad_token_id=0,
                    eos_token_id=1,
                    decoder_start_token_id=0,
                )
            )
        for m in (transformer, vae, clip, t5):
            m.to(device)  # built in float32; cast only when asked (diffusers warns on any dtype cast)
            if torch_dtype != torch.float32:
                m.to(torch_dtype)
            m.eval()
        variant = "dev" if guidance_embeds else "schnell"
        return cls(
            transformer=transformer,
            vae=vae,
            text_encoder=clip,
            tokenizer=clip_tok,
            text_encoder_2=t5,
            tokenizer_2=t5_tok,
            schedule=dict(DEFAULT_SCHEDULES[variant]),
            max_sequence_length=max_sequence_length,
            name=f"tiny-{variant}-seed{seed}",
            torch_dtype=torch_dtype,
            device=device,
            embedding_cache=embedding_cache,
        )

    # --- components ---------------------------------------------------------------------------
    def loaded(self) -> tuple[str, ...]:
        """Which of `COMPONENTS` are in memory."""
        have = {"transformer": self.transformer, "vae": self.vae, "text": self.text_encoder_2}
        return tuple(c for c in COMPONENTS if have[c] is not None)

    def load(self, *components: str) -> FluxModel:
        """Load ``components`` (from `COMPONENTS`) from ``source`` onto ``device`` in ``dtype``."""
        comps = _check_components(components)
        todo = [c for c in comps if c not in self.loaded()]
        if not todo:
            return self
        if self.source is None:
            raise InvalidInputError(
                f"components {todo} are not loaded and this model has no weights folder to load them from"
            )
        check_weights_folder(self.source, todo)
        kw = {"local_files_only": True, "use_safetensors": True, _diffusers_dtype_kwarg(): self.dtype}
        if "text" in todo:
            from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel  # noqa: PLC0415

            tkw = {"local_files_only": True, "use_safetensors": True, _transformers_dtype_kwarg(): self.dtype}
            self.tokenizer = AutoTokenizer.from_pretrained(self.source / "tokenizer", local_files_only=True)
            self.tokenizer_2 = AutoTokenizer.from_pretrained(self.source / "tokenizer_2", local_files_only=True)
            self.text_encoder = CLIPTextModel.from_pretrained(self.source / "text_encoder", **tkw)
            self.text_encoder_2 = T5EncoderModel.from_pretrained(self.source / "text_encoder_2", **tkw)
            self.text_encoder.to(self.device).eval()
            self.text_encoder_2.to(self.device).eval()
        if "vae" in todo:
            from diffusers import AutoencoderKL  # noqa: PLC0415

            self.vae = AutoencoderKL.from_pretrained(self.source, subfolder="vae", **kw)
            self.vae.to(self.device).eval()
            self.vae_config = dict(self.vae.config)
        if "transformer" in todo:
            from diffusers import FluxTransformer2DModel  # noqa: PLC0415

            self.transformer = FluxTransformer2DModel.from_pretrained(
                self.source, subfolder="transformer", **kw
            )
            self.transformer.to(self.device).eval()
        return self

    def unload(self, *components: str) -> FluxModel:
        """Drop ``components`` from memory (and the CUDA cache); `load` brings them back."""
        for c in _check_components(components):
            if c == "transformer":
                self.transformer = None
            elif c == "vae":
                self.vae = None
            else:
                self.text_encoder = self.text_encoder_2 = None
                self.tokenizer = self.tokenizer_2 = None
        _free_memory()
        return self

    def _require(self, component: str) -> None:
        if component not in self.loaded():
            if self.source is None:
                raise InvalidInputError(f"the {component!r} component is not loaded and there is no folder to load it")
            self.load(component)

    # --- geometry --------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell: ``2 ** (len(block_out_channels) - 1)`` (8 for FLUX.1)."""
        blocks = self.vae_config.get("block_out_channels")
        return 2 ** (len(blocks) - 1) if blocks else 8

    @property
    def latent_channels(self) -> int:
        return int(self.transformer_config.get("in_channels", 4 * LATENT_CHANNELS)) // 4

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent ``(h, w)`` of a ``height × width`` image; both must be multiples of ``2 · vae_scale_factor``."""
        step = 2 * self.vae_scale_factor
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % step:
                raise InvalidInputError(
                    f"{name} must be a positive multiple of {step} pixels (VAE factor {self.vae_scale_factor} "
                    f"× 2×2 packing), got {v!r}"
                )
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    def image_seq_len(self, height: int, width: int) -> int:
        """Number of image tokens, ``(h/2)(w/2)`` — the ``image_seq_len`` of `solvers.grids.flux`."""
        h, w = self.latent_size(height, width)
        return (h // 2) * (w // 2)

    # --- prompts ---------------------------------------------------------------------------------
    def _cache_key(self, prompt: str) -> str:
        ident = {
            "model": self.name,
            "source": str(self.source) if self.source is not None else None,
            "files": _text_weight_fingerprint(self.source),
            "dtype": str(self.dtype),
            "max_sequence_length": self.max_sequence_length,
            "prompt": prompt,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]

    def encode(
        self,
        prompts: str | Sequence[str],
        *,
        cache_dir: str | os.PathLike[str] | None | bool = None,
        free_encoders: bool = False,
        batch_size: int = 8,
    ) -> FluxCondition:
        """CLIP-L pooled + T5-XXL sequence embeddings of ``prompts``, as diffusers' ``FluxPipeline``.

        CLIP: tokens padded to 77, ``pooler_output``; T5: tokens padded to ``max_sequence_length``
        (512 dev, 256 schnell), last hidden state; no attention masks (as in the pipeline). Each
        embedding is cached on disk (one safetensors file per prompt, keyed by prompt and model)
        in ``cache_dir`` (default: the model's ``embedding_cache``; ``False`` disables); cached
        prompts need no text encoder at all. ``free_encoders=True`` unloads the encoders after.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts) if isinstance(prompts, Sequence) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise InvalidInputError("prompts must be a string or a non-empty list of strings")
        if cache_dir is None:
            folder = self.embedding_cache
        elif cache_dir is False:
            folder = None
        elif cache_dir is True:
            folder = _default_embedding_cache()
        else:
            folder = Path(cache_dir).expanduser()
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        unique = list(dict.fromkeys(prompts))
        if folder is not None:
            for p in unique:
                hit = _read_embedding(folder / f"{self._cache_key(p)}.safetensors", p)
                if hit is not None:
                    found[p] = hit
        todo = [p for p in unique if p not in found]
        if todo:
            self._require("text")
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                pe, pp = self._encode_batch(chunk)
                for j, p in enumerate(chunk):
                    found[p] = (pe[j].cpu(), pp[j].cpu())
                    if folder is not None:
                        _write_embedding(folder / f"{self._cache_key(p)}.safetensors", p, *found[p])
        if free_encoders:
            self.unload("text")
        pe = torch.stack([found[p][0] for p in prompts]).to(self.device)
        pp = torch.stack([found[p][1] for p in prompts]).to(self.device)
        return FluxCondition(pe, pp, tuple(prompts))

    @torch.no_grad()
    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        kw = {"padding": "max_length", "truncation": True, "return_tensors": "pt"}
        dev = next(self.text_encoder.parameters()).device
        ids = self.tokenizer(prompts, max_length=self.tokenizer.model_max_length, **kw).input_ids
        pooled = self.text_encoder(ids.to(dev), output_hidden_states=False).pooler_output
        ids2 = self.tokenizer_2(prompts, max_length=self.max_sequence_length, **kw).input_ids
        embeds = self.text_encoder_2(ids2.to(dev), output_hidden_states=False)[0]
        return embeds.to(self.text_encoder_2.dtype), pooled.to(self.text_encoder.dtype)

    # --- sampling -------------------------------------------------------------------------------
    def field(
        self, cond: FluxCondition, height: int, width: int, guidance: float | None = 3.5, *, grad: bool = False
    ) -> FluxField:
        """The PF-ODE field of ``height × width`` images (pixels) under ``cond``.

        ``guidance`` is the distilled guidance scale of dev (3.5 by default; required there);
        schnell has no guidance input and ignores it. ``grad=True`` keeps autograd on (memory!).
        """
        if not isinstance(cond, FluxCondition):
            raise InvalidInputError(f"cond must be a FluxCondition from FluxModel.encode, got {type(cond).__name__}")
        h, w = self.latent_size(height, width)
        self._require("transformer")
        if self.guidance_embeds:
            if guidance is None or isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
                raise InvalidInputError(
                    f"FLUX.1 {self.variant} embeds the guidance scale: pass a number (3.5 is the default), "
                    f"got {guidance!r}"
                )
            guidance = float(guidance)
        else:
            guidance = None
        dim = int(self.transformer_config.get("joint_attention_dim", 4096))
        pdim = int(self.transformer_config.get("pooled_projection_dim", 768))
        if cond.prompt_embeds.shape[-1] != dim or cond.pooled.shape[-1] != pdim:
            raise InvalidInputError(
                f"conditions have dims ({cond.prompt_embeds.shape[-1]}, {cond.pooled.shape[-1]}); this transformer "
                f"takes T5 dim {dim} and CLIP pooled dim {pdim}"
            )
        return FluxField(
            self.transformer,
            cond,
            latent_height=h,
            latent_width=w,
            guidance=guidance,
            schedule=self.schedule,
            grad=grad,
        )

    def noise(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Packed float32 noise ``(batch, tokens, 64)`` for ``height × width`` images, on ``device``.

        Drawn as diffusers does — ``randn((batch, 16, h, w))`` on the generator's device, then
        packed — so equal generators give equal latents. A list of generators draws each sample
        from its own (a sample's noise then depends only on its seed, not on the batching).
        """
        h, w = self.latent_size(height, width)
        return _packed_noise(batch, h, w, generator, self.device, self.latent_channels)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Images ``(B, 3, height, width)``, float32 in [0, 1], from packed latents.

        $z = x/s + b$ with the VAE's ``scaling_factor`` $s$ and ``shift_factor`` $b$, then the
        VAE decoder in its own dtype; the decoder's [-1, 1] output is mapped to [0, 1] and clamped.
        """
        h, w = self.latent_size(height, width)
        self._require("vae")
        z = unpack_latents(latents, h, w)
        scale = float(self.vae.config.scaling_factor)
        shift = float(self.vae.config.shift_factor or 0.0)
        param = next(self.vae.parameters())
        z = (z.to(device=param.device, dtype=torch.float32) / scale + shift).to(param.dtype)
        images = self.vae.decode(z, return_dict=False)[0]
        return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    # --- saving -----------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write the loaded components in the diffusers layout (safetensors), with a scheduler config.

        The result loads with `from_pretrained` (and with diffusers' ``FluxPipeline.from_pretrained``
        when every component is present).
        """
        if self.transformer is None:
            raise InvalidInputError("save_pretrained needs the transformer loaded (load('transformer'))")
        root = Path(folder).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(root / "transformer", safe_serialization=True)
        if self.vae is not None:
            self.vae.save_pretrained(root / "vae", safe_serialization=True)
        if self.text_encoder is not None:
            self.text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
            self.text_encoder_2.save_pretrained(root / "text_encoder_2", safe_serialization=True)
            self.tokenizer.save_pretrained(root / "tokenizer")
            self.tokenizer_2.save_pretrained(root / "tokenizer_2")
        sched = {
            "_class_name": "FlowMatchEulerDiscreteScheduler",
            "num_train_timesteps": 1000,
            "base_image_seq_len": 256,
            "max_image_seq_len": 4096,
            **self.schedule,
        }
        (root / "scheduler").mkdir(exist_ok=True)
        (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))

        def entry(obj: Any, library: str) -> list[str | None]:
            return [library, type(obj).__name__] if obj is not None else [None, None]

        index = {
            "_class_name": "FluxPipeline",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "transformer": entry(self.transformer, "diffusers"),
            "vae": entry(self.vae, "diffusers"),
            "text_encoder": entry(self.text_encoder, "transformers"),
            "text_encoder_2": entry(self.text_encoder_2, "transformers"),
            "tokenizer": entry(self.tokenizer, "transformers"),
            "tokenizer_2": entry(self.tokenizer_2, "transformers"),
        }
        (root / "model_index.json").write_text(json.dumps(index, indent=2))
        # what the diffusers layout does not record: the T5 length this model was encoded with
        (root / ODEFLOW_CONFIG).write_text(json.dumps({"max_sequence_length": self.max_sequence_length}, indent=2))
        return root

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: variant, source, dtype, device, sizes, schedule."""
        n_params = sum(p.numel() for p in self.transformer.parameters()) if self.transformer is not None else None
        return {
            "name": self.name,
            "variant": self.variant,
            "guidance_embeds": self.guidance_embeds,
            "source": str(self.source) if self.source is not None else None,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "transformer_params": n_params,
            "max_sequence_length": self.max_sequence_length,
            "vae_scale_factor": self.vae_scale_factor,
            "schedule": self.schedule,
            "loaded": list(self.loaded()),
        }

    def __repr__(self) -> str:
        return (
            f"FluxModel({self.name!r}, variant={self.variant!r}, dtype={self.dtype}, device={self.device}, "
            f"loaded={list(self.loaded())})"
        )


# ----------------------------------------------------------------------------------------------
# embedding cache
# ----------------------------------------------------------------------------------------------
def _default_embedding_cache() -> Path:
    """``$ODEFLOW_FLUX_CACHE``, else ``~/.cache/odeflow/flux-embeddings``."""
    return Path(os.environ.get(EMBEDDING_CACHE_ENV, "~/.cache/odeflow/flux-embeddings")).expanduser()


def _text_weight_fingerprint(source: Path | None) -> list[Any] | None:
    """Names and sizes of the text-encoder weight files: changes when the weights do (no hashing of GBs)."""
    if source is None:
        return None
    out = []
    for sub in ("text_encoder", "text_encoder_2"):
        d = source / sub
        if d.is_dir():
            out += [[f"{sub}/{p.name}", p.stat().st_size] for p in sorted(d.glob("*.safetensors"))]
    return out


def _read_embedding(path: Path, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.is_file():
        return None
    from safetensors import safe_open  # noqa: PLC0415

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("prompt") != prompt:
                return None
            return f.get_tensor("prompt_embeds"), f.get_tensor("pooled")
    except Exception:  # noqa: BLE001 (a torn or foreign file is a cache miss, rewritten below)
        return None


def _write_embedding(path: Path, prompt: str, prompt_embeds: torch.Tensor, pooled: torch.Tensor) -> None:
    """Atomic write: a temporary file in the same folder, then ``os.replace``."""
    from safetensors.torch import save_file  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        tensors = {"prompt_embeds": prompt_embeds.contiguous(), "pooled": pooled.contiguous()}
        save_file(tensors, tmp, metadata={"prompt": prompt})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------------------------
# tiny configs (diffusers' own test sizes, with packed 16-channel latents)
# ----------------------------------------------------------------------------------------------
def _tiny_transformer_config(guidance_embeds: bool) -> dict[str, Any]:
    return {
        "patch_size": 1,
        "in_channels": 4 * LATENT_CHANNELS,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "guidance_embeds": bool(guidance_embeds),
        "axes_dims_rope": [4, 4, 8],
    }


def _tiny_vae_config() -> dict[str, Any]:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "latent_channels": LATENT_CHANNELS,
        "norm_num_groups": 4,
        "sample_size": 32,
        "scaling_factor": VAE_SCALING_FACTOR,
        "shift_factor": VAE_SHIFT_FACTOR,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
    }


TINY_WORDS = (
    "a an the of in on at with and by from under over photo painting drawing portrait landscape "
    "cat dog fox owl horse bird fish tree forest mountain river lake sea city street house castle "
    "red blue green yellow black white golden snowy misty sunny night morning evening old small big "
    "sitting standing running flying reading book table window light sky clouds snow rain flowers"
).split()


def _tiny_tokenizers() -> tuple[Any, Any]:
    """Word-level stand-ins for the CLIP and T5 tokenizers (same call interface, tiny vocabularies)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    def build(specials: list[str], template: str, bos: str | None, eos: str, pad: str) -> Any:
        vocab = {tok: i for i, tok in enumerate(specials)}
        for w in TINY_WORDS:
            vocab.setdefault(w, len(vocab))
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        used = [s for s in specials if s in template]
        specials_used = [(s, vocab[s]) for s in used]
        tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials_used)
        kw = {"bos_token": bos} if bos else {}
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, eos_token=eos, pad_token=pad, unk_token="<unk>", model_max_length=77, **kw
        )

    # CLIP: bos 0, eos 1 (= pad; CLIP pools at the first eos), unk 2
    clip = build(
        ["<|startoftext|>", "<|endoftext|>", "<unk>"],
        "<|startoftext|> $A <|endoftext|>",
        "<|startoftext|>",
        "<|endoftext|>",
        "<|endoftext|>",
    )
    # T5: pad 0, eos 1, unk 2 (as the real T5 vocabulary)
    t5 = build(["<pad>", "</s>", "<unk>"], "$A </s>", None, "</s>", "<pad>")
    return clip, t5
