"""Figures of notebook 06 (trajectory prediction, claim C5): how far the network's Heun trajectory is from the
Gaussian prediction and from the ideal one."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lib import verdicts
from lib.plotting import mark_variance_scales, model_style


def trajectory_deviation(deviations: pd.DataFrame, s: np.ndarray, styles: dict[str, tuple[str, str]],
                         eigvals: torch.Tensor) -> plt.Figure:
    """The relative deviation of each pair of runs in `styles` (label -> colour, line style), median and
    quartiles over samples (`deviations`, `lib.analysis.trajectories.deviation_rows`), against the noise level
    `s`, for the state x_sigma (left) and the denoised estimate (right), with C5's tolerance and required level."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, field, title in zip(axes, ["x", "x0_hat"], ["state $x_\\sigma$", "denoised estimate $\\hat x_0(\\sigma)$"],
                                strict=True):
        for label, (colour, style) in styles.items():
            rows = deviations[(deviations["pair"] == label) & (deviations["field"] == field)]
            ax.plot(s, rows["rel_median"], marker=".", color=colour, ls=style, label=label)
            ax.fill_between(s, rows["rel_q25"], rows["rel_q75"], color=colour, alpha=0.15)
        ax.axhline(verdicts.C5_RELATIVE_TOLERANCE, color="k", ls="-.", lw=0.8)
        ax.axvline(verdicts.C5_REQUIRED_SIGMA, color="k", ls=":", lw=0.8)
        mark_variance_scales(ax, eigvals)
        ax.set(xscale="log", yscale="log", xlabel="noise level σ (pixel units; sampling runs left to right)",
               title=title)
        ax.invert_xaxis()
    axes[0].set_ylabel("relative deviation ‖a − b‖ / ‖b‖ (dimensionless)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("How far the network's Heun trajectory is from the Gaussian prediction and from the ideal one",
                 y=1.02)
    return fig


def denoising_error(wide: pd.DataFrame, training_share: Callable[[float], float] | None) -> plt.Figure:
    """Each denoiser's MSE divided by the mean image's against the noise level (`wide`: one column per denoiser,
    "network", "Gaussian", "mean image", indexed by sigma), all levels on a log scale (left) and the top of the
    schedule, sigma >= 5, on a linear one (right), with the network's training share of noise >= sigma dashed on a
    second axis when the network's training noise distribution is known (`training_share`)."""
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(13, 4.2))
    top = wide[wide.index >= 5.0]
    for name, colour in [("network", "k"), ("Gaussian", model_style("gaussian")["color"])]:
        ax.plot(wide.index, wide[name] / wide["mean image"], marker=".", color=colour, label=name)
        zoom.plot(top.index, top[name] / top["mean image"], marker=".", color=colour, label=name)
    for a in (ax, zoom):
        a.axhline(1.0, color=model_style("mean")["color"], lw=1, label="mean image (D = μ)")
        a.set(xscale="log", xlabel="noise level σ (pixel units)")
        a.invert_xaxis()
    ax.set(yscale="log", ylabel="denoising MSE / mean image's (ratio)",
           title="Denoising error relative to the mean image (test images)")
    zoom.set(ylabel="denoising MSE / mean image's (ratio)", title="The top of the schedule (σ ≥ 5), linear scale")
    zoom.set_xticks([5, 10, 20, 40, 80], ["5", "10", "20", "40", "80"])
    zoom.xaxis.set_minor_formatter(plt.NullFormatter())
    handles = []
    if training_share is not None:  # our network trains on EDM's noise distribution; a model from a folder on its own
        share = zoom.twinx()
        share.plot(top.index, [training_share(v) for v in top.index], color="0.5", ls="--", marker="x",
                   label="training share of noise ≥ σ")
        share.set(yscale="log", ylabel="training share of noise ≥ σ (dashed)")
        handles = share.get_legend_handles_labels()[0]
    fig.tight_layout()
    handles = zoom.get_legend_handles_labels()[0] + handles
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=9)
    return fig
