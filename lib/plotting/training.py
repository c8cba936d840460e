"""Figures of notebook 02 (training the network): its loss per noise level beside the analytic denoisers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib.plotting import model_style


def loss_per_sigma(curves: dict[int, pd.DataFrame], reference: dict[str, pd.DataFrame], eval_sigmas: np.ndarray,
                   p_mean: float, p_std: float) -> plt.Figure:
    """The network's weighted loss (left, over the training density of ln sigma ~ N(p_mean, p_std^2)) and its
    denoising error (right) per noise level at a few checkpoints (`curves`, by step), beside the mean image's and
    the Gaussian's (`reference`), on the same held-out images."""
    fig, (ax_w, ax_m) = plt.subplots(1, 2, figsize=(12, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for color, (step, c) in zip(colors, curves.items(), strict=True):
        ax_w.plot(c["sigma"], c["weighted"], "o-", ms=3, color=color, label=f"network, step {step}")
        ax_m.plot(c["sigma"], c["mse"], "o-", ms=3, color=color, label=f"network, step {step}")
    for name, c in reference.items():
        style = model_style(name)
        for ax, key in [(ax_w, "weighted"), (ax_m, "mse")]:
            ax.plot(c["sigma"], c[key], "--", lw=1.5, color=style["color"], label=f"{style['label']} (analytic)")
    fine = np.geomspace(eval_sigmas[0], eval_sigmas[-1], 200)
    density = np.exp(-0.5 * ((np.log(fine) - p_mean) / p_std) ** 2)  # ln sigma ~ N(p_mean, p_std^2)
    twin = ax_w.twinx()
    twin.fill_between(fine, density, color="C1", alpha=0.15, lw=0)
    twin.set(ylim=(0, 1.05), yticks=[])
    twin.grid(False)
    ax_w.set(xscale="log", yscale="log", xlabel=r"noise level $\sigma$ (pixel units)",
             ylabel=r"$\lambda(\sigma)\,\|D - x_0\|^2$ / pixel (dimensionless)",
             title="Weighted loss (shaded: training density of $\\sigma$)")
    # the mean's weighted loss grows as 1/sigma^2 at low noise: the limits follow the network and the Gaussian
    shown = np.concatenate([c["weighted"] for c in curves.values()] + [reference["gaussian"]["weighted"]])
    ax_w.set_ylim(0.7 * shown.min(), 1.5 * shown.max())
    ax_m.set(xscale="log", yscale="log", xlabel=r"noise level $\sigma$ (pixel units)",
             ylabel=r"$\|D - x_0\|^2$ / pixel (pixels in $[-1, 1]$)",
             title="Denoising error (EMA weights, test images)")
    ax_m.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
