"""Tables are validated before they are judged: a nonsense table gets one line naming its column, never a verdict.

Each fault below once gave a verdict or a traceback (`python -m lib.verdicts`): negative or zero sigma (C5 REPRODUCED
with nan% deviations), `--naive-scale inf` (C2 REPRODUCED), negative n_probes, EV far above 1, all-NaN columns, a
header-only or one-row C6 table or skips all 0 or negative (C6 NOT REPRODUCED), duplicated rows, text in an EV
column, `--column model`, a non-numeric step (tracebacks). Now each exits 2 with exactly one line on stderr that names
the column; the valid tables, ours and the authors', judge as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core import cli, paths
from lib.verdicts import c2_verdict, c3_verdict, c4_verdict, c5_verdict, c6_verdict
from lib.verdicts.__main__ import command
from lib.verdicts.common import TableError, read_table
from lib.verdicts.reference import paper_table, paper_table_path
from lib.verdicts.schema import (
    EV_TOLERANCE,
    INTEGER,
    TEXT,
    Column,
    check_unique,
    linearity_columns,
    numbers,
    positive_finite,
    validate,
    validate_linearity,
)
from lib.verdicts.teleportation import validate_paired
from lib.verdicts.trajectory import validate_deviations

RESULTS = paths.REPO_ROOT / "data" / "results"
DEVIATIONS = RESULTS / "trajectory_deviation.csv"
PAIRED = RESULTS / "teleportation_paired.csv"
#: Each claim's table in our schema: the authors' tables for C2-C4 (never rewritten), ours for C5 and C6.
TABLES = {"c2": paper_table_path("mnist_1m_final"), "c3": paper_table_path("mnist_25k_dynamics"),
          "c4": paper_table_path("cifar10_pretrained"), "c5": DEVIATIONS, "c6": PAIRED}
NAIVE = ["--naive-scale", "15.2"]


def cli_error(tmp_path: Path, capsys, claim: str, table: pd.DataFrame | None, *options: str) -> str:
    """Run `python -m lib.verdicts CLAIM TABLE OPTIONS` as the command line does (`cli.run`) on `table` (None: the
    claim's own table); assert exit 2, no report and exactly one stderr line; return that line."""
    path = TABLES[claim]
    if table is not None:
        path = tmp_path / "table.csv"
        table.to_csv(path, index=False)
    extra = NAIVE if claim == "c2" and "--naive-scale" not in options else []
    code = cli.run(command, [claim, str(path), *extra, *options])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert "verdict:" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def table_of(claim: str) -> pd.DataFrame:
    return read_table(TABLES[claim])


def changed(claim: str, change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> pd.DataFrame:
    """The claim's table after `change` (which may edit it in place and return None)."""
    table = table_of(claim)
    out = change(table)
    return table if out is None else out


def set_column(column: str, value, rows=slice(None)) -> Callable[[pd.DataFrame], None]:
    def change(table: pd.DataFrame) -> None:
        if not isinstance(value, str) and table[column].dtype.kind not in "f":
            table[column] = table[column].astype(np.float64)
        if isinstance(value, str):
            table[column] = table[column].astype(object)
        table.loc[table.index[rows], column] = value
    return change


# --------------------------------------------------------------------------- the schema helpers


def test_validate_names_the_column_the_first_bad_row_its_value_and_what_is_expected():
    table = pd.DataFrame({"sigma": [1.0, 2.0, -1.0, -2.0], "model": ["a", "b", "c", "d"]})
    columns = (Column("sigma", low=0, low_open=True, meaning="a noise level"), Column("model", TEXT))
    with pytest.raises(TableError) as err:
        validate(table, columns, claim="C9")
    assert str(err.value) == "C9: column 'sigma', row 2: -1.0; expected a finite number > 0 (a noise level)"


def test_text_in_a_numeric_column_is_named_not_a_traceback():
    table = pd.DataFrame({"St_EV": ["0.5", "0.9", "lots"]})
    with pytest.raises(TableError, match=r"column 'St_EV', row 2: 'lots'; expected a finite number"):
        numbers(table, Column("St_EV"))
    assert numbers(table.iloc[:2], Column("St_EV")).tolist() == [0.5, 0.9]


@pytest.mark.parametrize("value", [1.5, -1, "ten", np.nan, np.inf])
def test_an_integer_column_refuses_fractions_negatives_text_and_gaps(value):
    table = pd.DataFrame({"step": [0, 10, value]})
    with pytest.raises(TableError, match="column 'step', row 2"):
        validate(table, (Column("step", INTEGER, low=0),))


def test_ev_may_exceed_1_by_rounding_only():
    table = pd.DataFrame({"sigma": [1.0, 2.0], "model": "gaussian", "probe_set": "train",
                          "St_EV": [1 + EV_TOLERANCE / 2, -5000.0]})
    validate_linearity(table)  # far below 0 is a poor fit, not an error
    table.loc[1, "St_EV"] = 1.01
    with pytest.raises(TableError, match=r"column 'St_EV', row 1: 1.01; expected a finite number <= 1"):
        validate_linearity(table)


def test_a_required_column_with_no_number_is_refused_an_optional_one_is_left_out():
    table = pd.DataFrame({"a": [np.nan, np.nan], "b": [np.nan, np.nan]})
    with pytest.raises(TableError, match="column 'a' holds no finite number"):
        validate(table, (Column("a", missing_ok=True),))
    validate(table, (Column("b", required=False, missing_ok=True),))
    validate(table.assign(a=[1.0, np.nan]), (Column("a", missing_ok=True),))  # a gap, where the rule allows one
    with pytest.raises(TableError, match="column 'a', row 1: nan"):
        validate(table.assign(a=[1.0, np.nan]), (Column("a"),))


def test_check_unique_names_the_repeated_key():
    table = pd.DataFrame({"sigma": [1.0, 2.0, 1.0], "model": ["a", "a", "a"]})
    with pytest.raises(TableError, match=r"row 2 repeats the key \(sigma=1.0, model='a'\)"):
        check_unique(table, ("step", "sigma", "model"))
    check_unique(table.iloc[:2], ("step", "sigma", "model"))


def test_validate_changes_nothing_and_refuses_an_empty_table():
    table = paper_table("mnist_1m_final")
    before = table.copy()
    validate_linearity(table, "St_EV", claim="C2")
    pd.testing.assert_frame_equal(table, before)
    with pytest.raises(TableError, match="C2: the table has no rows"):
        validate_linearity(table.iloc[:0], "St_EV", claim="C2")
    with pytest.raises(TableError, match="lacks columns sigma"):
        validate(table.drop(columns="sigma"), linearity_columns())


@pytest.mark.parametrize("value", [np.inf, np.nan, 0.0, -3.0, "abc", None])
def test_a_scale_must_be_a_finite_positive_number(value):
    with pytest.raises(ValueError, match="expected a finite number > 0"):
        positive_finite(value, "--naive-scale")
    assert positive_finite("15.2", "--naive-scale") == 15.2


@pytest.mark.parametrize("claim, judge, column", [
    ("c2", lambda t: c2_verdict(t, 15.2), "sigma"),
    ("c3", c3_verdict, "sigma"),
    ("c4", c4_verdict, "sigma"),
    ("c5", c5_verdict, "sigma"),
    ("c6", c6_verdict, "sigma_skip"),
])
def test_every_claim_goes_through_the_door(claim, judge, column):
    table = changed(claim, set_column(column, -1.0, rows=slice(3, 4)))
    with pytest.raises(TableError, match=f"column '{column}', row 3: -1.0; expected a finite number > 0"):
        judge(table)


def test_c2_refuses_a_naive_scale_that_is_no_scale():
    with pytest.raises(ValueError, match="naive scale"):
        c2_verdict(paper_table("mnist_1m_final"), float("inf"))


# --------------------------------------------------------------------------- the command line, fault by fault


@pytest.mark.parametrize("sigma", [-1.0, 0.0])
def test_c5_refuses_negative_or_zero_sigma(tmp_path, capsys, sigma):
    line = cli_error(tmp_path, capsys, "c5", changed("c5", set_column("sigma", sigma)))
    assert "column 'sigma', row 0" in line and "expected a finite number > 0" in line


def test_c5_refuses_a_table_that_never_reaches_the_levels_it_judges(tmp_path, capsys):
    line = cli_error(tmp_path, capsys, "c5", changed("c5", lambda t: t[t["sigma"] < 10]))
    assert "column 'sigma'" in line and "sigma >= 10" in line


@pytest.mark.parametrize("scale", ["inf", "nan", "0", "-3"])
def test_c2_refuses_a_naive_scale_that_is_no_scale_on_the_command_line(tmp_path, capsys, scale):
    line = cli_error(tmp_path, capsys, "c2", None, "--naive-scale", scale)
    assert "--naive-scale" in line and "expected a finite number > 0" in line


@pytest.mark.parametrize("claim, column", [("c2", "sigma"), ("c3", "sigma"), ("c4", "sigma"), ("c5", "sigma"),
                                           ("c6", "sigma_skip")])
def test_every_claim_refuses_negative_sigma(tmp_path, capsys, claim, column):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column(column, -2.0, rows=slice(5, 6))))
    expected = f"column '{column}', row 5: -2.0; expected a finite number > 0 (a noise level)"
    assert line == f"error: {claim.upper()}: {expected}"


