"""The scorecard: every claim's verdict and headline numbers, ours beside the paper's, in one table.

Each notebook that judges a claim records its findings (`lib.verdicts.findings`) in `<results>/verdicts.csv`
with `record`, which replaces that claim's rows and leaves the others. Notebook 08 draws the table, and the
README's scorecard is generated from the same file (`python -m lib.verdicts.scorecard --readme`; `--check`
exits 1 when they differ), so the README cannot disagree with the notebooks. One row per finding:

    claim          C1 ... C6
    finding        what was measured, in words
    verdict        the finding's own verdict (REPRODUCED, PARTLY REPRODUCED, NOT REPRODUCED, or NOT INFORMATIVE
                   where its trivial control does as well)
    claim_verdict  the verdict of the whole claim (the same on every row of a claim)
    ours, ours_low, ours_high     our number and its interval (empty where none)
    paper, paper_low, paper_high  the paper's number or range (empty where none)
    threshold      the number the verdict's rule compares `ours` with (empty where none)
    unit, source (where the paper's number comes from), headline (one row per claim: the one notebook 08
    draws), label
    control, control_value  the trivial alternative that could produce the finding, and its number
    robustness     how often the finding's verdict holds over the grid of its thresholds
    scale, notebook

Beyond the paper (issue 29): claims G1-G3 (`lib.verdicts.beyond`), findings of ours that the paper does not make,
in the words HOLDS, PARTLY HOLDS, DOES NOT HOLD, NOT INFORMATIVE, are recorded in the same file with the same
columns (new rows, nothing else). `read` returns only C1-C6 unless asked (`beyond=True`), so a reader of the
paper's claims never meets them by accident; `markdown` puts them under a heading row of their own.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lib.verdicts import beyond as _beyond
from lib.verdicts.common import NOT_INFORMATIVE, NOT_REPRODUCED, PARTLY, REPRODUCED, TableError
from lib.verdicts.findings import Finding

FILE_NAME = "verdicts.csv"
CLAIMS = ("C1", "C2", "C3", "C4", "C5", "C6")
OUTCOMES = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_INFORMATIVE)
#: The beyond-the-paper claims and their outcome words (`lib.verdicts.beyond`), kept apart from `CLAIMS`.
BEYOND_CLAIMS = _beyond.CLAIMS
BEYOND_OUTCOMES = _beyond.OUTCOMES
README_START = ("<!-- scorecard: generated from data/results/verdicts.csv by "
                "`python -m lib.verdicts.scorecard --readme` -->")
README_END = "<!-- end of scorecard -->"
#: Columns read as text whatever they hold (the notebook "05" must not become the number 5).
TEXT_COLUMNS = {c: str for c in ("claim", "finding", "verdict", "claim_verdict", "unit", "source", "label", "scale",
                                 "notebook", "control", "robustness")}
COLUMNS = ["claim", "finding", "verdict", "claim_verdict", *[f for f in Finding.__dataclass_fields__
                                                            if f not in ("claim", "finding", "verdict")],
           "claim_robustness", "scale", "notebook"]
TEXT_COLUMNS["claim_robustness"] = str
OPTIONAL_COLUMNS = ("control", "control_value", "robustness", "claim_robustness")


def findings_table(findings: list[Finding], claim_verdict: str, scale: str, notebook: str,
                   claim_robustness: str = "") -> pd.DataFrame:
    """The rows of one claim in the scorecard's columns."""
    beyond = bool(findings) and all(f.claim in BEYOND_CLAIMS for f in findings)
    if claim_verdict not in (BEYOND_OUTCOMES if beyond else OUTCOMES):
        raise ValueError(f"claim verdict {claim_verdict!r} is not one of {', '.join(OUTCOMES)}")
    rows = [{**asdict(f), "claim_verdict": claim_verdict, "claim_robustness": claim_robustness, "scale": scale,
             "notebook": notebook} for f in findings]
    return pd.DataFrame(rows, columns=COLUMNS)


def scorecard_path(scale: str) -> Path:
    from lib.core import paths

    return paths.results_dir(scale) / FILE_NAME


