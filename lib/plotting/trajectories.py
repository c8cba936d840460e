"""Figures of notebook 06 (trajectory prediction, claim C5): how far the network's Heun trajectory is from the
Gaussian prediction and from the ideal one."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lib import verdicts
from lib.plotting import mark_variance_scales


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
