"""Draw the pictures of docs/toys.md: samples of every toy and its exact PF-ODE field.

Run from the repository root::

    .venv/bin/python docs/make_toy_figures.py            # writes docs/img/toys/<name>.png

One row per toy: 4000 samples, then the marginal density p_t (shading) and the streamlines of
the exact sampling direction -v(t, x) on the linear path at t = 0.9, 0.5, 0.1 (integrating
dx/dt = v from t = 1 down to 0 moves a point along -v). Deterministic (fixed seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from models import toys  # noqa: E402
from odeflow.paths import LinearPath  # noqa: E402

TIMES = (0.9, 0.5, 0.1)
LIMIT = 4.5
# 2-D versions of the n-D toys for the pictures
PICTURE_PARAMS = {"gaussian": {"d": 2}, "random_gmm": {"d": 2, "k": 6, "seed": 0}}


def draw(name: str, out_dir: Path, grid: int = 80, n_samples: int = 4000) -> Path:
    gm = toys.get(name, **PICTURE_PARAMS.get(name, {}))
    path = LinearPath()
    x = gm.sample(n_samples, generator=torch.Generator().manual_seed(0)).numpy()
    axis = np.linspace(-LIMIT, LIMIT, grid)
    gx, gy = np.meshgrid(axis, axis)
    points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))

    fig, axes = plt.subplots(1, 1 + len(TIMES), figsize=(3.2 * (1 + len(TIMES)), 3.2))
    axes[0].scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color="tab:blue", linewidths=0)
    axes[0].set_title(f"{name}: samples (t = 0)", fontsize=9)
    for ax, t in zip(axes[1:], TIMES):
        density = gm.marginal(t, path).log_prob(points).exp().reshape(grid, grid).numpy()
        v = -gm.velocity(t, points, path).reshape(grid, grid, 2).numpy()
        ax.imshow(density, extent=(-LIMIT, LIMIT, -LIMIT, LIMIT), origin="lower", cmap="Greys", alpha=0.8)
        speed = np.hypot(v[..., 0], v[..., 1])
        ax.streamplot(gx, gy, v[..., 0], v[..., 1], color=speed, cmap="viridis", density=0.9, linewidth=0.6,
                      arrowsize=0.6)
        ax.set_title(f"-v(t, x) and p_t, t = {t}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_aspect("equal")
        ax.set_xticks([-4, 0, 4])
        ax.set_yticks([-4, 0, 4])
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.png"
    fig.savefig(target, dpi=80)
    plt.close(fig)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "img" / "toys")
    parser.add_argument("names", nargs="*", default=toys.names())
    args = parser.parse_args()
    for name in args.names:
        print(draw(name, args.out))


if __name__ == "__main__":
    main()
