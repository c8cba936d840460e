"""The one door every table goes through before a verdict is drawn from it: what each column must hold.

A verdict read from a nonsense table is worse than none, so every claim (C2-C6, and the paper's tables) first checks
its table against its schema, a tuple of `Column`s and the key columns that name a row:

- every required column is there, and the table has rows;
- numeric columns hold numbers (text such as "abc" is named, never a traceback), integer columns whole numbers;
- every value the rule reads is finite (`missing_ok` marks the few columns whose rule reads a missing value on its
  own, such as C6's interval, read as a loss), and lies in its range: sigma > 0, steps >= 0, n_probes >= 1,
  EV <= 1 (within `EV_TOLERANCE`); a required column that holds no number at all is refused even where single gaps
  are not (an optional one left empty reads as one left out);
- no two rows share the same key (which of two values should a verdict read?).

A table that fails raises `TableError` with one line naming the column, the first bad row (the table's index: a CSV's
data rows counted from 0) with its value, and what is expected. The checks never change the table, so a valid table
gives the verdict it gave before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.verdicts.common import REQUIRED_COLUMNS, TableError

NUMBER, INTEGER, TEXT = "number", "integer", "text"
#: EV = 1 - residual can exceed 1 only by rounding; anything further above is not an explained variance.
EV_TOLERANCE = 1e-6
#: Columns of a linearity table that name a row or count probes: never an EV column.
KEY_COLUMNS = ("step", "sigma", "model", "probe_set", "n_probes")


@dataclass(frozen=True)
class Column:
    """What one column must hold: its kind (`NUMBER`, `INTEGER` or `TEXT`), whether it must be there, its range
    (`low` < value when `low_open`, else `low` <= value; value <= `high`) and whether a row may leave it empty."""

    name: str
    kind: str = NUMBER
    required: bool = True
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    missing_ok: bool = False
    meaning: str = ""

    @property
    def expected(self) -> str:
        """What the column must hold, in words ("an integer >= 1", "a finite number > 0", ...)."""
        if self.kind == TEXT:
            return f"a non-empty {self.meaning or 'text'}"
        what = "an integer" if self.kind == INTEGER else "a finite number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        text = " ".join([what, " and ".join(bounds)]).strip()
        return f"{text} ({self.meaning})" if self.meaning else text


def _prefix(claim: str) -> str:
    return f"{claim}: " if claim else ""


def _show(value) -> str:
    """A value as the error shows it: text quoted, numbers plain (1.5, not np.float64(1.5))."""
    return repr(value) if isinstance(value, str) else str(value)


def _fail(claim: str, column: str, row, value, expected: str) -> TableError:
    """The one-line error for a bad value: the column, the first bad row and its value, what is expected."""
    return TableError(f"{_prefix(claim)}column {column!r}, row {row}: {_show(value)}; expected {expected}")


def _first(mask: pd.Series):
    """The index label of the first True in `mask`."""
    return mask.index[int(np.argmax(mask.to_numpy()))]


def numbers(table: pd.DataFrame, column: Column, claim: str = "") -> pd.Series:
    """The column as float numbers; TableError naming the first entry that is text, not a number."""
    raw = table[column.name]
    values = pd.to_numeric(raw, errors="coerce") if raw.dtype.kind not in "biuf" else raw
    values = values.astype(np.float64)
    text = raw.notna() & values.isna()
    if text.any():
        row = _first(text)
        raise _fail(claim, column.name, row, raw.loc[row], column.expected)
    return values


def _check_text(table: pd.DataFrame, column: Column, claim: str) -> None:
    raw = table[column.name]
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    if empty.any():
        row = _first(empty)
        raise _fail(claim, column.name, row, raw.loc[row], column.expected)


def _out_of_range(values: pd.Series, column: Column) -> pd.Series:
    """True where a present value breaks the column's kind or range (NaN is judged by `_check_numbers`)."""
    bad = pd.Series(False, index=values.index)
    if column.kind == INTEGER:
        bad |= values.notna() & (values != np.round(values))
    if column.low is not None:
        bad |= (values <= column.low) if column.low_open else (values < column.low)
    if column.high is not None:
        bad |= values > column.high
    return bad


def _check_numbers(table: pd.DataFrame, column: Column, claim: str) -> None:
    values = numbers(table, column, claim)
    missing = ~np.isfinite(values)
    if column.required and len(values) and missing.all():
        raise TableError(f"{_prefix(claim)}column {column.name!r} holds no finite number; expected {column.expected}")
    bad = _out_of_range(values, column) | (pd.Series(False, index=values.index) if column.missing_ok else missing)
    bad |= np.isinf(values)
    if bad.any():
        row = _first(bad)
        raise _fail(claim, column.name, row, table[column.name].loc[row], column.expected)


