"""One way to style, show and save figures, and the plot pieces several notebooks share.

The figures of each notebook are functions of a module of this package (`plotting.mixtures.grid_heatmaps(...)`),
imported on first use: `dataset` (00), `closed_form` (01), `training` (02), `linearity` (03), `dynamics` (04),
`mixtures` (05), `trajectories` (06), `teleportation` (07), `summary` (08) and `gains` (the per-mode gains of
03, 04, 06 and 08). Each takes what it draws and returns the figure; the notebook saves and shows it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from lib.core import paths

INLINE_DPI = 100
FILE_DPI = 150
MAX_FIGURE_BYTES = 500_000


def setup_style() -> None:
    """Readable defaults: seaborn's ticks style, 100 dpi inline, 150 dpi files."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="ticks", palette="colorblind")
    plt.rcParams.update({
        "figure.dpi": INLINE_DPI,
        "savefig.dpi": FILE_DPI,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "image.cmap": "gray",
    })


def save_figure(fig: plt.Figure, name: str, scale: str) -> Path:
    """Save `fig` as `<figures_dir(scale)>/<name>.png` at 150 dpi and return the path.

    The default scale writes the committed `figures/`; other scales write under `data/scales/`.
    """
    path = paths.figures_dir(scale) / f"{name}.png"
    with paths.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=FILE_DPI, format="png")
    if path.stat().st_size > MAX_FIGURE_BYTES:
        warnings.warn(f"{path.name} is {path.stat().st_size // 1000} KB (> 500 KB): simplify it", stacklevel=2)
    return path


def to_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) in [-1, 1] -> (N, H, W) float array in [0, 1] for imshow; (N, 3, H, W) colour
    images -> (N, H, W, 3)."""
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4:
        arr = arr.transpose(0, 2, 3, 1) if arr.shape[1] == 3 else arr[:, 0]
    return np.clip((arr + 1.0) / 2.0, 0.0, 1.0)


def tile_images(images: torch.Tensor | np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile N images into one (rows*H, ncols*W) mosaic (with a trailing colour axis for RGB) with `pad` white
    pixels between them."""
    imgs = to_numpy_images(images)
    n, h, w = imgs.shape[:3]
    nrows = int(np.ceil(n / ncols))
    canvas = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, *imgs.shape[3:]))
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return canvas


def tile_centres(count: int, size: int, pad: int = 1) -> list[float]:
    """Pixel coordinates of the centres of `count` tiles of side `size` in a `tile_images` mosaic (for ticks)."""
    return [size / 2 + j * (size + pad) for j in range(count)]


def show_images(ax: plt.Axes, images: torch.Tensor | np.ndarray, ncols: int, title: str | None = None) -> None:
    """Draw a tiled grid of images (pixels in [-1, 1]; grey or RGB) on `ax`, without ticks."""
    ax.imshow(tile_images(images, ncols), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)