@pytest.mark.parametrize("claim", ["c2", "c3", "c4"])
def test_every_linearity_claim_refuses_negative_n_probes(tmp_path, capsys, claim):
    table = changed(claim, lambda t: t.assign(n_probes=[256] * 4 + [-5] + [256] * (len(t) - 5)))
    line = cli_error(tmp_path, capsys, claim, table)
    assert "column 'n_probes', row 4: -5; expected an integer >= 1" in line


@pytest.mark.parametrize("claim, column", [("c6", "n_samples"), ("c6", "nfe"), ("c6", "steps")])
def test_c6_refuses_counts_below_one(tmp_path, capsys, claim, column):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column(column, -1, rows=slice(2, 3))))
    assert f"column '{column}', row 2: -1" in line and "expected an integer >= 1" in line


@pytest.mark.parametrize("claim", ["c2", "c3", "c4"])
@pytest.mark.parametrize("ev_column", ["St_EV", "Dt_EV"])
def test_every_linearity_claim_refuses_ev_far_above_1(tmp_path, capsys, claim, ev_column):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column(ev_column, 7.0, rows=slice(1, 2))),
                     "--column", ev_column)
    assert f"column '{ev_column}', row 1: 7.0; expected a finite number <= 1" in line


@pytest.mark.parametrize("claim, column", [("c2", "St_EV"), ("c3", "St_EV"), ("c4", "St_EV"), ("c2", "sigma"),
                                           ("c5", "rel_median"), ("c5", "sigma"), ("c6", "ci_high"),
                                           ("c6", "fd_base")])
