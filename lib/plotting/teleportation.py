"""Figures of notebook 07 (teleportation, claim C6): plain samplers at small budgets, and the paired FD change
after skipping the first levels."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from lib.analysis import teleportation
from lib.diffusion.sampler_records import RECORDS
from lib.verdicts import teleportation as c6_rule

#: Colour, marker and line style of each arm of the sweep: a jump (`teleportation.JUMP_LABELS`) or plain N - k levels.
JUMP_STYLES = {"gaussian": ("C0", "o", "-"), "isotropic": ("C2", "^", "--"), "noise": ("C3", "v", ":"),
               "plain": ("k", "s", "-.")}
ARM_LABELS = {**teleportation.JUMP_LABELS, "plain": "plain N − k levels (same NFE)"}


def small_budget_schedules(schedules: pd.DataFrame, by_budget: pd.DataFrame, by_level: pd.DataFrame,
                           band: np.ndarray, levels: Sequence[int], middle_level_scan: Sequence[float],
                           features_label: str) -> plt.Figure:
    """Left: the levels each small budget N visits, beside the band where the top 20 components are decided;
    middle: FD of the plain samplers against NFE; right: DPM-Solver++(2M)'s FD with three levels against where the
    middle one goes, beside Karras N = 4 and N = 4 with its 0.47 level moved to 2.52."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax = axes[0]
    for n in levels:
        rows = schedules[schedules["levels"] == n]
        ax.scatter(rows["sigma"], [n] * len(rows), color="C0" if n % 2 else "C3", zorder=3)
        ax.plot(rows["sigma"], [n] * len(rows), color="0.7", lw=0.8, zorder=2)
    ax.axvspan(band.min(), band.max(), color="C2", alpha=0.15,
               label="top-20 components decided ($\\sigma^2 = \\lambda_k$)")
    ax.set(xscale="log", xlabel="σ of each level (image units; σ_min = 0.002 included)",
           ylabel="levels N (NFE for DPM/UniPC)", title="Levels each budget visits (blue: odd N, red: even)")
    ax.invert_xaxis()
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.24))
    ax = axes[1]
    colours = [RECORDS["dpmpp_2m"].colour, RECORDS["unipc"].colour, "0.4", "C4"]
    for (label, rows), colour in zip(by_budget.groupby("sampler", sort=False), colours, strict=False):
        ax.plot(rows["nfe"], rows["fd"], marker="o", color=colour, label=label)
    ax.set(yscale="log", xlabel="NFE (= levels N)", ylabel=f"FD ({features_label})",
           title="Plain samplers at small budgets")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2)
    ax = axes[2]
    scan = by_level[by_level["run"].str.startswith("middle")]
    ax.plot([middle_level_scan[i] for i in range(len(scan))], scan["fd"], marker="o", color="C1",
            label="80, σ_mid, 0.002 (NFE 3)")
    for label, marker in [("Karras N=4", "s"), ("N=4, 0.47 moved to 2.52", "*")]:
        row = by_level[by_level["run"] == label]
        if len(row):
            ax.axhline(float(row["fd"].iloc[0]), color="C3" if marker == "s" else "C0", ls="--", lw=1,
                       label=f"{label} (NFE 4)")
    ax.axvspan(band.min(), band.max(), color="C2", alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel="middle level σ_mid (image units)", ylabel=f"FD ({features_label})",
           title="DPM-Solver++(2M): where one level goes")
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.24))
    fig.tight_layout()
    return fig


def quality_vs_skip(paired: pd.DataFrame, budgets: Sequence[tuple[str, int]], c6_rows: Sequence,
                    jumps: Sequence[str], n_samples: int, n_max: int, level: float) -> plt.Figure:
    """One panel per budget (sampler, N): the paired FD change FD(k) - FD(0) against the levels skipped k for each
    jump and for plain N - k levels, with bootstrap intervals (`level`), C6's tolerance band, the second stage's
    points hollow and the largest skip kept starred; the top axis gives sigma_skip."""
    ncols = min(3, len(budgets))
    nrows = -(-len(budgets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    kept = {(r.sampler, r.steps): r for r in c6_rows}
    for ax, (name, n) in zip(axes.flat, budgets, strict=False):
        rows = paired[(paired["sampler"] == name) & (paired["steps"] == n) & (paired["against"] == "budget")]
        base = rows[rows["skip"] == 0].iloc[0]
        tol = c6_rule.C6_TOLERANCE * base["fd_base"]
        ax.axhspan(-tol, tol, color="0.5", alpha=0.15, lw=0)
        ax.axhline(0.0, color="0.4", lw=0.8)
        for jump in (*jumps, "plain"):
            arm = pd.concat([rows[rows["skip"] == 0], rows[rows["jump"] == jump]]).sort_values("skip")
            colour, marker, style = JUMP_STYLES[jump]
            err = np.vstack([arm["fd_change"] - arm["ci_low"], arm["ci_high"] - arm["fd_change"]]).clip(min=0)
            ax.errorbar(arm["skip"], arm["fd_change"], err, color=colour, marker=marker, ls=style, capsize=3,
                        label=ARM_LABELS[jump])
            refined = arm[(arm["skip"] > 0) & (arm["n_samples"] > n_samples)]
            ax.plot(refined["skip"], refined["fd_change"], ls="", marker=marker, color=colour, mfc="white", zorder=4)
        r = kept[(name, n)]
        ax.plot(r.kept_skip, r.change, marker="*", ms=16, color="C0", mec="k", zorder=5)
        ax.set_yscale("symlog", linthresh=max(tol, 1e-3))
        ax.set_yticks([t for t in (-100, -10, -1, 0, 1, 10, 100) if t == 0 or abs(t) >= tol])
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:+g}" if v else "0"))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
        ax.set(title=f"{RECORDS[name].label}, N = {n} (plain FD {base['fd_base']:.3g})",
               xlabel="levels skipped k", ylabel="paired FD change FD(k) − FD(0)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        top = ax.secondary_xaxis("top")
        ks = sorted(rows["skip"].unique())
        top.set_xticks(ks, [f"{teleportation.skip_schedule(n, int(k))[0]:.2g}" for k in ks], fontsize=7)
    for ax in list(axes.flat)[len(budgets):]:
        ax.set_visible(False)
    fig.suptitle(f"Paired FD change after skipping the first k levels ({level:.1%} bootstrap intervals; top axis: "
                 "σ_skip)", y=1.0)
    fig.tight_layout()
    handles = axes.flat[0].get_legend_handles_labels()[0] + [
        plt.Line2D([], [], marker="*", ms=12, color="C0", mec="k", ls="", label="largest skip kept (Gaussian jump)"),
        plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.15, label="tolerance: ±5% of the plain FD"),
        plt.Line2D([], [], marker="o", color="0.3", mfc="white", ls="",
                   label=f"hollow: second stage ({n_max:,} samples)")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=9)
    return fig
