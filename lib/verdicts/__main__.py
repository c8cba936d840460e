"""Judge a result table from the command line, ours or anyone's in the documented schema.

    python -m lib.verdicts c2 data/results/score_linearity.csv [--probe-set test] [--column Dt_EV]
    python -m lib.verdicts c3 data/results/training_dynamics.csv
    python -m lib.verdicts c4 data/results/mixture_grid.csv --probe-set test
    python -m lib.verdicts c2 lib/verdicts/paper/mnist_1m_final.csv --naive-scale 15.2
    python -m lib.verdicts c5 data/results/trajectory_deviation.csv
    python -m lib.verdicts c6 data/results/teleportation_paired.csv

Columns: step, sigma, model, probe_set, St_EV (required), St_EV_std and n_probes (standard errors),
Dt_EV, Dt_EV_std, ... (optional). Models: mean, mean_std, gaussian, gaussian_rank<r>, gmm<K>,
gmm<K>_rank<r>, delta. C2 and C4 judge the last step of the table, C3 every step. C5 reads the
trajectory deviation table of notebook 06 (pair, field, sigma, rel_median, rel_q25), C6 the paired
teleportation table of notebook 07 (sampler, steps, skip, jump, fd_base, fd_change, ci_low, ci_high, ...).
The report ends
with one line `verdict: C<n> REPRODUCED | PARTLY REPRODUCED | NOT REPRODUCED | NOT INFORMATIVE` (the last where the
claim's trivial control, named in the report, does as well). `--robustness` adds the verdict recomputed over the
grid of the rule's thresholds (`lib.verdicts.robustness`). Every table is checked before it is judged
(`lib.verdicts.schema`: its columns, their values, one row per key, enough rows for the rule), and so are the options
(`--naive-scale` a finite number > 0, `--column` an EV column). Exit status: 0 when judged (whatever the verdict), 2 for
a table or an option that cannot be judged, with one line on stderr `error: <column, first bad row and value, what is
expected>` (`lib.core.cli.run`; REPRO_DEBUG=1 or --debug for the traceback).
"""

from __future__ import annotations

import argparse
import sys

from lib.core import cli, paths
from lib.verdicts import robustness
from lib.verdicts.common import TableError, read_table
from lib.verdicts.dynamics import c3_verdict
from lib.verdicts.linearity import c2_verdict
from lib.verdicts.mixtures import c4_verdict
from lib.verdicts.schema import positive_finite
from lib.verdicts.teleportation import c6_verdict
from lib.verdicts.trajectory import c5_verdict


def mnist_naive_scale() -> float:
    """sqrt(tr Sigma) of the MNIST training set at 32 x 32 in [-1, 1], the sum of the eigenvalues in the
    committed spectrum table of notebook 00."""
    path = paths.REPO_ROOT / "data" / "results" / "dataset_spectrum.csv"
    try:
        return float(read_table(path)["lambda"].sum()) ** 0.5
    except (TableError, KeyError) as exc:
        raise TableError(f"C2 needs sqrt(tr Sigma): pass --naive-scale ({path} unusable: {exc})") from None


def robustness_report(claim: str, table, probe_set: str, naive_scale: float | None) -> str:
    """The claim's verdict over the grid of its rule's thresholds, as text (the default setting is one row)."""
    if claim == "c2":
        judged = robustness.c2(table, naive_scale, [probe_set], None, None)
    elif claim == "c3":
        judged = robustness.c3(table, [probe_set], None)
    elif claim == "c4":
        judged = robustness.c4(table, [probe_set], c4_verdict(table, probe_set=probe_set))
    elif claim == "c5":
        judged = robustness.c5(table)
    else:
        judged = robustness.c6(table)
    return (f"robustness: {judged.verdict} in {judged.robustness.removeprefix('same verdict in ')} of the rule's "
            f"thresholds\n{judged.table.to_string(index=False)}")


def judge(claim: str, path: str, probe_set: str = "train", column: str = "St_EV",
          naive_scale: float | None = None, robust: bool = False) -> str:
    """The report of one claim's verdict on the table at `path` (with `robust`, its robustness table before it)."""
    if naive_scale is not None:
        positive_finite(naive_scale, "--naive-scale")
    table = read_table(path)
    if claim == "c2" and naive_scale is None:
        naive_scale = mnist_naive_scale()
    before = ""
    if robust and claim in ("c2", "c3", "c4", "c5", "c6"):
        try:
            before = robustness_report(claim, table, probe_set, naive_scale) + "\n\n"
        except ValueError as exc:
            raise TableError(str(exc)) from None
    return before + _report(claim, table, probe_set, column, naive_scale)


def _report(claim: str, table, probe_set: str, column: str, naive_scale: float | None) -> str:
    if claim == "c2":
        return c2_verdict(table, naive_scale, probe_set=probe_set, column=column).report()
    if claim == "c3":
        return c3_verdict(table, probe_set=probe_set, column=column).report()
    if claim == "c4":
        return c4_verdict(table, probe_set=probe_set, column=column).report()
    try:
        if claim == "c5":
            return c5_verdict(table).report()
        if claim == "c6":
            return c6_verdict(table).report()
    except ValueError as exc:
        raise TableError(str(exc)) from None
    raise TableError(f"unknown claim {claim!r}: choose c2, c3, c4, c5 or c6")


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    parser = argparse.ArgumentParser(prog="python -m lib.verdicts", description=__doc__.splitlines()[0])
    parser.add_argument("claim", choices=["c2", "c3", "c4", "c5", "c6"], help="which claim to judge")
    parser.add_argument("table", help="a CSV table in the documented schema")
    parser.add_argument("--probe-set", default="train", help="probe set to judge (default: train)")
    parser.add_argument("--column", default="St_EV", help="EV column (default: St_EV; Dt_EV for denoisers)")
    parser.add_argument("--naive-scale", type=float, default=None,
                        help="C2: sqrt(tr Sigma) of the data (default: MNIST's, from notebook 00's spectrum table)")
    parser.add_argument("--robustness", action="store_true",
                        help="also judge over the grid of the rule's thresholds")
    return parser


def command(argv: list[str]) -> int:
    """Judge the table the arguments name and print the report; raises TableError (or ValueError) for a table or an
    option that cannot be judged."""
    args = parser().parse_args(argv)
    print(judge(args.claim, args.table, args.probe_set, args.column, args.naive_scale, args.robustness))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`command` ended by `lib.core.cli.run`: 0 when judged, 2 with one line `error: ...` on stderr otherwise."""
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(cli.run(command))
