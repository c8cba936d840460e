"""C6 in words and tables: the verdict's report, one row of Finding-ready numbers per budget (`c6_budgets`), and the
verdict recomputed over a grid of tolerances (`c6_robustness`). The rule is in `lib.verdicts.teleportation`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from lib.verdicts.common import yes
from lib.verdicts.teleportation import (
    BETTER,
    C6_PAPER_RANGE,
    C6_TOLERANCES,
    WORSE,
    C6Row,
    C6Verdict,
    c6_verdict,
)

NAN = float("nan")


def _samples_line(verdict: C6Verdict) -> str:
    """How many samples the skips were judged on: one count, or the first stage's and the refined skips'."""
    rows = (*verdict.rows, *verdict.controls)
    counts = sorted({n for r in rows for n in r.samples})
    if len(counts) <= 1:
        return f"  samples per run: {counts[0] if counts else 'n/a'}"
    refined = sorted({f"{r.sampler} N={r.steps} k={k}" for r in rows
                      for k, n in zip(r.skips[1:], r.samples, strict=False) if n > counts[0]})
    return (f"  samples per run: {counts[0]}; {', '.join(str(n) for n in counts[1:])} for the skips refined in "
            f"the second stage ({len(refined)}, every run compared there): " + ", ".join(refined))


def _equal_nfe(r: C6Row) -> str:
    c = r.at(r.kept_skip)
    if c is None:
        return "n/a"
    return f"{c.fd_against:.3g}: {c.change:+.2g} [{c.ci[0]:+.2g}, {c.ci[1]:+.2g}] {c.status}"


def _versus_line(verdict: C6Verdict, against: str) -> str:
    """How often the Gaussian jump beats `against` at the same skip (at every skip, and at the kept ones)."""
    pairs = [(r, c) for r in verdict.rows for c in r.versus(against)]
    kept = [(r, c) for r, c in pairs if c.skip <= r.kept_skip]
    count = [sum(c.status == s for _, c in pairs) for s in (BETTER, WORSE)]
    return (f"  Gaussian jump against {'plain N - k levels (same NFE)' if against == 'plain' else against} at the same "
            f"skip, same samples: better at {count[0]}, worse at {count[1]} of {len(pairs)} skips; at the kept skips "
            f"better at {sum(c.status == BETTER for _, c in kept)} of {len(kept)}")


def report(verdict: C6Verdict) -> str:
    lo, hi = C6_PAPER_RANGE
    lines = [
        "C6: analytical teleportation keeps sample quality, so it accelerates the sampler (judged at equal NFE)",
        f"  kept: skipping k of N levels keeps quality while the {verdict.level:.1%} interval of the paired FD change "
        f"against the plain N levels (same noise, same samples) stays below {verdict.tolerance:.3g} x the plain FD, "
        "at k and every smaller skip",
        "  accelerates: at a kept skip >= round(0.15 N), the jump's FD is below that of plain N - k levels from "
        "sigma_max (the same NFE): the interval of the paired change wholly below 0",
        _samples_line(verdict),
        f"  {'sampler':<9} {'N':>3} {'plain FD':>8} {'kept k':>6} {'share':>5} {'sigma_skip':>10} "
        f"{f'dFD there [{verdict.level:.1%}]':>22} {'NFE saved':>9}  {'plain N - k at that NFE: FD, dFD':>38} "
        f"{'accel. k':>8}  outcome",
    ]
    for r in verdict.rows:
        change = f"{r.change:+.2g} [{r.ci[0]:+.2g}, {r.ci[1]:+.2g}]"
        lines.append(
            f"  {r.sampler:<9} {r.steps:>3} {r.baseline_fd:>8.3g} {f'{r.kept_skip}/{r.steps}':>6} "
            f"{r.kept_fraction:>5.0%} {r.sigma_skip:>10.3g} {change:>22} {f'{r.nfe_saved} of {r.nfe_baseline}':>9}  "
            f"{_equal_nfe(r):>38} {r.accelerated_skip if r.acceleration else 'n/a':>8}  {r.outcome}")
    stops = [f"{r.sampler} N={r.steps}: k={r.first_failure[0]} ({r.first_failure[1]:+.2g}, <= "
             f"{r.first_failure[2]:+.2g})" for r in verdict.rows if r.first_failure]
    lines.append("  kept walk stopped by: " + ("; ".join(stops) or "nothing (the largest skips are kept)"))
    unresolved = [f"{r.sampler} N={r.steps} k={k}" for r in verdict.rows for k in r.unresolved]
    lines.append("  intervals straddling the tolerance (neither kept nor a measured loss at this sample size): "
                 + (", ".join(unresolved) if unresolved else "none"))
    if verdict.controls:
        lines.append("  controls, kept rule (kept skip): " + "; ".join(
            f"{r.sampler} N={r.steps}: Gaussian {r.kept_skip}, "
            + ", ".join(f"{j} {c.kept_skip}" for j in ("isotropic", "noise", "plain") if (c := verdict.control(r, j)))
            for r in verdict.rows))
        for jump in ("isotropic", "noise", "plain"):
            wins, n = verdict.gaussian_beats(jump)
            if n:
                lines.append(f"  the Gaussian jump keeps a larger skip than the {jump} control in {wins} of {n} "
                             "budgets")
    lines += [_versus_line(verdict, against) for against in ("plain", "isotropic", "noise")
              if any(r.versus(against) for r in verdict.rows)]
    if not verdict.judges_acceleration:
        lines.append("  acceleration at equal NFE: not judged (the table has no plain runs of N - k levels); the "
                     "outcome is the kept rule's")
    for name in verdict.samplers:
        share = min(r.kept_fraction for r in verdict.rows if r.sampler == name)
        lines.append(f"  {name}: skipping up to {share:.0%} of the levels keeps quality at every budget; "
                     f"at least {lo:.0%}: {yes(verdict.sampler_keeps_lower(name))}")
    lines.append(f"  every sampler and budget keeps quality up to {hi:.0%} skipped: {yes(verdict.holds)}")
    lines.append(f"verdict: C6 {verdict.outcome}")
    return "\n".join(lines)


def c6_budgets(verdict: C6Verdict) -> pd.DataFrame:
    """One row per (sampler, N) with what a Finding needs: the kept share, the equal-NFE plain control at the kept
    skip (its levels, FD, the paired change of the jump against it with the interval, better / no better / worse),
    the accelerated skip, the plain control's own kept skip by the same rule, and the budget's outcome."""
    rows = []
    for r in verdict.rows:
        c = r.at(r.kept_skip)
        plain = verdict.control(r, "plain")
        rows.append({
            "sampler": r.sampler, "steps": r.steps, "kept_skip": r.kept_skip, "kept_share": 100.0 * r.kept_fraction,
            "lower_target": r.lower_target, "upper_target": r.upper_target, "plain_fd": r.baseline_fd,
            "kept_fd_change": r.change, "equal_nfe_steps": r.steps - r.kept_skip if c else None,
            "equal_nfe_nfe": c.nfe if c else None, "teleported_fd": c.fd if c else NAN,
            "equal_nfe_fd": c.fd_against if c else NAN, "equal_nfe_change": c.change if c else NAN,
            "equal_nfe_low": c.ci[0] if c else NAN, "equal_nfe_high": c.ci[1] if c else NAN,
            "equal_nfe_status": c.status if c else "", "n_samples": c.n_samples if c else None,
            "accelerated_skip": r.accelerated_skip, "accelerated_share": 100.0 * r.accelerated_fraction,
            "plain_kept_skip": plain.kept_skip if plain else None,
            "plain_kept_share": 100.0 * plain.kept_fraction if plain else NAN, "outcome": r.outcome})
    return pd.DataFrame(rows)


def c6_robustness(paired: pd.DataFrame, tolerances: Sequence[float] = C6_TOLERANCES) -> pd.DataFrame:
    """The verdict recomputed at each tolerance (a share of the plain FD), on the same intervals: one row per tolerance
    with the claim's outcome, and per budget the kept skip, the accelerated skip and the budget's outcome. (The second
    stage chose its skips at the default tolerance, so at the others some skips are judged on fewer samples.)"""
    rows = []
    for tolerance in tolerances:
        if not (tolerance > 0 and math.isfinite(tolerance)):
            raise ValueError(f"a tolerance must be a positive share of the plain FD, got {tolerance}")
        verdict = c6_verdict(paired, tolerance=tolerance)
        row = {"tolerance": tolerance, "outcome": verdict.outcome}
        for r in verdict.rows:
            name = f"{r.sampler} N={r.steps}"
            row |= {f"{name} kept": r.kept_skip, f"{name} accelerated": r.accelerated_skip, f"{name}": r.outcome}
        rows.append(row)
    return pd.DataFrame(rows)


def equal_nfe_table(verdict: C6Verdict) -> pd.DataFrame:
    """Every skipped Gaussian run beside the plain run with the same NFE (N - k levels from sigma_max), on the same
    samples: FDs, the paired change with its interval, better / no better / worse, and whether the skip is kept."""
    rows = [{"sampler": r.sampler, "N": r.steps, "k": c.skip, "NFE": c.nfe, "plain levels": c.against_steps,
             "FD jump": c.fd, "FD plain": c.fd_against, "dFD": c.change, "low": c.ci[0], "high": c.ci[1],
             "vs plain": c.status, "kept": c.skip <= r.kept_skip, "samples": c.n_samples}
            for r in verdict.rows for c in r.versus("plain")]
    return pd.DataFrame(rows)


def summary_lines(verdict: C6Verdict) -> list[str]:
    """One sentence per budget: the kept skip, the equal-NFE comparison there, the outcome."""
    lines = []
    for r in verdict.rows:
        c = r.at(r.kept_skip)
        there = "" if c is None else (
            f"; at its NFE ({c.nfe}) plain {c.against_steps} levels give FD {c.fd_against:.3g}, the jump {c.fd:.3g} "
            f"({c.status}, {c.change:+.2g} [{c.ci[0]:+.2g}, {c.ci[1]:+.2g}])")
        lines.append(f"{r.sampler} N={r.steps}: keeps {r.kept_skip} of {r.steps} levels ({r.kept_fraction:.0%})"
                     f"{there}; accelerated skip {r.accelerated_skip}: {r.outcome}")
    return lines
