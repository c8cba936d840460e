"""Figures of notebook 01 (the closed-form Gaussian): trajectories in the plane of the top two principal
components, and feature emergence against the noise level."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import torch

from lib.plotting import mark_variance_scales


def pc_plane_trajectories(px: np.ndarray, px0: np.ndarray, hx: np.ndarray, sig: np.ndarray, heun_sigmas: np.ndarray,
                          near: int, ratio_path: np.ndarray, ratio_heun: np.ndarray, ratio_theory: np.ndarray,
                          l1: float, l2: float, train_pc: torch.Tensor) -> plt.Figure:
    """Three panels for closed-form paths (S levels, n paths, PC coefficients c1, c2) with their Heun steps: the
    state x(sigma) for sigma <= 8 (from index `near`), the bend c2/c1 relative to its start against sigma beside
    the closed form (the band between sqrt(lambda_2) and sqrt(lambda_1)), and the denoised estimate over the
    training images."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), layout="constrained", gridspec_kw={"width_ratios": [1, 1.15, 1]})
    on_axis, heun_on_axis = sig > 0, heun_sigmas > 0  # sigma = 0 has no place on a log axis
    for b in range(px.shape[1]):
        color = f"C{b}"
        axes[0].plot(px[:, b, 0], px[:, b, 1], color=color, lw=1.2)
        axes[0].plot(hx[:, b, 0], hx[:, b, 1], "x", color=color, ms=5)
        axes[0].plot(*px[near, b], "o", color=color, mfc="none")
        axes[1].semilogx(sig[on_axis], ratio_path[on_axis, b], color=color, lw=3, alpha=0.5)
        axes[1].semilogx(heun_sigmas[heun_on_axis], ratio_heun[heun_on_axis, b], "x", color=color, ms=5)
        axes[2].plot(px0[:, b, 0], px0[:, b, 1], color=color, lw=1.2)
        for ax, p in zip(axes[[0, 2]], (px, px0), strict=True):
            ax.plot(*p[-1, b], "*", color=color, ms=12, mec="k", mew=0.5)
    bound = 1.15 * float(np.abs(px[near:]).max())
    axes[0].set(xlim=(-bound, bound), ylim=(-bound, bound))
    axes[1].semilogx(sig[on_axis], ratio_theory[on_axis], "k--", lw=1, label="closed form (every path)")
    axes[1].axvspan(l2**0.5, l1**0.5, color="0.85", zorder=0,
                    label="$\\sqrt{\\lambda_2} \\leq \\sigma \\leq \\sqrt{\\lambda_1}$")
    axes[1].invert_xaxis()
    axes[1].legend(loc="lower left", fontsize=8)
    axes[2].scatter(train_pc[:, 0], train_pc[:, 1], s=2, c="0.7", zorder=0, label="training images")
    for ax in axes[[0, 2]]:
        ax.set(xlabel="$c_1$ (PC 1 coefficient, pixel units)", ylabel="$c_2$ (PC 2 coefficient, pixel units)")
    axes[1].set(xlabel="noise level $\\sigma$ (pixel units; sampling runs left to right)",
                ylabel="$(c_2/c_1)(\\sigma)\\,/\\,(c_2/c_1)(80)$ (dimensionless)")
    axes[0].set_title("state $x(\\sigma)$ for $\\sigma \\leq 8$: o at $\\sigma$=8, * at 0, x Heun steps", fontsize=10)
    axes[1].set_title("the bend: $c_2/c_1$ relative to its start (x: Heun steps)", fontsize=10)
    axes[2].set_title("denoised estimate $\\hat x_0(\\sigma)$, from the mean (0, 0) to *", fontsize=10)
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, markerscale=4)
    return fig


def feature_emergence(level_sigmas: np.ndarray, q: torch.Tensor, lam: torch.Tensor, trace: float,
                      s_star: torch.Tensor, n_features: int) -> plt.Figure:
    """Left: the decided share q_k(sigma) of a few principal components along a Heun run beside the theory
    lambda_k / (lambda_k + sigma^2); right: each of the top `n_features` components' measured emergence level
    sigma*_k against sqrt(lambda_k)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    ax = axes[0]
    for i, k in enumerate((1, 2, 5, 10, 20, 50, 100)):
        ax.semilogx(level_sigmas, q[:, k - 1], color=plt.cm.viridis(i / 6), lw=2, label=f"PC {k}")
        ax.semilogx(level_sigmas, lam[k - 1] / (lam[k - 1] + level_sigmas**2), "k--", lw=0.7)
    ax.plot([], [], "k--", lw=0.7, label="theory $\\lambda_k/(\\lambda_k+\\sigma^2)$")
    ax.axhline(0.5, color="0.5", lw=0.6)
    mark_variance_scales(ax, lam, components=(1, 10, 100), trace_scale=False)
    ax.axvline(trace ** 0.5, color="k", lw=1.0, ls="--", label="$\\sqrt{\\mathrm{tr}\\,\\Sigma}$")
    ax.set(xlabel="noise level $\\sigma$ (pixel units; sampling runs left to right)",
           ylabel="decided share $q_k(\\sigma)$ (dimensionless)",
           title="How much of each feature the estimate has committed to", xlim=(level_sigmas.min(), 80),
           ylim=(-0.03, 1.25))
    ax.invert_xaxis()
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax = axes[1]
    k_idx = np.arange(1, n_features + 1)
    sc = ax.scatter(lam[:n_features].sqrt(), s_star, c=k_idx, cmap="viridis", s=14, norm="log")
    lims = [float(lam[n_features - 1].sqrt()) * 0.8, float(lam[0].sqrt()) * 1.25]
    ax.loglog(lims, lims, "k--", lw=0.8, label="$\\sigma^*_k = \\sqrt{\\lambda_k}$")
    ax.set(xlabel="$\\sqrt{\\lambda_k}$ (pixel units)", ylabel="measured $\\sigma^*_k$, half decided (pixel units)",
           title=f"Emergence level of the top {n_features} PCs")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(mticker.FixedLocator([0.2, 0.5, 1, 2, 5]))
        axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(mticker.NullFormatter())
    fig.colorbar(sc, ax=ax, label="component k")
    ax.legend(fontsize=8, loc="upper left")
    return fig
