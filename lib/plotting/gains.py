"""Figures of issue 29 (beyond the paper): the denoiser's per-mode gains across noise (notebook 03), across training
(notebook 04), feature emergence on the network's trajectories (notebook 06), and the summary panel of the
beyond-the-paper findings (notebook 08, `beyond_summary`: None where none are recorded)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from lib.analysis.gain_findings import DOES_NOT_HOLD, HOLDS, NOT_INFORMATIVE, PARTLY
from lib.analysis.gain_study import gain_ratio_map

GAIN_COLOURS = {HOLDS: "#1b7837", PARTLY: "#b35806", DOES_NOT_HOLD: "#b2182b", NOT_INFORMATIVE: "#6a6a6a"}
SHOWN_MODES = 4  # modes drawn against sigma
#: Below this Gaussian gain the ratio is not drawn (grey): a central difference in fp32 resolves gains of about
#: 1e-5, so a ratio of two gains that small says nothing (e.g. k = 300 at sigma = 80, where lambda/sigma^2 ~ 1e-7).
RESOLVED_GAIN = 1e-4


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges on a log axis around sorted positive centres."""
    lv = np.log(np.asarray(values, dtype=np.float64))
    mid = (lv[1:] + lv[:-1]) / 2
    step = np.diff(lv)[[0, -1]] / 2 if len(lv) > 1 else np.array([0.1, 0.1])
    return np.exp(np.concatenate([[lv[0] - step[0]], mid, [lv[-1] + step[-1]]]))


def shown_modes(ks, count: int = SHOWN_MODES) -> list[int]:
    """`count` of the probed modes spread evenly in log k (the first and the last among them)."""
    ks = np.sort(np.asarray(ks, dtype=int))
    targets = np.geomspace(ks[0], ks[-1], min(count, len(ks)))
    return sorted({int(ks[np.argmin(np.abs(np.log(ks) - np.log(t)))]) for t in targets})


def gains_figure(network: pd.DataFrame, reference: pd.DataFrame | None = None, title: str = "") -> plt.Figure:
    """Left: log2 of the network's gain over the Gaussian's, sigma by k (both log); right: a few modes' gains
    against sigma (dots, ± the spread over probes), the Gaussian's curve, the isotropic control's (dashed) and the
    training-set score's (hollow squares)."""
    fig, (ax_map, ax) = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    ratio = gain_ratio_map(network).sort_index()
    gaussian = network.pivot(index="sigma", columns="k", values="gaussian_gain").sort_index()
    log_ratio = np.log2(ratio.to_numpy(dtype=np.float64).clip(1 / 64, 64))
    log_ratio = np.ma.masked_where(gaussian.to_numpy(dtype=np.float64) < RESOLVED_GAIN, log_ratio)
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("0.8")
    mesh = ax_map.pcolormesh(_edges(ratio.columns), _edges(ratio.index), log_ratio, cmap=cmap,
                             norm=TwoSlopeNorm(0.0, -3.0, 3.0))
    ax_map.fill_between([], [], color="0.8", label=f"Gaussian gain < {RESOLVED_GAIN:g}: not resolved")
    fig.colorbar(mesh, ax=ax_map, label="log₂(network gain / Gaussian gain)", extend="both")
    lam = network.groupby("k")["lambda"].first()
    y_edges = _edges(ratio.index)
    inside = (np.sqrt(lam) >= y_edges[0]).to_numpy()
    ax_map.plot(lam.index[inside], np.sqrt(lam.to_numpy()[inside]), "k:", lw=1.2, label="σ = √λ_k (Gaussian gain 1/2)")
    ax_map.set(xscale="log", yscale="log", xlabel="principal component k", ylabel="noise level σ",
               title="gain ratio, network / Gaussian (white: equal)", ylim=(y_edges[0], y_edges[-1]))
    ax_map.legend(fontsize=8, loc="lower left")
    grid = np.geomspace(network["sigma"].min(), network["sigma"].max(), 200)
    visible = lam.index[inside] if inside.sum() >= 2 else lam.index  # modes whose gain moves within the levels
    for i, k in enumerate(shown_modes(visible)):
        at = network[network["k"] == k].sort_values("sigma")
        colour = f"C{i}"
        ax.errorbar(at["sigma"], at["gain_mean"], yerr=at["gain_std"], fmt="o", ms=4, color=colour, capsize=2,
                    label=f"k = {k} (λ = {lam[k]:.2g})")
        ax.plot(grid, lam[k] / (lam[k] + grid**2), "-", color=colour, lw=1)
        if reference is not None and (reference["k"] == k).any():
            ref = reference[reference["k"] == k].sort_values("sigma")
            ax.plot(ref["sigma"], ref["gain_mean"], "s", mfc="none", color=colour, ms=7)
    iso = network.groupby("sigma")["isotropic_gain"].first()
    ax.plot(iso.index, iso.to_numpy(), "k--", lw=1, label="isotropic control (every k)")
    ax.plot([], [], "k-", lw=1, label="Gaussian λ/(λ+σ²)")
    ax.plot([], [], "ks", mfc="none", label="training-set score")
    ax.set(xscale="log", xlabel="noise level σ", ylabel="gain uₖᵀ J uₖ", title="a few modes' gains against σ")
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    return fig


