"""Figures of notebook 08 (the summary): each claim's headline findings beside their controls, the paper's numbers and
the rules' thresholds."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib.verdicts import ORDER_TOLERANCE, findings, scorecard

#: The colour of each verdict (of a finding or a claim).
VERDICT_COLOURS = {"REPRODUCED": "#1b7837", "PARTLY REPRODUCED": "#b35806", "NOT REPRODUCED": "#b2182b",
                   "NOT INFORMATIVE": "#6a6a6a"}


def draw_claim(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """The findings of one claim that share its headline's unit, one line each: ours (coloured by the finding's
    verdict), its trivial control, the paper's number (hollow square: measured on another dataset) and the rule's
    threshold."""
    head = rows[rows["headline"]].iloc[0]
    rows = rows[rows["unit"] == head["unit"]].reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows(), strict=True):
        other = scorecard.paper_cell(r).endswith(")")  # "(CIFAR-10)": not MNIST
        if np.isfinite(r["paper_low"]) and np.isfinite(r["paper_high"]):
            ax.fill_betweenx([yi - 0.3, yi + 0.3], r["paper_low"], r["paper_high"], color="0.8", lw=0,
                             label="paper (range)" if yi == y[0] else None)
        elif np.isfinite(r["paper"]):
            ax.plot(r["paper"], yi, "s" if other else "D", mfc="none", mec="k", ms=8,
                    label="paper, another dataset" if other else "paper")
        if np.isfinite(r["control_value"]):
            ax.plot(r["control_value"], yi, "X", color="0.45", ms=8, label="trivial control")
        if np.isfinite(r["threshold"]):
            if head["claim"] == "C1" and r["unit"] == "order":
                ax.fill_betweenx([yi - 0.4, yi + 0.4], r["threshold"] - ORDER_TOLERANCE,
                                 r["threshold"] + ORDER_TOLERANCE, color="0.88", lw=0, label="rule's accepted band")
                ax.plot([r["threshold"]] * 2, [yi - 0.4, yi + 0.4], "k--", lw=1, label="rule's threshold")
            else:
                ax.plot([r["threshold"]] * 2, [yi - 0.4, yi + 0.4], "k--", lw=1, label="rule's threshold")
        err = None
        if np.isfinite(r["ours_low"]) and np.isfinite(r["ours_high"]):
            err = [[r["ours"] - r["ours_low"]], [r["ours_high"] - r["ours"]]]
        ax.errorbar(r["ours"], yi, xerr=err, fmt="o", color=VERDICT_COLOURS[r["verdict"]], ms=7, capsize=3,
                    label="ours (colour: the finding's verdict)")
    ax.set_yticks(y, [textwrap.fill(label if isinstance(label, str) else "", 26) for label in rows["label"]],
                  fontsize=8)
    ax.set_ylim(y.min() - 0.7, y.max() + 0.7)
    values = rows[["ours", "paper", "threshold", "paper_low", "control_value"]].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > 30:
        ax.set_xscale("log")
    elif len(values):
        ax.set_xlim(-0.04 * values.max(), 1.08 * values.max())  # from 0, with room for a dot at 0
    claim = head["claim"]
    ax.set_xlabel(f"{head['unit']}\n({findings.PASSES[claim]})", fontsize=8)
    ax.set_title(f"{claim} · {findings.CLAIM_TITLES[claim]}\n{head['claim_verdict']}", fontsize=9,
                 color=VERDICT_COLOURS[head["claim_verdict"]])


def summary(table: pd.DataFrame) -> plt.Figure:
    """One panel per claim of the scorecard `table` (`draw_claim`; a note where the claim is not recorded), with
    one legend for all: ours coloured by the finding's verdict, the paper's numbers, the trivial controls and the
    rules' thresholds."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), layout="constrained")
    for ax, claim in zip(axes.flat, scorecard.CLAIMS, strict=True):
        rows = table[table["claim"] == claim]
        if rows.empty:
            ax.text(0.5, 0.5, f"{claim}: not recorded at this scale", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        draw_claim(ax, rows)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    for verdict, colour in VERDICT_COLOURS.items():  # the four colours of a finding's verdict
        handles.setdefault(verdict.lower(), plt.Line2D([], [], ls="none", marker="o", color=colour))
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=5, fontsize=8)
    return fig
