"""Figures of notebook 00 (the data): where the training-set score is Gaussian, against the noise level."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lib.plotting import model_style
from lib.verdicts import C2_EV_THRESHOLD


def validity_scales(far_sigmas: np.ndarray, rho: dict[str, np.ndarray], rho_max: float, root_trace: float,
                    yardstick: dict[str, float | None], n_train: int, n_probes: int) -> plt.Figure:
    """The residual rho(sigma) of the Gaussian and of the mean alone against the exact training-set score, with the
    C2 line (rho_max), the naive scale sqrt(tr Sigma) and the data-driven yardstick where the Gaussian crosses it."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for name, r in rho.items():
        style = model_style(name)
        ax.loglog(far_sigmas, r, "o-", ms=4, color=style["color"], label=f"{style['label']} vs training-set score")
    ax.axhline(rho_max, color="C2", lw=1, label=f"ρ = {rho_max:g} (explains {C2_EV_THRESHOLD:.0%})")
    ax.axvline(root_trace, color="C3", ls="--",
               label=f"naive scale $\\sqrt{{\\mathrm{{tr}}\\,\\Sigma}}$ = {root_trace:.1f}")
    if yardstick["gaussian"] is not None:
        ax.axvline(yardstick["gaussian"], color="C0", ls=":",
                   label=f"data-driven yardstick σ = {yardstick['gaussian']:.2g}")
    ax.set(xlabel="noise level σ (pixel units)", ylabel="score residual ρ(σ) (dimensionless)",
           title=f"Where the training-set score is Gaussian ({n_train:,} images, {n_probes} probes)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
