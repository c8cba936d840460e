"""The paper's own numbers, in the schema of our tables, each row with its source in the authors' repository
(github.com/Animadversio/GaussianTeleportationDiffusion, folder `Tables/`, file and row index).

    mnist_1m_final      their final MNIST network (EDM, ~1M steps), training probes
    mnist_25k_dynamics  their 25k-step MNIST run (5,000-step warm-up), every checkpoint, training probes
    cifar10_pretrained  the pretrained CIFAR-10 EDM network, training probes (the paper's evidence for C4)

Their model names are mapped to ours: `mean isotropic` -> mean, `mean + std isotropic` -> mean_std,
`gaussian` -> gaussian, `gmm_<K>_mode` -> gmm<K>, `gmm delta` -> delta (CIFAR-10: `gmm_<K>_mode_3072_rank`,
full-rank components, -> gmm<K>). Their tables give the per-probe standard deviation but not the number of
probes, so verdicts on them have no standard errors. The values were transcribed from the authors' CSV
files with their row indices and checked against the numbers the paper quotes (`tests/test_verdicts_paper.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lib.verdicts.common import TableError, read_table, residuals, select
from lib.verdicts.schema import validate_linearity

PAPER_DIR = Path(__file__).resolve().parent / "paper"
PAPER_TABLES = {
    "mnist_1m_final": "final MNIST network (~1M steps)",
    "mnist_25k_dynamics": "25k-step MNIST run, every checkpoint",
    "cifar10_pretrained": "pretrained CIFAR-10 EDM network",
}


def paper_table_path(name: str) -> Path:
    if name not in PAPER_TABLES:
        raise TableError(f"unknown paper table {name!r}: choose one of {', '.join(PAPER_TABLES)}")
    return PAPER_DIR / f"{name}.csv"


def paper_table(name: str) -> pd.DataFrame:
    """One of `PAPER_TABLES` as a DataFrame in our schema (with a `source` column), checked as every verdict checks
    its table (`lib.verdicts.schema.validate_linearity`, on St_EV and Dt_EV)."""
    table = read_table(paper_table_path(name))
    for column in ("St_EV", "Dt_EV"):
        validate_linearity(table, column, claim=f"paper table {name}")
    return table


def nearest_step(table: pd.DataFrame, step: int) -> int:
    """The table's checkpoint closest to `step` (to compare runs at the same point of training)."""
    steps = np.array(sorted(set(table["step"])))
    return int(steps[np.abs(steps - step).argmin()])


def compare(ours: pd.DataFrame, paper: pd.DataFrame, models=None, sigmas=None, ours_step: int | str = "last",
            paper_step: int | str = "last", probe_set: str = "train", column: str = "St_EV") -> pd.DataFrame:
    """Residual 1 - EV of each model at each noise level, ours beside the paper's, and their ratio.

    Only (sigma, model) pairs present in both tables are listed; `models`/`sigmas` restrict them further."""
    ours = select(ours, probe_set, ours_step)
    paper = select(paper, probe_set, paper_step)
    names = [m for m in dict.fromkeys(paper["model"]) if (ours["model"] == m).any()]
    if models is not None:
        names = [m for m in names if m in models]
    rows = []
    for name in names:
        a, b = residuals(ours, name, column), residuals(paper, name, column)
        for sigma in sorted(set(a.index) & set(b.index)):
            if sigmas is not None and not np.isclose(sigmas, sigma).any():
                continue
            r_ours, r_paper = float(a.loc[sigma, "residual"]), float(b.loc[sigma, "residual"])
            rows.append({"sigma": sigma, "model": name, "ours": r_ours, "paper": r_paper, "ratio": r_ours / r_paper})
    return pd.DataFrame(rows, columns=["sigma", "model", "ours", "paper", "ratio"])