def variation_figure(curves: dict[str, pd.DataFrame], threshold: float, marks: dict[str, float] | None = None,
                     title: str = "") -> plt.Figure:
    """Jacobian variation against sigma, one line per denoiser, the rule's threshold and vertical marks (C2's
    crossing, the end of the linear range)."""
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    for i, (name, v) in enumerate(curves.items()):
        v = v.sort_values("sigma")
        ax.errorbar(v["sigma"], v["jvp_variation"], yerr=2 * v["jvp_variation_se"], fmt="o-", color=f"C{i}",
                    ms=4, capsize=2, label=name)
    ax.axhline(threshold, color="k", ls="-.", lw=0.8, label=f"one linear map within {threshold:.0%}")
    for j, (name, sigma) in enumerate((marks or {}).items()):
        if sigma is not None and np.isfinite(sigma):
            ax.axvline(sigma, color="0.4", ls=[":", "--"][j % 2], lw=1, label=name)
    ax.set(xscale="log", yscale="log", xlabel="noise level σ",
           ylabel="E‖J(x)v − mean J v‖ / ‖mean J v‖", title=title)
    ax.legend(fontsize=8)
    return fig


def learning_figure(gains_by_step: pd.DataFrame, steps: pd.DataFrame, fit, predicted: float, warmup_steps: int,
                    title: str = "") -> plt.Figure:
    """Left: each mode's learning step (bar: its bracket) against lambda_k, log-log, with the fitted slope and the
    follow-up's predicted slope through the same centre; right: a few modes' gain over their Gaussian gain against
    the step, the warm-up shaded."""
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    learned = steps[steps["status"] == "learned"]
    below = learned["step"] - learned["step_before"]
    ax.errorbar(learned["lambda"], learned["step"], yerr=[below, 0 * below], fmt="o", color="k", capsize=2,
                label="learned (bar: since the previous checkpoint)")
    for status, marker in (("early", "v"), ("never", "^")):
        at = steps[steps["status"] == status]
        if len(at):
            trained = gains_by_step["step"][gains_by_step["step"] > 0]
            y = trained.min() if status == "early" else trained.max()
            ax.plot(at["lambda"], [y] * len(at), marker, mfc="none", color="0.5", label=f"{status} (censored)")
    if fit is not None:
        x = np.geomspace(learned["lambda"].min(), learned["lambda"].max(), 50)
        centre = np.exp(np.mean(np.log(learned["lambda"])))
        y0 = np.exp(fit.intercept) * centre**fit.slope
        ax.plot(x, np.exp(fit.intercept) * x**fit.slope, "C0-", label=f"fit: slope {fit.slope:.2f}")
        ax.plot(x, y0 * (x / centre) ** predicted, "C3--", label=f"slope {predicted:g} (Wang & Pehlevan 2025)")
    ax.axhspan(0, warmup_steps, color="0.92", zorder=0, label="warm-up")
    ax.set(xscale="log", yscale="log", xlabel="λ_k", ylabel="training step", title="when each mode is learned")
    ax.legend(fontsize=7)
    visible = steps.loc[steps["gaussian_gain"] >= 0.1, "k"]  # modes judged where their Gaussian gain is not ~0
    for i, k in enumerate(shown_modes(visible if len(visible) else steps["k"])):
        at = gains_by_step[gains_by_step["k"] == k].sort_values("step")
        ax_t.plot(at["step"], at["gain_mean"] / at["gaussian_gain"], "o-", ms=3, color=f"C{i}",
                  label=f"k = {k} at σ = {at['sigma'].iloc[0]:g}")
    ax_t.axhspan(0.9, 1.1, color="C2", alpha=0.15, lw=0, label="within 10% of the Gaussian gain")
    ax_t.axvspan(0, warmup_steps, color="0.92", zorder=0)
    ax_t.set(xlabel="training step", ylabel="gain / Gaussian gain", title="a few modes across training")
    ax_t.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def learning_by_level_figure(levels: dict, predicted: float, warmup_steps: int, last_step: int,
                             title: str = "") -> plt.Figure:
    """One panel per fixed level (`gain_levels.steps_by_level`): each resolvable mode's learning step against
    lambda_k on log axes (bar: its bracket), censored modes marked at the first trained / the last checkpoint, the
    fitted line and a line of slope `predicted` (Wang & Pehlevan's) through the fit's centre, the warm-up shaded."""
    shown = list(levels.values())
    fig, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 3.8), squeeze=False, sharex=True,
                             sharey=True, layout="constrained")
    before = [lv.steps.loc[lv.steps["status"] == "learned", "step_before"] for lv in shown]
    bottom = min([b.min() for b in before if len(b)] + [warmup_steps / 10]) / 2
    for ax, lv in zip(axes.flat, shown, strict=True):
        steps = lv.steps
        learned = steps[steps["status"] == "learned"]
        below = learned["step"] - learned["step_before"]
        ax.errorbar(learned["lambda"], learned["step"], yerr=[below, 0 * below], fmt="o", color="k", ms=4,
                    capsize=2, label="learned (bar: since the previous checkpoint)")
        first = learned["step_before"].min() if len(learned) else warmup_steps / 4
        for status, marker, y in (("early", "v", first), ("never", "^", last_step)):
            at = steps[steps["status"] == status]
            if len(at):
                ax.plot(at["lambda"], [y] * len(at), marker, mfc="none", color="0.5", label=f"{status} (censored)")
        if lv.fit is not None:
            f = lv.fit
            x = np.geomspace(learned["lambda"].min(), learned["lambda"].max(), 50)
            centre = np.exp(np.mean(np.log(learned["lambda"])))
            y0 = np.exp(f.intercept) * centre**f.slope
            ax.plot(x, np.exp(f.intercept) * x**f.slope, "C0-",
                    label=f"fit: slope {f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}]")
            ax.plot(x, y0 * (x / centre) ** predicted, "C3--",
                    label=f"slope {predicted:g}: Wang & Pehlevan's prediction")
        ax.axhspan(bottom, warmup_steps, color="0.92", zorder=0, label="warm-up")
        ax.set(xscale="log", yscale="log", xlabel="λ_k", ylim=(bottom, 2 * last_step),
               title=f"σ = {lv.sigma:g} ({len(steps)} resolvable modes)")
        ax.legend(fontsize=7)
    axes.flat[0].set_ylabel("training step when learned")
    fig.suptitle(title)
    return fig


