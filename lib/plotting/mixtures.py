"""Figures of notebook 05 (Gaussian mixtures, claim C4): the grid of mixtures against the network, longer training,
the score-matching loss of the mixtures, and score fields in a plane through three training images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm

from lib import verdicts

#: The heat maps' colour scale spans 1/10 to 10; cells beyond take the end colours.
RATIO_RANGE = 10.0
#: The early-against-final plot stops at sigma = 1: the claim lives at sigma <= 0.2 (shaded).
LOW_VIEW = 1.0
#: The training set's loss on its own images at low noise is ~0: drawn at this floor.
LOSS_FLOOR = 1e-3


def grid_heatmaps(ratios: dict[float, np.ndarray], ks: Sequence[int], ranks: Sequence[str],
                  final_step: int) -> plt.Figure:
    """One heat map per noise level over (components K, rank): each mixture's residual 1 - EV against the final
    network divided by the training set's (`ratios`, by sigma; < 1, blue: closer to the network than the training
    set), the best mixture boxed."""
    norm = LogNorm(vmin=1 / RATIO_RANGE, vmax=RATIO_RANGE)
    sigmas = list(ratios)
    ncols = 4
    nrows = int(np.ceil(len(sigmas) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols + 1.2, 2.3 * nrows), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for ax, sigma in zip(axes.flat, sigmas, strict=False):
        cells = ratios[sigma]
        image = ax.imshow(cells, norm=norm, cmap="RdBu_r", aspect="auto", origin="lower")
        i, j = np.unravel_index(np.nanargmin(cells), cells.shape)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=1.5))
        ax.set_title(f"σ = {sigma:g}", fontsize=10)
        ax.grid(False)
    for ax in axes.flat[len(sigmas):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xticks(range(len(ranks)), ranks, rotation=90, fontsize=7)
        ax.set_xlabel("component rank", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(ks)), ks, fontsize=7)
        ax.set_ylabel("components K", fontsize=9)
    bar = fig.colorbar(image, ax=axes, shrink=0.6, extend="both",
                       label="mixture's 1 − EV ÷ training set's 1 − EV\n"
                             "(< 1: closer to the network than the training set)")
    bar.set_ticks([0.1, 0.2, 0.5, 1, 2, 5, 10], labels=["0.1", "0.2", "0.5", "1", "2", "5", "10"])
    fig.suptitle(f"Gaussian mixtures against the final network (step {final_step}), training probes; "
                 "black box: best mixture", fontsize=11)
    return fig


def residual_vs_components_and_rank(train_final: pd.DataFrame, delta_final: pd.DataFrame, show_sigmas: Sequence[float],
                                    ks: Sequence[int], ranks: Sequence[str], n_train: int) -> plt.Figure:
    """Left: the full-rank mixtures' residual 1 - EV against the number of components K at a few noise levels, the
    training set (K = n_train) starred; right: against the component rank for a few K at sigma = 0.1 and 1."""
    fig, (ax_k, ax_r) = plt.subplots(1, 2, figsize=(15, 5), layout="constrained")
    colours = plt.cm.plasma(np.linspace(0, 0.9, len(show_sigmas)))
    for colour, sigma in zip(colours, show_sigmas, strict=True):
        rows = train_final[(train_final["sigma"] == sigma) & (train_final["rank"] == "full")].sort_values("K")
        ax_k.plot(rows["K"], 1 - rows["St_EV"], marker="o", color=colour, label=f"σ = {sigma:g}")
        ax_k.plot([n_train], [1 - delta_final.loc[("train", sigma), "St_EV"]], marker="*", ms=12, color=colour)
        ax_k.hlines(1 - delta_final.loc[("train", sigma), "St_EV"], ks[0], n_train, colors=[colour], ls="--", lw=0.8)
    ax_k.set(xscale="log", yscale="log", xlabel="components K (★: the training set, K = N)",
             ylabel="1 − EV (network's score)", title="Full-rank mixtures against K")
    ax_k.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rank_x = {r: i for i, r in enumerate(ranks)}
    for ls, sigma in zip(["-", "--"], [0.1, 1.0], strict=True):
        for colour, k in zip(["tab:green", "tab:purple", "tab:brown"], [k for k in (10, 100, ks[-1]) if k in ks],
                             strict=False):
            rows = train_final[(train_final["sigma"] == sigma) & (train_final["K"] == k)]
            rows = rows.assign(x=rows["rank"].map(rank_x)).sort_values("x")
            ax_r.plot(rows["x"], 1 - rows["St_EV"], ls=ls, marker="o", color=colour, label=f"K = {k}, σ = {sigma:g}")
        ax_r.axhline(1 - delta_final.loc[("train", sigma), "St_EV"], color="k", ls=ls, lw=1.2,
                     label=f"training set, σ = {sigma:g}")
    ax_r.set_xticks(range(len(ranks)), ranks)
    ax_r.set(yscale="log", xlabel="component rank", ylabel="1 − EV (network's score)",
             title="Mixtures against component rank")
    ax_r.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def best_per_sigma(rows: pd.DataFrame, keep: Callable[[str], bool]) -> pd.DataFrame:
    """Per sigma, the row of the best model among those `keep` selects (largest St_EV)."""
    chosen = rows[rows["model"].map(keep)]
    return chosen.loc[chosen.groupby("sigma")["St_EV"].idxmax()].set_index("sigma")


def early_vs_final(grid: pd.DataFrame, steps: dict[str, int], sigmas: Sequence[float]) -> plt.Figure:
    """The plain Gaussian (control), the best coarse mixture and the training set against the noise level at the
    early and the final checkpoint (`steps`, by name), training and held-out probes; C4's low band shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True, layout="constrained")
    for ax, split in zip(axes, ["train", "test"], strict=True):
        for name, step in steps.items():
            at = grid[(grid["step"] == step) & (grid["probe_set"] == split) & (grid["sigma"] <= LOW_VIEW)]
            ls, marker = ("-", "o") if name == "final" else ("--", "x")
            for label, rows, colour in [
                ("plain Gaussian (control)", at[at["model"] == "gaussian"].set_index("sigma"), "tab:blue"),
                ("best coarse mixture (K ≤ 100)", best_per_sigma(at, verdicts.mixtures.is_coarse), "tab:green"),
                ("training set", at[at["model"] == "delta"].set_index("sigma"), "k"),
            ]:
                rows = rows.sort_index()
                residual = 1 - rows["St_EV"].to_numpy()
                ax.plot(rows.index, residual, ls=ls, marker=marker, color=colour, label=f"{label}, step {step}")
        ax.axvspan(min(sigmas), verdicts.C4_LOW_BAND_MAX, color="0.92", zorder=0)
        ax.set(xscale="log", yscale="log", xlabel="noise level σ (pixel units)",
               title=f"{'training' if split == 'train' else 'held-out'} probes")
    axes[0].set_ylabel("1 − EV (network's score)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="solid: final, dashed: early",
                   title_fontsize=8)
    fig.suptitle("Does longer training move the network towards the training-set score? (lower = closer to the "
                 "network; grey: the band C4 judges)")
    return fig