def test_every_claim_refuses_an_all_nan_column(tmp_path, capsys, claim, column):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column(column, np.nan)))
    assert f"column '{column}'" in line


def test_c2_refuses_nan_where_the_rule_reads_it(tmp_path, capsys):
    line = cli_error(tmp_path, capsys, "c2", changed("c2", set_column("St_EV", np.nan, rows=slice(7, 8))))
    assert "column 'St_EV', row 7: nan" in line


def test_c6_refuses_a_header_only_table(tmp_path, capsys):
    assert "C6: the table has no rows" in cli_error(tmp_path, capsys, "c6", table_of("c6").iloc[:0])


@pytest.mark.parametrize("rows", [slice(0, 1), slice(1, 2)])
def test_c6_refuses_a_single_row(tmp_path, capsys, rows):
    assert "column 'skip'" in cli_error(tmp_path, capsys, "c6", table_of("c6").iloc[rows])


@pytest.mark.parametrize("skip", [0, -1, -3])
def test_c6_refuses_skips_that_are_all_zero_or_negative(tmp_path, capsys, skip):
    table = changed("c6", lambda t: t.assign(skip=np.where(t["skip"] > 0, skip, t["skip"])))
    line = cli_error(tmp_path, capsys, "c6", table)
    assert "column 'skip'" in line if skip < 0 else "repeats the key" in line and "skip=0" in line


@pytest.mark.parametrize("beyond", [0, 2])
def test_c6_refuses_a_skip_at_or_beyond_the_budget(tmp_path, capsys, beyond):
    table = table_of("c6")
    table.loc[1, "skip"] = table.loc[1, "steps"] + beyond
    line = cli_error(tmp_path, capsys, "c6", table)
    assert f"column 'skip', row 1: {table.loc[1, 'skip']}; expected an integer below the budget's steps N" in line


@pytest.mark.parametrize("claim", ["c2", "c3", "c4", "c5", "c6"])
def test_every_claim_refuses_duplicated_rows(tmp_path, capsys, claim):
    table = table_of(claim)
    doubled = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    line = cli_error(tmp_path, capsys, claim, doubled)
    assert f"row {len(table)} repeats the key" in line


@pytest.mark.parametrize("claim, column", [("c2", "St_EV"), ("c3", "St_EV"), ("c4", "St_EV"), ("c5", "rel_median"),
                                           ("c6", "ci_low")])
def test_every_claim_refuses_text_in_a_numeric_column(tmp_path, capsys, claim, column):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column(column, "lots", rows=slice(2, 3))))
    assert f"column '{column}', row 2: 'lots'; expected a finite number" in line


@pytest.mark.parametrize("claim", ["c2", "c3", "c4"])
@pytest.mark.parametrize("column", ["model", "sigma", "St_EV_std"])
def test_the_column_option_must_name_an_ev_column(tmp_path, capsys, claim, column):
    line = cli_error(tmp_path, capsys, claim, None, "--column", column)
    assert f"column '{column}' is not an EV column" in line


@pytest.mark.parametrize("claim", ["c2", "c3", "c4"])
@pytest.mark.parametrize("step", ["late", 12.5])
def test_every_linearity_claim_refuses_a_step_that_is_no_step(tmp_path, capsys, claim, step):
    line = cli_error(tmp_path, capsys, claim, changed(claim, set_column("step", step, rows=slice(4, 5))))
    assert f"column 'step', row 4: {step!r}" in line and "expected an integer >= -1" in line


