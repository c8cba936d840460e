"""Figures of notebook 03 (score linearity, claim C2): where the Gaussian explains the network's score."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import verdicts
from lib.plotting import model_style


def gaussian_vs_isotropic(table: pd.DataFrame, c2: dict, naive_scale: float, sigma_max: float) -> plt.Figure:
    """(a) The residual 1 - St_EV of the Gaussian and the isotropic models against the noise level, training and
    test probes; (b) the Gaussian's share of the best isotropic residual, judged levels filled. Bands: where the
    Gaussian's range ends (C2 verdicts `c2`, by probe set; training probes) and where the isotropic models' own
    99% range ends; the dashed line is sqrt(tr Sigma) (`naive_scale`)."""
    fig, (ax_res, ax_share) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    for ps, ls in [("train", "-"), ("test", "--")]:
        for name in ["gaussian", "mean_std", "mean"]:
            style = model_style(name)
            r = verdicts.residuals(verdicts.common.select(table, ps), name)
            ax_res.errorbar(r.index, r["residual"], yerr=2 * r["se"], fmt=ls, color=style["color"], marker=".",
                            capsize=2, label=style["label"] if ps == "train" else None)
        levels = c2[ps].levels
        s = np.array([lv.sigma for lv in levels])
        judged = np.array([lv.informative for lv in levels])
        share = np.array([lv.gaussian / lv.isotropic for lv in levels])
        ax_share.plot(s, share, ls, color="C0", label=f"{ps} probes")
        ax_share.plot(s[judged], share[judged], "o", color="C0")
        ax_share.plot(s[~judged], share[~judged], "o", mfc="none", color="C0")
    rng, iso = c2["train"].gaussian_range, c2["train"].isotropic_range
    for ax in (ax_res, ax_share):
        if rng.sigma is not None:
            ax.axvspan(rng.lower, min(rng.upper, sigma_max), color="C0", alpha=0.25, lw=0)
        if iso.sigma is not None:
            ax.axvspan(iso.lower, min(iso.upper, sigma_max), color="0.5", alpha=0.25, lw=0)
        ax.axvline(naive_scale, color="k", ls="--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="noise level σ (pixel units)")
    ax_res.axhline(1 - verdicts.C2_EV_THRESHOLD, color="k", lw=0.8, ls="-.")
    ax_res.set(ylabel="1 − St_EV (network as reference; bars ±2 se)",
               title="(a) residuals: the Gaussian against the isotropic models")
    ax_res.legend(fontsize=8, title="solid: train probes, dashed: test probes", title_fontsize=8,
                  loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    ax_share.axhline(verdicts.C2_ISO_SHARE, color="k", lw=0.8, ls="-.")
    ax_share.set(ylabel="Gaussian / best isotropic residual",
                 title="(b) Gaussian's share of the isotropic residual (below the line passes)")
    ax_share.legend(fontsize=8, title="filled: judged level, hollow: not judged", title_fontsize=8,
                    loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.suptitle("Where the Gaussian explains the score. Blue band: where its range ends (training probes; the probe "
                 "levels around it and ±2 se);\ngrey band: where the isotropic models' own 99% range ends; "
                 "black dashed: √tr Σ", fontsize=10)
    return fig