def dsm_loss(dsm: pd.DataFrame, steps: dict[str, int], net_names: dict[str, str]) -> plt.Figure:
    """One panel per noise band: the weighted DSM loss of the mixtures (full rank and rank 32) against K, of the
    training set's score (starred; on its own images drawn at LOSS_FLOOR) and of the network at each checkpoint
    (lines), on training (solid) and held-out (dashed) images."""
    bands = [b for b in ("low", "mid", "high") if b in set(dsm["sigma_band"])]
    fig, axes = plt.subplots(1, len(bands), figsize=(5 * len(bands), 4.3), layout="constrained")
    for ax, band in zip(np.atleast_1d(axes), bands, strict=True):
        at = dsm[dsm["sigma_band"] == band]
        for split, ls in [("train", "-"), ("test", "--")]:
            for rank, colour in [("full", "C2"), ("32", "C4")]:
                rows = at[(at["split"] == split) & (at["rank"] == rank) & at["model"].str.startswith("gmm")]
                ax.plot(rows["K"].astype(int), rows["loss"], ls=ls, marker="o", color=colour,
                        label=f"mixtures, rank {rank}, {split}")
            star = at[(at["model"] == "delta") & (at["split"] == split)]
            ax.plot(star["K"].astype(int), star["loss"].clip(lower=LOSS_FLOOR), marker="*" if split == "test" else "v",
                    ms=14, color="C3", ls="none", mfc="none" if split == "train" else "C3",
                    label=f"training set, {split}" + (" (▽: ≈ 0, drawn at 1e-3)" if split == "train" else ""))
            for name, colour in [(name, colour) for name, colour in [("final", "k"), ("early", "0.6")]
                                 if name in steps]:
                loss = at[(at["model"] == net_names[name]) & (at["split"] == split)]["loss"].iloc[0]
                ax.axhline(loss, color=colour, ls=ls, lw=1, label=f"{net_names[name]}, {split}")
        ax.set(xscale="log", yscale="log", xlabel="components K", title=f"{band} noise")
        if band == "low":  # only there is the training set's loss on its own images drawn at the floor
            ax.set_ylim(LOSS_FLOOR / 2, None)
    np.atleast_1d(axes)[0].set_ylabel("weighted DSM loss (per pixel)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Score-matching loss of mixtures used as score models: training vs held-out images")
    return fig