@pytest.mark.parametrize("claim", ["c2", "c4"])
def test_a_model_without_training_history_has_step_minus_one_and_is_judged(tmp_path, capsys, claim):
    """A model loaded from a folder has no training step: the study writes -1 (`Study.final_step`); -2 is no step."""
    table = table_of(claim)
    table = table[table["step"] == table["step"].max()].assign(step=-1)
    path = tmp_path / "no_history.csv"
    table.to_csv(path, index=False)
    assert cli.run(command, [claim, str(path), *(NAIVE if claim == "c2" else [])]) == 0
    assert "verdict:" in capsys.readouterr().out
    line = cli_error(tmp_path, capsys, claim, table.assign(step=-2))
    assert "column 'step', row 0: -2" in line and "expected an integer >= -1" in line


def test_c3_refuses_a_table_where_the_training_set_misses_a_checkpoint(tmp_path, capsys):
    table = table_of("c3")
    first = int(table["step"].min())
    line = cli_error(tmp_path, capsys, "c3", table[~((table["model"] == "delta") & (table["step"] == first))])
    assert "delta has no row at step" in line


def test_c4_refuses_a_mixture_missing_a_low_noise_level(tmp_path, capsys):
    table = table_of("c4")
    gap = (table["model"] == "gmm10") & (table["sigma"] == 0.1)
    assert gap.sum() == 1
    assert "mixture gmm10 has no row at sigma = 0.1" in cli_error(tmp_path, capsys, "c4", table[~gap])


@pytest.mark.parametrize("claim, model", [("c2", "gaussian"), ("c4", "delta")])
def test_a_model_missing_from_the_judged_probe_set_is_named(tmp_path, capsys, claim, model):
    table = table_of(claim)
    other = table.assign(probe_set="test")
    both = pd.concat([table, other[other["model"] != model]], ignore_index=True)
    line = cli_error(tmp_path, capsys, claim, both, "--probe-set", "test")
    assert "test probes" in line and f"lacks models {model}" in line


def test_c5_refuses_pairs_on_different_levels(tmp_path, capsys):
    table = table_of("c5")
    drop = table.index[(table["pair"] == "network vs Gaussian") & (table["field"] == "x")][3]
    assert "column 'sigma' differs between the pairs of field 'x'" in cli_error(tmp_path, capsys, "c5",
                                                                                 table.drop(index=drop))


def test_the_debug_flag_shows_the_traceback(tmp_path):
    path = tmp_path / "table.csv"
    changed("c5", set_column("sigma", -1.0)).to_csv(path, index=False)
    with pytest.raises(TableError):
        cli.run(command, ["c5", str(path), "--debug"])


# --------------------------------------------------------------------------- valid tables judge as before


@pytest.mark.parametrize("claim, name, options, verdict", [
    ("c2", "mnist_1m_final", ["--naive-scale", "15.2"], "C2 NOT INFORMATIVE"),
    ("c2", "mnist_1m_final", ["--naive-scale", "15.2", "--column", "Dt_EV"], "C2 PARTLY REPRODUCED"),
    ("c3", "mnist_25k_dynamics", [], "C3 NOT INFORMATIVE"),
    ("c3", "mnist_25k_dynamics", ["--column", "Dt_EV"], "C3 NOT INFORMATIVE"),
    ("c4", "cifar10_pretrained", [], "C4 NOT INFORMATIVE"),
    ("c4", "cifar10_pretrained", ["--column", "Dt_EV"], "C4 NOT INFORMATIVE"),
])
def test_the_paper_tables_judge_as_before(capsys, claim, name, options, verdict):
    assert cli.run(command, [claim, str(paper_table_path(name)), *options]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == f"verdict: {verdict}" and not err


@pytest.mark.parametrize("claim, name", [("c2", "score_linearity"), ("c3", "training_dynamics"),
                                         ("c4", "mixture_grid"), ("c5", "trajectory_deviation"),
                                         ("c6", "teleportation_paired")])
def test_the_committed_tables_pass_the_door_and_are_judged(capsys, claim, name):
    path = RESULTS / f"{name}.csv"
    table = read_table(path)
    if claim == "c5":
        validate_deviations(table)
    elif claim == "c6":
        validate_paired(table)
    else:
        for column in ("St_EV", "Dt_EV"):
            validate_linearity(table, column, step_required=claim == "c3")
    options = NAIVE if claim == "c2" else []
    for probe_set in ("train", "test") if claim in ("c2", "c3", "c4") else ("train",):
        assert cli.run(command, [claim, str(path), "--probe-set", probe_set, *options]) == 0
        out, err = capsys.readouterr()
        assert out.strip().splitlines()[-1].startswith(f"verdict: {claim.upper()} ") and not err
