"""Figures of notebook 04 (training dynamics, claim C3): each model's fit to the network's score during training,
and our run beside the authors'."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lib import verdicts
from lib.plotting import model_style, plot_residual_curves


def residuals_during_training(table: pd.DataFrame, sigmas: Sequence[float], c3_train, warmup_steps: int,
                              total_steps: int) -> plt.Figure:
    """One panel per judged noise level (every level where none can be judged): each model's residual 1 - St_EV
    against the training step, with the learning-rate warm-up shaded and the Gaussian's best step of the C3
    verdict on the training probes (`c3_train`) dotted; the last slot holds the legend."""
    judged = {lv.sigma: lv for lv in c3_train.levels}
    shown = [s for s in sigmas if s in judged] or list(sigmas)  # every level where none can be judged
    ncols = min(4, len(shown) + 1)
    nrows = len(shown) // ncols + 1  # one slot left over for the legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.4 * nrows), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, sigma in zip(axes.flat, shown, strict=False):
        at = table[np.isclose(table["sigma"], sigma)]
        plot_residual_curves(ax, at, "step", "St_EV", xscale="linear", errorbars=True)
        ax.axvspan(0, warmup_steps, color="0.9", zorder=0)
        best = c3_train.learning_order.loc[sigma, "gaussian"]
        ax.axvline(best, color=model_style("gaussian")["color"], ls=":", lw=1.2)
        # y zoomed on the steps where the claim lives (from the warm-up's end, or the Gaussian's best step if
        # earlier): the warm-up transient and the isotropic baseline may run off the top
        later = 1 - at[(at["step"] >= min(best, warmup_steps)) & (at["model"] != "mean_std")]["St_EV"]
        ax.set(xlim=(0, total_steps), ylim=(later.min() / 1.2, later.max() * 1.2))
        ax.set_title(f"σ = {sigma:g}" + ("" if sigma in judged else " (not judged)"), fontsize=10)
    for ax in axes[:, 0]:
        ax.set_ylabel("1 − St_EV")
    for k, ax in enumerate(axes.flat[: len(shown)]):
        if k + ncols >= len(shown):  # the lowest panel of its column
            ax.set_xlabel("training step")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    drawn = list(dict.fromkeys(table["model"]))
    families = [name[:3] for name in drawn]
    handles = [Line2D([], [], marker=".", **model_style(name, families[:i].count(families[i])))
               for i, name in enumerate(drawn)]
    handles += [Line2D([], [], color="k", ls="-", label="training probes"),
                Line2D([], [], color="k", ls="--", label="held-out test probes"),
                Patch(color="0.9", label="learning-rate warm-up"),
                Line2D([], [], color=model_style("gaussian")["color"], ls=":", label="Gaussian's best step")]
    axes.flat[len(shown)].legend(handles=handles, loc="center", fontsize=8, frameon=False)
    fig.suptitle("Each model's fit to the network's score during training, at the judged noise levels", fontsize=11)
    return fig


def ours_vs_paper(table: pd.DataFrame, paper: pd.DataFrame, show: Sequence[float], warmup_steps: int,
                  total_steps: int, paper_steps: int, paper_warmup: int) -> plt.Figure:
    """The Gaussian's and the training set's residual 1 - St_EV on the training probes against the share of
    training, our run (solid) beside the authors' (dashed), one panel per noise level in `show`, with the end of
    each run's warm-up."""
    fig, axes = plt.subplots(1, len(show), figsize=(3.6 * len(show) + 1.8, 3.2), squeeze=False, layout="constrained")
    for ax, sigma in zip(axes.flat, show, strict=True):
        ax.axvline(warmup_steps / total_steps, color="0.5", ls="-", lw=1)
        ax.axvline(paper_warmup / paper_steps, color="0.5", ls="--", lw=1)
        for frame, total, ls in [(table, total_steps, "-"), (paper, paper_steps, "--")]:
            for name in ("gaussian", "delta"):
                r = verdicts.residuals(frame[(frame["probe_set"] == "train") & np.isclose(frame["sigma"], sigma)],
                                       name, index="step")
                r = r[r.index > 0]
                ax.plot(r.index / total, r["residual"], ls, marker=".", color=model_style(name)["color"])
        ax.set(yscale="log", xlabel="share of training", title=f"σ = {sigma:g}")
    axes.flat[0].set_ylabel("1 − St_EV")
    handles = [Line2D([], [], marker=".", **model_style(name)) for name in ("gaussian", "delta")]
    handles += [Line2D([], [], color="k", ls="-", label=f"ours ({total_steps:,} steps)"),
                Line2D([], [], color="k", ls="--", label=f"authors' ({paper_steps:,} steps)"),
                Line2D([], [], color="0.5", ls="-", lw=1, label="end of our warm-up"),
                Line2D([], [], color="0.5", ls="--", lw=1, label="end of their warm-up")]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("Our run beside the authors', training probes", fontsize=11)
    return fig