def refuse(table: pd.DataFrame, bad: pd.Series, column: str, expected: str, claim: str = "") -> None:
    """TableError naming the first row where `bad` is True (its value in `column`), if any: for checks across
    columns (skip < steps, ci_low <= ci_high) that a single `Column` cannot state."""
    if bad.any():
        row = _first(bad)
        raise _fail(claim, column, row, table.at[row, column], expected)


def require_columns(table: pd.DataFrame, columns: Sequence[Column], claim: str = "") -> None:
    """Every required column of `columns` is in the table: TableError naming each missing one."""
    missing = [c.name for c in columns if c.required and c.name not in table.columns]
    if missing:
        raise TableError(f"{_prefix(claim)}the table lacks columns {', '.join(missing)} "
                         f"(has: {', '.join(map(str, table.columns)) or 'none'})")


def check_columns(table: pd.DataFrame, columns: Sequence[Column], claim: str = "") -> None:
    """Each present column of `columns` holds what it must (`Column`), row by row."""
    for column in columns:
        if column.name in table.columns:
            (_check_text if column.kind == TEXT else _check_numbers)(table, column, claim)


def check_unique(table: pd.DataFrame, keys: Sequence[str], claim: str = "") -> None:
    """No two rows share the values of `keys` (those of them in the table): TableError naming the first repeat."""
    present = [k for k in keys if k in table.columns]
    repeated = table.duplicated(present, keep=False) if present else pd.Series(False, index=table.index)
    if repeated.any():
        row = _first(table.duplicated(present))
        key = ", ".join(f"{k}={_show(table.at[row, k])}" for k in present)
        raise TableError(f"{_prefix(claim)}row {row} repeats the key ({key}) of an earlier row; expected one row per "
                         f"({', '.join(present)})")


def validate(table: pd.DataFrame, columns: Sequence[Column], keys: Sequence[str] = (), claim: str = "") -> None:
    """The one check every verdict runs on its table: the columns are there (`require_columns`), it has rows, each
    column holds what it must (`check_columns`) and no key repeats (`check_unique`). Raises TableError in one line;
    returns nothing and changes nothing."""
    if not isinstance(table, pd.DataFrame):
        raise TableError(f"{_prefix(claim)}expected a table (pandas DataFrame), got {type(table).__name__}")
    require_columns(table, columns, claim)
    if table.empty:
        raise TableError(f"{_prefix(claim)}the table has no rows")
    check_columns(table, columns, claim)
    check_unique(table, keys, claim)


def positive_finite(value: float, name: str) -> float:
    """`value` as a float when finite and > 0 (a scale such as sqrt(tr Sigma)); a one-line ValueError otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} {value!r}: expected a finite number > 0")
    return number


# --------------------------------------------------------------------------- linearity tables (C2, C3, C4, paper)


def ev_columns(column: str) -> tuple[Column, ...]:
    """An EV column (<= 1, finite) and its optional per-probe standard deviation (>= 0; NaN: unknown)."""
    return (Column(column, high=1 + EV_TOLERANCE, meaning="an explained variance"),
            Column(f"{column}_std", required=False, low=0, missing_ok=True))


#: The step a linearity table gives a model loaded from a folder, which has no training history (`Study.final_step`).
NO_HISTORY_STEP = -1


def linearity_columns(column: str = "St_EV", step_required: bool = False) -> tuple[Column, ...]:
    """The columns a verdict reads from a linearity table, with `column` as the EV column."""
    return (Column("step", INTEGER, required=step_required, low=NO_HISTORY_STEP,
                   meaning="a training step; -1 for a model without a training history"),
            Column("sigma", low=0, low_open=True, meaning="a noise level"),
            Column("model", TEXT, meaning="model name"),
            Column("probe_set", TEXT, meaning="probe set name"),
            Column("n_probes", INTEGER, required=False, low=1, meaning="the number of probes"),
            *ev_columns(column))


def check_ev_column(table: pd.DataFrame, column: str, claim: str = "") -> None:
    """`column` names an EV column: not one of the key columns (`KEY_COLUMNS`) nor a standard deviation."""
    if column in KEY_COLUMNS or column.endswith("_std"):
        evs = [c for c in table.columns if c not in KEY_COLUMNS and str(c).endswith("_EV")]
        raise TableError(f"{_prefix(claim)}column {column!r} is not an EV column; expected a numeric "
                         f"explained-variance column such as {', '.join(evs) or 'St_EV or Dt_EV'}")


def validate_linearity(table: pd.DataFrame, column: str = "St_EV", claim: str = "",
                       step_required: bool = False) -> None:
    """A linearity table (one row per step, sigma, model, probe set) judged on `column` (see the module docstring)."""
    check_ev_column(table, column, claim)
    needed = (*REQUIRED_COLUMNS, column, *(("step",) if step_required else ()))
    if any(c not in table.columns for c in needed):
        return  # `common.require` names the missing columns and models together
    validate(table, linearity_columns(column, step_required), keys=("step", "sigma", "model", "probe_set"),
             claim=claim)
