"""What every verdict shares: outcome words, reading a result table, residuals with their standard
errors, and threshold crossings interpolated on log sigma.

A result table has one row per (step, sigma, model, probe_set) and the columns of the linearity tables:
`St_EV` (required), optionally `St_EV_std` and `n_probes` (for standard errors), `Dt_EV`, `Dt_EV_std`, ...
Model names: `mean`, `mean_std`, `gaussian`, `gaussian_rank<r>`, `gmm<K>`, `gmm<K>_rank<r>`, `delta`.
The residual of a model is 1 - EV; its standard error is EV_std / sqrt(n_probes) (the spread of the
per-probe EV over the probes), unknown when the table lacks either column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.conventions import MIXTURE_NAME
from lib.core.errors import ReproError

REPRODUCED = "REPRODUCED"
PARTLY = "PARTLY REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
#: A finding that the claim's trivial control (the isotropic model, the plain Gaussian, fewer plain steps, ...)
#: reaches as well, within the uncertainty: it says nothing for the claim and does not count towards its verdict.
NOT_INFORMATIVE = "NOT INFORMATIVE"

REQUIRED_COLUMNS = ("sigma", "model", "probe_set")


class TableError(ReproError, ValueError):
    """A table that lacks what a verdict needs; the message is one line naming what is missing."""


def combine(outcomes) -> str:
    """A claim's verdict from its findings' verdicts: the NOT INFORMATIVE ones do not count; REPRODUCED when every
    counted one is, NOT REPRODUCED when every counted one is, PARTLY REPRODUCED in between, NOT INFORMATIVE when
    none counts."""
    counted = [o for o in outcomes if o != NOT_INFORMATIVE]
    if not counted:
        return NOT_INFORMATIVE
    if all(o == REPRODUCED for o in counted):
        return REPRODUCED
    return NOT_REPRODUCED if all(o == NOT_REPRODUCED for o in counted) else PARTLY


def yes(flag: bool | None) -> str:
    return "n/a" if flag is None else "yes" if flag else "NO"


def verdict_line(claim: str, outcome: str) -> str:
    return f"verdict: {claim} {outcome}"


def model_order(name: str) -> tuple:
    """Sort key from the simplest model to the training set: mean, mean_std, Gaussians (low rank first),
    mixtures by K then rank (full last), delta; anything else after."""
    if name in ("mean", "mean_std"):
        return (0, name == "mean_std", 0)
    if name == "gaussian" or name.startswith("gaussian_rank"):
        rank = name.removeprefix("gaussian_rank")
        return (1, 0, int(rank) if rank.isdigit() else 10**9)
    match = MIXTURE_NAME.match(name)
    if match:
        return (2, int(match["K"]), int(match["rank"]) if match["rank"] else 10**9)
    return (3 if name == "delta" else 4, 0, 0)


# --------------------------------------------------------------------------- reading tables


def read_table(path: str | Path) -> pd.DataFrame:
    """A result table from CSV, with a one-line error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    try:
        return pd.read_csv(path)
    except Exception as exc:  # empty file, not a CSV...
        raise TableError(f"{path}: unreadable as CSV ({type(exc).__name__}: {exc})") from None


def require(table: pd.DataFrame, columns=(), models=(), claim: str = "") -> None:
    """Raise a one-line TableError naming every missing column and model."""
    missing_columns = [c for c in (*REQUIRED_COLUMNS, *columns) if c not in table.columns]
    what = []
    if missing_columns:
        what.append(f"columns {', '.join(missing_columns)}")
    if "model" in table.columns:
        present = set(table["model"].astype(str))
        missing_models = [m for m in models if m not in present]
        if missing_models:
            what.append(f"models {', '.join(missing_models)}")
    if what:
        prefix = f"{claim}: " if claim else ""
        raise TableError(f"{prefix}the table lacks {' and '.join(what)} (has models: "
                         f"{', '.join(sorted(set(table['model'].astype(str))) if 'model' in table else []) or 'none'})")


def select(table: pd.DataFrame, probe_set: str | None = None, step: int | str | None = "last") -> pd.DataFrame:
    """Rows of one probe set (None: all) at one step ("last": the largest; None: every step)."""
    rows = table
    if probe_set is not None:
        rows = rows[rows["probe_set"] == probe_set]
        if rows.empty:
            have = ", ".join(sorted(set(table["probe_set"].astype(str))))
            raise TableError(f"no rows for probe set {probe_set!r} (the table has: {have})")
    if step is not None and "step" in rows.columns:
        at = rows["step"].max() if step == "last" else step
        if not (rows["step"] == at).any():
            raise TableError(f"no rows at step {at} (the table has steps {sorted(set(rows['step']))})")
        rows = rows[rows["step"] == at]
    return rows


def residuals(rows: pd.DataFrame, model: str, column: str = "St_EV", index: str = "sigma") -> pd.DataFrame:
    """`residual` = 1 - EV and its standard error `se` (NaN when unknown) of one model, indexed by `index`."""
    at = rows[rows["model"] == model].sort_values(index)
    out = pd.DataFrame({"residual": 1.0 - at[column].to_numpy(dtype=np.float64)}, index=at[index].to_numpy())
    std_column = f"{column}_std"
    if std_column in at.columns and "n_probes" in at.columns:
        n = at["n_probes"].to_numpy(dtype=np.float64)
        out["se"] = at[std_column].to_numpy(dtype=np.float64) / np.sqrt(np.where(n > 0, n, np.nan))
    else:
        out["se"] = np.nan
    out.index.name = index
    return out


