"""One table linking claims C2, C5 and C6: how far down the Gaussian description holds, three ways.

- C2 (notebook 03): the noise level down to which the Gaussian explains >= 99% of the network's score
  (`c2_crossings.csv`, row "gaussian (range, vs isotropic)", training probes).
- C5 (notebook 06): the noise level at which the network's trajectory leaves the Gaussian closed form by
  the C5 tolerance, for the state x_sigma (what a jump replaces) and for x0_hat (`trajectory_deviation.csv`).
- C6 (notebook 07): for each sampler and budget, the lowest sigma_skip the Gaussian jump can land on and
  keep quality (`teleportation_paired.csv`).

If the three agree, teleportation works down to where the Gaussian describes the network, and no further.
"""

from __future__ import annotations

import pandas as pd

from lib.verdicts.teleportation import c6_verdict
from lib.verdicts.trajectory import c5_verdict

C2_RANGE_ROW = "gaussian (range, vs isotropic)"


def c2_range(crossings: pd.DataFrame, probe_set: str = "train") -> float | None:
    """The Gaussian's range of validity from notebook 03's crossing table (None if it explains no level)."""
    rows = crossings[(crossings["model"] == C2_RANGE_ROW) & (crossings["probe_set"] == probe_set)]
    if rows.empty:
        raise ValueError(f"the crossing table has no {C2_RANGE_ROW!r} row for {probe_set} probes")
    value = rows["sigma"].iloc[0]
    return None if pd.isna(value) else float(value)


def claims_link(crossings: pd.DataFrame, deviations: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """One row per (sampler, N): the kept skip and its sigma_skip (C6), where the network's trajectory leaves
    the Gaussian (C5, state and x0_hat) and the Gaussian's range of validity for the score (C2)."""
    c5 = c5_verdict(deviations)
    c6 = c6_verdict(paired)
    state, estimate = c5.field("x"), c5.field("x0_hat")
    valid = c2_range(crossings)
    return pd.DataFrame([{
        "sampler": r.sampler, "N": r.steps, "kept skip": f"{r.kept_skip}/{r.steps}",
        "C6: lowest kept sigma_skip": r.sigma_skip,
        "C5: state leaves the Gaussian at sigma": state.network_break,
        "C5: x0_hat leaves the Gaussian at sigma": estimate.network_break,
        "C5: ideal x0_hat leaves the Gaussian at sigma": estimate.ideal_break,
        "C2: score >= 99% Gaussian down to sigma": valid,
    } for r in c6.rows])
