"""Verdicts: each claim's check, computed from measured numbers, able to fail, printed by the notebooks.

One module per claim (`closed_form` C1, `linearity` C2, `dynamics` C3, `mixtures` C4, `trajectory` C5,
`teleportation` C6); `common` holds the table reading and the interpolated threshold crossings, `schema` the one
check every table goes through before it is judged (a nonsense table raises `TableError`, one line naming the
column, the first bad row and what is expected), and `reference` the paper's own numbers. C2-C4 judge any table
in the documented schema, ours or the authors':

    python -m lib.verdicts c2 data/results/score_linearity.csv --probe-set test

Every report ends with one line `verdict: C<n> REPRODUCED | PARTLY REPRODUCED | NOT REPRODUCED | NOT INFORMATIVE`
(the last where the claim's trivial control does as well). `findings` turns verdicts into the scorecard's rows,
each beside its control, and `robustness` recomputes them over a grid of each rule's thresholds.
"""

from lib.core.numerics import loglog_slope, round_half_up
from lib.verdicts import findings, reference, robustness
from lib.verdicts.closed_form import (
    EMERGENCE_FACTOR,
    EMERGENCE_RANK_CORRELATION,
    FAR_FIELD_SLOPE,
    IVP_TOLERANCE,
    ORDER_TOLERANCE,
    SLOPE_TOLERANCE,
    C1Verdict,
    c1_verdict,
)
from lib.verdicts.common import (
    NOT_INFORMATIVE,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    Crossing,
    TableError,
    read_table,
    residuals,
    threshold_crossing,
)
from lib.verdicts.dynamics import (
    C3_EARLY_FRACTION,
    C3_INFORMATIVE,
    C3_MIN_CHANGE,
    C3Level,
    C3Rules,
    C3Verdict,
    c3_verdict,
)
from lib.verdicts.linearity import (
    C2_EV_THRESHOLD,
    C2_FAR_BELOW_FACTOR,
    C2_INFORMATIVE_GAP,
    C2_ISO_SHARE,
    C2Level,
    C2Rules,
    C2Verdict,
    c2_verdict,
)
from lib.verdicts.mixtures import (
    C4_COARSE_MAX_K,
    C4_LOW_BAND_MAX,
    C4_TIE_FACTOR,
    C4Level,
    C4Rules,
    C4Verdict,
    c4_verdict,
)
from lib.verdicts.teleportation import (
    C6_ALPHA,
    C6_PAPER_RANGE,
    C6_TOLERANCE,
    C6Row,
    C6Verdict,
    c6_level,
    c6_verdict,
    skip_status,
    undecided_skips,
)
from lib.verdicts.trajectory import (
    C5_RELATIVE_TOLERANCE,
    C5_REQUIRED_SIGMA,
    C5Field,
    C5Rules,
    C5Verdict,
    c5_verdict,
)

__all__ = [
    "reference",
    "findings",
    "robustness",
    "NOT_INFORMATIVE",
    "C2Rules",
    "C3Rules",
    "C4Rules",
    "C5Rules",
    "C1Verdict",
    "C2Level",
    "C2Verdict",
    "C2_EV_THRESHOLD",
    "C2_FAR_BELOW_FACTOR",
    "C2_INFORMATIVE_GAP",
    "C2_ISO_SHARE",
    "C3Level",
    "C3Verdict",
    "C3_EARLY_FRACTION",
    "C3_INFORMATIVE",
    "C3_MIN_CHANGE",
    "C4Level",
    "C4Verdict",
    "C4_COARSE_MAX_K",
    "C4_LOW_BAND_MAX",
    "C4_TIE_FACTOR",
    "C5Verdict",
    "C5_RELATIVE_TOLERANCE", "C5Field",
    "C5_REQUIRED_SIGMA",
    "C6Row",
    "C6_ALPHA",
    "C6Verdict",
    "C6_PAPER_RANGE",
    "C6_TOLERANCE",
    "Crossing",
    "EMERGENCE_FACTOR",
    "EMERGENCE_RANK_CORRELATION",
    "FAR_FIELD_SLOPE",
    "IVP_TOLERANCE",
    "NOT_REPRODUCED",
    "ORDER_TOLERANCE",
    "PARTLY",
    "REPRODUCED",
    "SLOPE_TOLERANCE",
    "TableError",
    "c1_verdict",
    "c2_verdict",
    "c3_verdict",
    "c4_verdict",
    "c5_verdict",
    "c6_level",
    "c6_verdict",
    "skip_status",
    "undecided_skips",
    "loglog_slope",
    "read_table",
    "residuals",
    "round_half_up",
    "threshold_crossing",
]