def show_signed_image(ax: plt.Axes, image: torch.Tensor | np.ndarray, title: str | None = None) -> None:
    """A signed map (a principal component, a residual) with a symmetric diverging colour scale; a colour (3, H, W)
    map is drawn as an RGB image with zero at mid-grey."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    bound = float(np.abs(arr).max()) or 1.0
    if arr.size == 3 * arr.shape[-2] * arr.shape[-1] and arr.ndim >= 3:
        rgb = arr.reshape(3, arr.shape[-2], arr.shape[-1]).transpose(1, 2, 0)
        ax.imshow((rgb / bound + 1.0) / 2.0, interpolation="nearest")
    else:
        arr = arr.reshape(arr.shape[-2], arr.shape[-1])
        ax.imshow(arr, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=9)


def mark_variance_scales(
    ax: plt.Axes,
    eigvals: torch.Tensor | np.ndarray,
    components: Sequence[int] = (1, 10, 100),
    trace_scale: bool = True,
    axis: str = "x",
) -> None:
    """Mark sigma = sqrt(lambda_k) for the given 1-based components, and sqrt(tr Sigma), on a sigma axis.

    Principal component k is "decided" by the diffusion when sigma^2 ~ lambda_k; above sqrt(tr Sigma)
    the noise dominates every direction (the naive validity scale of the Gaussian approximation).
    """
    lam = np.asarray(eigvals.cpu() if isinstance(eigvals, torch.Tensor) else eigvals, dtype=float)
    line = ax.axvline if axis == "x" else ax.axhline
    for k in components:
        if k <= len(lam) and lam[k - 1] > 0:
            line(np.sqrt(lam[k - 1]), color="0.45", lw=0.8, ls=":", zorder=0)
            transform = ax.get_xaxis_transform() if axis == "x" else ax.get_yaxis_transform()
            pos = (np.sqrt(lam[k - 1]), 0.98) if axis == "x" else (0.98, np.sqrt(lam[k - 1]))
            ax.text(*pos, f"$\\sqrt{{\\lambda_{{{k}}}}}$", transform=transform, fontsize=7, color="0.35",
                    ha="right" if axis == "x" else "right", va="top", rotation=90 if axis == "x" else 0)
    if trace_scale:
        root_trace = float(np.sqrt(lam.sum()))
        line(root_trace, color="k", lw=1.0, ls="--", zorder=0)
        transform = ax.get_xaxis_transform() if axis == "x" else ax.get_yaxis_transform()
        pos = (root_trace, 0.02) if axis == "x" else (0.02, root_trace)
        ax.text(*pos, r"$\sqrt{\mathrm{tr}\,\Sigma}$", transform=transform, fontsize=8, color="k",
                ha="right", va="bottom", rotation=90 if axis == "x" else 0)


#: Fixed colours per analytic model, so every linearity figure reads the same way.
MODEL_COLOURS = {"mean": "0.15", "mean_std": "0.6", "gaussian": "C0", "delta": "C3"}
MODEL_LABELS = {"mean": "mean", "mean_std": "mean + std (isotropic)", "gaussian": "Gaussian",
                "delta": "training set (delta mixture)"}


FAMILY_COLOURS = {"gmm": ["C2", "C4", "C8", "C6", "C1"], "gaussian_rank": ["C9", "C5", "C7"]}


def model_style(name: str, index: int = 0) -> dict:
    """Colour and label of a model by its table name; `index` is its position among models of its family
    (`gmm<K>` or `gaussian_rank<r>`), so that mixtures and ranks get distinct colours."""
    if name in MODEL_COLOURS:
        return {"color": MODEL_COLOURS[name], "label": MODEL_LABELS[name]}
    if name.startswith("gaussian_rank"):
        colours = FAMILY_COLOURS["gaussian_rank"]
        label = f"Gaussian, rank {name[len('gaussian_rank'):]}"
    elif name.startswith("gmm"):
        colours = FAMILY_COLOURS["gmm"]
        label = f"Gaussian mixture K={name[3:].replace('_rank', ', rank ')}"
    else:
        colours, label = ["C1"], name
    return {"color": colours[index % len(colours)], "label": label}


def _family(name: str) -> str:
    return "gaussian_rank" if name.startswith("gaussian_rank") else "gmm" if name.startswith("gmm") else name


def plot_residual_curves(ax: plt.Axes, table, x: str, column: str = "St_EV", models: Sequence[str] | None = None,
                         probe_sets: Sequence[str] = ("train", "test"), floor: float = 1e-7,
                         xscale: str | None = None, errorbars: bool = False) -> None:
    """Residual 1 - EV against `x` ("sigma" or "step") on a log y axis: one colour per model, solid lines for
    training-set probes and dashed for held-out test probes. The x axis is logarithmic for sigma and
    symlog for steps unless `xscale` says otherwise; `errorbars` shades +-1 standard error of the mean
    over probes (`<column>_std / sqrt(n_probes)`) where the table has them."""
    models = list(dict.fromkeys(table["model"])) if models is None else list(models)
    styles = {"train": "-", "test": "--"}
    families = [_family(name) for name in models]
    for i, name in enumerate(models):
        style = model_style(name, families[:i].count(families[i]))
        for probe_set in probe_sets:
            rows = table[(table["model"] == name) & (table["probe_set"] == probe_set)].sort_values(x)
            if rows.empty:
                continue
            values = np.clip(1.0 - rows[column].to_numpy(), floor, None)
            ax.plot(rows[x].to_numpy(), values, styles.get(probe_set, ":"), color=style["color"], marker=".",
                    label=style["label"] if probe_set == probe_sets[0] else None)
            if errorbars and f"{column}_std" in rows and "n_probes" in rows:
                se = rows[f"{column}_std"].to_numpy() / np.sqrt(rows["n_probes"].to_numpy())
                ax.fill_between(rows[x].to_numpy(), np.clip(values - se, floor, None), values + se,
                                color=style["color"], alpha=0.2, lw=0)
    ax.set_yscale("log")
    if xscale is not None:
        ax.set_xscale(xscale)
    else:
        ax.set_xscale("symlog", linthresh=10) if x == "step" else ax.set_xscale("log")


#: The figure modules, one per notebook (and `gains` for the per-mode gains of several).
FIGURE_MODULES = ("closed_form", "dataset", "dynamics", "gains", "linearity", "mixtures", "summary", "teleportation",
                  "training", "trajectories")


def __getattr__(name: str):
    """A figure module (`plotting.mixtures`, ...), imported on first use."""
    if name in FIGURE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