def read(path: str | Path, beyond: bool = False) -> pd.DataFrame:
    """The scorecard at `path`, rows in claim order (an empty table when the file does not exist yet); the
    beyond-the-paper rows (G1-G3) only with `beyond`."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=TEXT_COLUMNS)
    for column in OPTIONAL_COLUMNS:  # tables written before controls and robustness were recorded
        if column not in table.columns:
            table[column] = float("nan")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise TableError(f"{path} lacks the scorecard columns {missing}: re-run the notebooks that write it")
    table = table[COLUMNS]
    return table if beyond else table[~table["claim"].isin(BEYOND_CLAIMS)].reset_index(drop=True)


def merge(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`table` with the claims of `rows` replaced by `rows`, in claim order."""
    kept = table[~table["claim"].isin(set(rows["claim"]))]
    merged = pd.concat([df for df in (kept, rows) if len(df)], ignore_index=True) if len(kept) else rows
    order = {c: i for i, c in enumerate((*CLAIMS, *BEYOND_CLAIMS))}
    return merged.sort_values("claim", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def record(findings: list[Finding], claim_verdict: str, scale: str, notebook: str,
           path: str | Path | None = None, claim_robustness: str = "") -> pd.DataFrame:
    """Replace this claim's rows in the scorecard (atomically, one writer at a time) and return the table."""
    from lib.core import paths

    path = Path(path) if path is not None else scorecard_path(scale)
    rows = findings_table(findings, claim_verdict, scale, notebook, claim_robustness)
    with paths.exclusive_lock(path.with_name(f".{path.name}.lock"), "writing the scorecard"):
        table = merge(read(path, beyond=True), rows)
        with paths.atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    return table


def _number(value: float, unit: str) -> str:
    if unit == "yes/no":
        return "yes" if value >= 0.5 else "no"
    if unit.startswith("%"):
        return f"{value:.2g}%" if abs(value) < 10 else f"{value:.0f}%"
    if unit == "relative error":
        return f"{value:.1e}"
    return f"{value:#.3g}"


def format_cell(row: pd.Series, which: str) -> str:
    """`ours` or `paper` of a scorecard row as text: the number with its interval or range ("" when none)."""
    value, low, high, unit = row[which], row[f"{which}_low"], row[f"{which}_high"], row["unit"]
    if pd.isna(value):
        return ""
    if which == "paper" and pd.notna(low) and pd.notna(high):
        return f"{_number(low, unit).rstrip('%')}-{_number(high, unit)}"
    text = _number(value, unit)
    if pd.notna(low) and pd.notna(high):
        text += f" [{_number(low, unit)}, {_number(high, unit)}]"
    return text


def threshold(row: pd.Series) -> str:
    """The number the finding's rule compares `ours` with, as text ("" when none)."""
    return "" if pd.isna(row["threshold"]) else _number(row["threshold"], row["unit"])


#: Datasets other than MNIST that a paper number can come from (named in the finding's source).
OTHER_DATASETS = ("CIFAR-10", "FFHQ", "AFHQ")


def paper_cell(row: pd.Series) -> str:
    """The paper's number, with the dataset it was measured on where that is not MNIST."""
    text = format_cell(row, "paper")
    other = next((d for d in OTHER_DATASETS if d in str(row["source"])), None)
    return f"{text} ({other})" if text and other else text


def control_cell(row: pd.Series) -> str:
    """The trivial control and its number ("" when the finding has none)."""
    if not isinstance(row["control"], str) or not row["control"]:
        return ""
    value = "" if pd.isna(row["control_value"]) else f": {_number(row['control_value'], row['unit'])}"
    return f"{row['control']}{value}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def markdown(table: pd.DataFrame) -> str:
    """The scorecard as a Markdown table: one line per finding, the claim, its verdict and how robust that verdict
    is to the rule's thresholds on its first line; each finding beside its trivial control."""
    lines = ["| claim | verdict | finding | ours | trivial control | paper | rule's threshold | robustness | unit |",
             "|---|---|---|---|---|---|---|---|---|"]
    heading = False
    for claim, rows in table.groupby("claim", sort=False):
        if claim in BEYOND_CLAIMS and not heading:  # the beyond-the-paper findings under a heading row of their own
            heading = True
            lines.append(f"| **{_beyond.HEADING}** |  | findings of ours, not claims of the paper (rules: "
                         "lib/analysis/gain_findings.py) |  |  |  |  |  |  |")
        for i, (_, row) in enumerate(rows.iterrows()):
            robust = _text(row["claim_robustness"])
            head = (f"**{claim}**", f"**{row['claim_verdict']}**" + (f" ({robust})" if robust else "")) \
                if i == 0 else ("", "")
            verdict = "" if row["verdict"] == row["claim_verdict"] else f" ({row['verdict'].lower()})"
            lines.append(f"| {head[0]} | {head[1]} | {row['finding']}{verdict} | {format_cell(row, 'ours')} | "
                         f"{control_cell(row)} | {paper_cell(row)} | {threshold(row)} | {_text(row['robustness'])} | "
                         f"{row['unit']} |")
    return "\n".join(lines)


def readme_block(table: pd.DataFrame) -> str:
    """What the README holds between its scorecard markers."""
    return f"{README_START}\n{markdown(table)}\n{README_END}"


def replace_readme_block(text: str, table: pd.DataFrame) -> str:
    """`text` (a README) with the block between the markers replaced by the scorecard of `table`."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"the README lacks the scorecard markers {README_START!r} ... {README_END!r}")
    return text[:start] + readme_block(table) + text[end + len(README_END):]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lib.core import paths
    from lib.core.config import scale_from_command_line, scale_name_from_environment

    parser = argparse.ArgumentParser(description="Print the scorecard, or write/check the README's copy of it.")
    parser.add_argument("--scale", default=scale_name_from_environment(),
                        help="the scale whose table to read (default: $REPRO_SCALE, else default)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--readme", action="store_true", help="write the scorecard into README.md")
    group.add_argument("--check", action="store_true", help="exit 1 when README.md's scorecard differs")
    args = parser.parse_args(argv)
    scale = scale_from_command_line(args.scale)
    if scale is None:
        return 2
    table = read(scorecard_path(scale))
    readme = paths.REPO_ROOT / "README.md"
    if args.readme or args.check:
        current = readme.read_text()
        updated = replace_readme_block(current, table)
        if args.check:
            print("README scorecard matches" if updated == current else "README scorecard is out of date: run "
                  "python -m lib.verdicts.scorecard --readme")
            return int(updated != current)
        with paths.atomic_path(readme) as tmp:
            tmp.write_text(updated)
        print(f"wrote the scorecard ({len(table)} rows) into {readme}")
        return 0
    print(markdown(read(scorecard_path(scale), beyond=True)))
    return 0


if __name__ == "__main__":
    import sys

    from lib.core import cli

    sys.exit(cli.run(main))