def score_fields(fields: dict[tuple[str, float], torch.Tensor], uv: torch.Tensor, anchors: torch.Tensor,
                 field_sigmas: Sequence[float], drawn: Sequence[str], field_grid: int) -> plt.Figure:
    """In-plane score directions (arrows coloured by log10 of the in-plane magnitude) of each model in `drawn` (the
    columns) at each noise level (the rows), in the plane through training images a, b, c (`anchors`)."""
    fig, axes = plt.subplots(len(field_sigmas), len(drawn), figsize=(1.8 * len(drawn) + 0.9, 1.8 * len(field_sigmas)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for row, sigma in enumerate(field_sigmas):
        magnitudes = {name: np.log10(fields[(name, sigma)].norm(dim=-1).clamp_min(1e-12).numpy()) for name in drawn}
        clim = (min(m.min() for m in magnitudes.values()), max(m.max() for m in magnitudes.values()))
        for col, name in enumerate(drawn):
            field = fields[(name, sigma)]
            direction = field / field.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            ax = axes[row, col]
            arrows = ax.quiver(uv[..., 0], uv[..., 1], direction[..., 0], direction[..., 1], magnitudes[name],
                               cmap="viridis", clim=clim, pivot="mid", scale=field_grid * 1.3, width=0.005,
                               antialiased=False)  # crisp arrows: a quarter of the file size of smoothed ones
            ax.scatter(anchors[:, 0], anchors[:, 1], s=30, c="C3", edgecolors="k", zorder=3)
            for label, (u, v) in zip("abc", anchors.tolist(), strict=True):
                ax.annotate(label, (u, v), textcoords="offset points", xytext=(5, 5), color="C3", fontweight="bold")
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if row == 0:
                ax.set_title(name, fontsize=10)
            if row == len(field_sigmas) - 1:
                ax.set_xlabel("u (in the plane)", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"σ = {sigma:g}\nv (in the plane)", fontsize=9)
        fig.colorbar(arrows, ax=axes[row].tolist(), shrink=0.9, pad=0.02,
                     label="log10 |in-plane score|" if row == len(field_sigmas) // 2 else None)
    fig.suptitle("In-plane score directions in the plane through training images a, b, c", fontsize=11)
    return fig
