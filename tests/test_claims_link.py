"""The table linking C2, C5 and C6 (lib.verdicts.link) reads each notebook's result table."""

from __future__ import annotations

import pandas as pd
import pytest

from lib.analysis import teleportation
from lib.diffusion import teleport
from lib.verdicts import trajectory
from lib.verdicts.link import claims_link

SIGMAS = (80.0, 40.0, 20.0, 12.0, 5.0, 1.0, 0.1)
CROSSINGS = pd.DataFrame([{"probe_set": "train", "column": "St_EV", "model": "gaussian (range, vs isotropic)",
                           "sigma": 2.1, "low": 2.0, "high": 2.2, "status": "inside"}])


def deviations() -> pd.DataFrame:
    """The network leaves the Gaussian at sigma = 5 in both fields; the references agree down to 5."""
    values = [0.0, 0.01, 0.02, 0.03, 0.2, 0.3, 0.4]
    return pd.DataFrame([{"pair": pair, "field": field, "sigma": s, "rel_median": v, "rel_q25": v}
                         for field in trajectory.FIELDS
                         for pair in (trajectory.NETWORK_GAUSSIAN, trajectory.NETWORK_EXACT, trajectory.EXACT_GAUSSIAN)
                         for s, v in zip(SIGMAS, values, strict=True)])


def paired(kept_share: float) -> pd.DataFrame:
    """Heun with 10 levels: skips up to kept_share x N keep quality, larger ones change FD by +5."""
    rows = []
    for k in range(0, 6):
        sigma_skip, sigmas = teleportation.skip_schedule(10, k)
        change = 0.0 if k / 10 <= kept_share else 5.0
        rows.append({"sampler": "heun", "steps": 10, "skip": k, "jump": "none" if k == 0 else "gaussian",
                     "sigma_skip": sigma_skip, "nfe": teleport.nfe("heun", sigmas), "fd_base": 10.0,
                     "fd_change": change,
                     "ci_low": change - 0.1 * bool(k), "ci_high": change + 0.1 * bool(k)})
    return pd.DataFrame(rows)


def test_claims_link_puts_the_three_ranges_side_by_side() -> None:
    link = claims_link(CROSSINGS, deviations(), paired(0.3))
    row = link.iloc[0]
    assert len(link) == 1 and row["kept skip"] == "3/10"
    assert row["C6: lowest kept sigma_skip"] == pytest.approx(teleportation.skip_schedule(10, 3)[0])
    assert row["C5: state leaves the Gaussian at sigma"] == 5.0
    assert row["C2: score >= 99% Gaussian down to sigma"] == 2.1


def test_claims_link_needs_the_gaussian_range_row() -> None:
    with pytest.raises(ValueError, match="no 'gaussian"):
        claims_link(CROSSINGS.assign(model="mean"), deviations(), paired(0.3))
