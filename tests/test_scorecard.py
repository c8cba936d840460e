"""The scorecard (data/results/verdicts.csv): each claim's findings, recorded by its notebook, drawn by notebook 08
and copied into the README, which must never disagree with it."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from lib import verdicts
from lib.core import paths
from lib.verdicts import findings, scorecard
from lib.verdicts.reference import paper_table

MNIST_NAIVE_SCALE = 15.2
DEFAULT_SCORECARD = paths.results_dir("default") / scorecard.FILE_NAME
README = paths.REPO_ROOT / "README.md"


def _c2_rows(table: pd.DataFrame) -> list[findings.Finding]:
    ours = {"train": verdicts.c2_verdict(table, MNIST_NAIVE_SCALE)}
    return findings.c2_findings(ours, verdicts.c2_verdict(paper_table("mnist_1m_final"), MNIST_NAIVE_SCALE))


def test_the_paper_judged_as_ours_gives_our_number_equal_to_the_papers():
    rows = _c2_rows(paper_table("mnist_1m_final"))
    assert [r.headline for r in rows] == [True, False]
    assert rows[0].ours == pytest.approx(rows[0].paper) and 2.0 < rows[0].paper < 2.5
    assert rows[1].ours == pytest.approx(MNIST_NAIVE_SCALE / rows[0].ours)
    # beside its control: on their grid the isotropic models' 99% range ends between the same probe levels
    assert rows[0].control.startswith("isotropic") and 2.0 < rows[0].control_value < 5.0
    assert rows[0].verdict == rows[1].verdict == verdicts.NOT_INFORMATIVE
    assert findings.claim_outcome(rows) == verdicts.NOT_INFORMATIVE


def test_findings_can_say_the_opposite():
    flat = paper_table("mnist_1m_final").copy()
    flat.loc[flat["model"] == "gaussian", "St_EV"] = 0.5  # the Gaussian explains half the score everywhere
    assert _c2_rows(flat)[0].verdict == verdicts.NOT_REPRODUCED
    cifar = verdicts.c4_verdict(paper_table("cifar10_pretrained"))
    mnist = verdicts.c4_verdict(paper_table("mnist_1m_final"))  # their MNIST network sides with the training set
    (row,) = findings.c4_findings({"train": mnist}, cifar)
    assert row.verdict == verdicts.NOT_REPRODUCED and row.ours == 0.0 and row.paper == 100.0


def test_c6_findings_follow_the_coverage_of_the_papers_range():
    def budget(kept: int, steps: int = 10) -> verdicts.C6Row:
        return verdicts.C6Row("heun", steps, "gaussian", tuple(range(steps // 2 + 1)), 10.0, kept, 5.0, 19, 19 - kept)

    verdict = verdicts.C6Verdict((budget(0), budget(2), budget(3), budget(5, steps=18)))
    rows = findings.c6_findings(verdict)
    assert [r.verdict for r in rows] == [verdicts.NOT_REPRODUCED, verdicts.PARTLY, verdicts.REPRODUCED,
                                         verdicts.REPRODUCED]
    assert [r.headline for r in rows] == [False, False, False, True]  # the largest Heun budget
    assert (rows[1].ours, rows[1].paper_low, rows[1].paper_high) == (20.0, 15.0, 30.0)


def test_record_replaces_one_claims_rows_and_keeps_the_others_in_claim_order(tmp_path):
    path = tmp_path / "verdicts.csv"
    c2 = _c2_rows(paper_table("mnist_1m_final"))
    c1 = [findings.Finding("C1", "an order", verdicts.REPRODUCED, 2.05, "order", threshold=2.0, headline=True)]
    scorecard.record(c2, verdicts.REPRODUCED, "smoke", "03", path)
    table = scorecard.record(c1, verdicts.REPRODUCED, "smoke", "01", path)
    assert table["claim"].tolist() == ["C1", "C2", "C2"]
    again = scorecard.record(c1[:1] * 2, verdicts.NOT_REPRODUCED, "smoke", "01", path)
    assert again["claim"].tolist() == ["C1", "C1", "C2", "C2"]
    assert set(again.loc[again["claim"] == "C1", "claim_verdict"]) == {verdicts.NOT_REPRODUCED}
    read = scorecard.read(path)
    assert list(read.columns) == scorecard.COLUMNS and len(read) == 4
    assert math.isnan(read.loc[0, "paper"]) and read.loc[2, "paper"] == pytest.approx(c2[0].paper, rel=1e-5)
    assert read["notebook"].tolist() == ["01", "01", "03", "03"], "notebook numbers stay text through a round trip"


def test_record_rejects_a_verdict_that_is_not_one_of_the_three_words(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        scorecard.record([], "MOSTLY", "smoke", "01", tmp_path / "verdicts.csv")


def test_markdown_puts_the_claim_verdict_first_and_a_differing_finding_verdict_beside_its_finding(tmp_path):
    rows = [findings.Finding("C6", "budget a", verdicts.REPRODUCED, 28.0, "% of levels", paper=30.0,
                             paper_low=15.0, paper_high=30.0, headline=True, control="plain noise",
                             control_value=11.0, robustness="same verdict in 4 of 5 settings"),
            findings.Finding("C6", "budget b", verdicts.NOT_REPRODUCED, 0.0, "% of levels",
                             source="authors' table, CIFAR-10 network", paper=50.0)]
    table = scorecard.record(rows, verdicts.PARTLY, "smoke", "07", tmp_path / "verdicts.csv",
                             claim_robustness="same verdict in 3 of 5 settings")
    lines = scorecard.markdown(table).splitlines()
    assert lines[2].startswith("| **C6** | **PARTLY REPRODUCED** (same verdict in 3 of 5 settings) | budget a "
                               "(reproduced) | 28% | plain noise: 11% | 15-30% |  | same verdict in 4 of 5 settings |")
    assert lines[3].startswith("|  |  | budget b (not reproduced) | 0% |  | 50% (CIFAR-10) |")


def test_a_readme_without_markers_is_an_error_naming_them():
    with pytest.raises(ValueError, match="scorecard markers"):
        scorecard.replace_readme_block("# no scorecard here\n", pd.DataFrame(columns=scorecard.COLUMNS))


def test_the_committed_scorecard_has_every_claim_at_the_default_scale():
    table = scorecard.read(DEFAULT_SCORECARD)
    assert list(dict.fromkeys(table["claim"])) == list(scorecard.CLAIMS)
    assert set(table["verdict"]) | set(table["claim_verdict"]) <= set(scorecard.OUTCOMES)
    assert (table.groupby("claim")["headline"].sum() == 1).all()
    assert set(table["scale"]) == {"default"}


def test_the_readme_scorecard_is_the_one_generated_from_the_committed_table():
    """The README's results can never disagree with the notebooks: its scorecard is generated from the table
    they write (`python -m lib.verdicts.scorecard --readme` after `make figures`)."""
    text = README.read_text()
    assert scorecard.replace_readme_block(text, scorecard.read(DEFAULT_SCORECARD)) == text


def test_the_readme_states_each_claims_verdict_as_the_table_does():
    """Outside the generated block the README names each claim's verdict once more (in its first paragraph):
    the words must be the table's."""
    table = scorecard.read(DEFAULT_SCORECARD)
    intro = README.read_text().split(scorecard.README_START)[0]
    for claim, verdict in table.groupby("claim")["claim_verdict"].first().items():
        stated = re.search(rf"{claim}[^|\n]*?\b(not reproduced|partly reproduced|reproduced|not informative)\b",
                           intro, re.I)
        assert stated is not None, f"the README's introduction does not state {claim}'s verdict"
        said = stated.group(1).lower()
        assert said == verdict.lower(), f"{claim}: the README says {said!r}, the table {verdict!r}"