def difference_se(*standard_errors: float) -> float:
    """Standard error of a difference of independent estimates (NaN propagates: unknown stays unknown)."""
    return float(np.sqrt(sum(np.square(standard_errors))))


def beyond(difference: float, se: float, factor: float = 1.0) -> bool:
    """Whether `difference` > 0 exceeds `factor` standard errors (with no known error: whether it is > 0)."""
    return bool(difference > (factor * se if np.isfinite(se) else 0.0))


# --------------------------------------------------------------------------- crossings on log sigma


@dataclass(frozen=True)
class Crossing:
    """Where a criterion stops holding, walking down the noise levels from the top.

    `sigma` is interpolated linearly in log sigma between the last level where it holds and the first
    where it fails; `low`/`high` are the same with the residuals moved by -/+ 2 standard errors (None
    when unknown; `high` is inf when the pessimistic reading fails already at the top level); `bracket` is
    (first failing level, last holding level), the probe levels the interpolation bridges. `lower`/`upper`
    span both: the crossing is known no better than the gap between the probe levels around it, nor than the
    standard errors allow. `status`: "inside" (it fails at some probed level), "below" (it holds down to the
    lowest probed level: sigma is that level, an upper bound) or "never" (it fails at the top).
    """

    sigma: float | None
    status: str
    low: float | None = None
    high: float | None = None
    bracket: tuple[float, float] | None = None

    @property
    def lower(self) -> float | None:
        """The lowest sigma the crossing can be at: the 2-se reading or the failing probe level below it."""
        values = [v for v in (self.low, self.bracket and self.bracket[0]) if v is not None]
        return min(values) if values else self.sigma

    @property
    def upper(self) -> float | None:
        """The highest sigma the crossing can be at: the 2-se reading or the holding probe level above it."""
        values = [v for v in (self.high, self.bracket and self.bracket[1]) if v is not None]
        return max(values) if values else self.sigma

    def describe(self, digits: int = 2) -> str:
        if self.status == "never":
            return "at no probed level"
        if self.status == "below":
            return f"< {self.sigma:.{digits}g} (holds at every probed level)"
        if self.low is None or self.high is None:
            band = ""
        elif math.isinf(self.high):
            band = f" [{self.low:.{digits}g}, above the top level]"
        else:
            band = f" [{self.low:.{digits}g}, {self.high:.{digits}g}]"
        if self.bracket is not None:
            band += f" between the probe levels {self.bracket[0]:g} and {self.bracket[1]:g}"
        return f"{self.sigma:.{digits}g}{band}"


def bracket(sigmas, sigma: float | None, status: str) -> tuple[float, float] | None:
    """(first failing, last holding) probe level around an interpolated crossing (None unless "inside")."""
    if status != "inside" or sigma is None:
        return None
    levels = np.sort(np.asarray(sigmas, dtype=np.float64))
    below, above = levels[levels < sigma], levels[levels >= sigma]
    return (float(below.max()), float(above.min())) if len(below) and len(above) else None


def margin_crossing(sigmas, *margins) -> tuple[float | None, str]:
    """The sigma where the first of several criteria fails walking down from the highest sigma.

    Each array of `margins` is <= 0 where its criterion holds. Between the last level where all hold and
    the first where one fails, each failing criterion's zero is interpolated linearly in log sigma and
    the highest is returned (the range ends where its first criterion ends). Returns (sigma, status) as
    in `Crossing`."""
    order = np.argsort(np.asarray(sigmas, dtype=np.float64))[::-1]
    s = np.asarray(sigmas, dtype=np.float64)[order]
    m = np.stack([np.asarray(margin, dtype=np.float64)[order] for margin in margins])
    holds = (m <= 0).all(axis=0)  # NaN counts as failing
    if len(s) == 0 or not holds[0]:
        return None, "never"
    for i in range(1, len(s)):
        if not holds[i]:
            ends = []
            for before, after in m[:, i - 1:i + 1]:
                if after <= 0:
                    continue
                t = before / (before - after) if np.isfinite(after) else 0.0  # share of the way from s[i-1] to s[i]
                ends.append(math.exp(math.log(s[i - 1]) + t * (math.log(s[i]) - math.log(s[i - 1]))))
            return float(max(ends)), "inside"
    return float(s[-1]), "below"


def threshold_crossing(curve: pd.DataFrame, level: float) -> Crossing:
    """Where a residual curve (from `residuals`) first exceeds `level` walking down in sigma, on log-log axes,
    with the interval from residual -/+ 2 se."""
    sig = curve.index.to_numpy(dtype=np.float64)

    def at(residual):
        return margin_crossing(sig, np.log(np.clip(residual, 1e-300, None) / level))

    sigma, status = at(curve["residual"].to_numpy())
    se = curve["se"].to_numpy()
    around = bracket(sig, sigma, status)
    if status != "inside" or not np.isfinite(se).all():
        return Crossing(sigma, status, bracket=around)
    high, _ = at(curve["residual"].to_numpy() + 2 * se)  # a worse fit fails higher up
    low, _ = at(np.clip(curve["residual"].to_numpy() - 2 * se, 1e-300, None))
    return Crossing(sigma, status, low=low, high=math.inf if high is None else high, bracket=around)