def emergence_figure(tables: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """sigma_half (pooled; bars: quartiles over trajectories) against sqrt(lambda_k), one colour per run, y = x."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    for i, (name, t) in enumerate(tables.items()):
        ax.plot(t["sqrt_lambda"], t["sigma_half"], "o" if i == 0 else "s", mfc=None if i == 0 else "none",
                color=f"C{i}", label=name)
        if i == 0:
            ax.vlines(t["sqrt_lambda"], t["sigma_half_q25"], t["sigma_half_q75"], color=f"C{i}", alpha=0.4)
    lim = np.array([tables[next(iter(tables))]["sqrt_lambda"].min(), tables[next(iter(tables))]["sqrt_lambda"].max()])
    ax.plot(lim, lim, "k:", lw=1, label="σ½ = √λ_k")
    ax.set(xscale="log", yscale="log", xlabel="√λ_k", ylabel="σ½: half of the feature's variance decided",
           title=title)
    ax.legend(fontsize=8)
    return fig


def beyond_summary(table: pd.DataFrame, claims: tuple[str, ...], titles: dict[str, str],
                   passes: dict[str, str]) -> plt.Figure | None:
    """One panel per recorded beyond-the-paper claim (its findings in the headline's unit: ours with its interval,
    coloured by the verdict, the control as a grey X, the rule's threshold dashed); None when `table` holds no
    rows of `claims` (a table written before they were recorded)."""
    rows = table[table["claim"].isin(claims)]
    shown = [c for c in claims if (rows["claim"] == c).any()]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(4.4 * len(shown), 3.2), squeeze=False, layout="constrained")
    for ax, claim in zip(axes.flat, shown, strict=True):
        at = rows[rows["claim"] == claim]
        head = at[at["headline"].astype(bool)].iloc[0] if at["headline"].astype(bool).any() else at.iloc[0]
        at = at[at["unit"] == head["unit"]].reset_index(drop=True)
        y = np.arange(len(at))[::-1]
        for yi, (_, r) in zip(y, at.iterrows(), strict=True):
            if np.isfinite(r["control_value"]):
                ax.plot(r["control_value"], yi, "X", color="0.45", ms=8)
            if np.isfinite(r["threshold"]):
                ax.plot([r["threshold"]] * 2, [yi - 0.4, yi + 0.4], "k--", lw=1)
            err = None
            if np.isfinite(r["ours_low"]) and np.isfinite(r["ours_high"]):
                err = [[r["ours"] - r["ours_low"]], [r["ours_high"] - r["ours"]]]
            if np.isfinite(r["ours"]):
                ax.errorbar(r["ours"], yi, xerr=err, fmt="o", color=GAIN_COLOURS.get(r["verdict"], "k"), ms=7,
                            capsize=3)
        labels = [textwrap.fill(s if isinstance(s, str) else "", 24) for s in at["label"]]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_ylim(y.min() - 0.7, y.max() + 0.7)
        ax.set_xlabel(f"{head['unit']}\n({passes.get(claim, '')})", fontsize=8)
        ax.set_title(f"{claim} · {titles.get(claim, '')}\n{head['claim_verdict']}", fontsize=9,
                     color=GAIN_COLOURS.get(head["claim_verdict"], "k"))
    fig.suptitle("Beyond the paper (ours; grey X: trivial control, dashed: the rule's threshold)", fontsize=10)
    return fig
