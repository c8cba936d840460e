"""Paired FD changes with bootstrap intervals (lib.analysis.sample_quality): exact cases and coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.analysis.metrics import FrechetReference, frechet_distance_from_features
from lib.analysis.sample_quality import bootstrap_fds, bootstrap_rows, paired_change


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return torch.randn(4000, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_fd_against_a_fixed_reference_equals_the_general_formula(reference: torch.Tensor) -> None:
    sample = 0.3 + 1.2 * torch.randn(300, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert FrechetReference(reference).fd(sample) == pytest.approx(frechet_distance_from_features(sample, reference),
                                                                   rel=1e-9)
    assert FrechetReference(reference).fd(reference) == pytest.approx(0.0, abs=1e-9)


def test_identical_sets_change_by_exactly_zero(reference: torch.Tensor) -> None:
    ref = FrechetReference(reference)
    a = torch.randn(200, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    reps = bootstrap_fds(a, ref, 30, stream=0)
    change = paired_change([ref.fd(a)], [ref.fd(a)], [reps], [reps.copy()])
    assert change.change == 0.0 and change.low == 0.0 and change.high == 0.0 and change.half_width == 0.0


def test_the_same_stream_resamples_the_same_rows() -> None:
    assert torch.equal(bootstrap_rows(50, 4, stream=3), bootstrap_rows(50, 4, stream=3))
    assert not torch.equal(bootstrap_rows(50, 4, stream=3), bootstrap_rows(50, 4, stream=4))


def test_paired_interval_is_narrower_than_an_unpaired_one_and_covers_the_change(reference: torch.Tensor) -> None:
    """b is a with a small shift: the paired interval brackets the change and is far narrower than the spread
    of either FD on its own (the resampling noise common to a and b cancels)."""
    ref = FrechetReference(reference)
    a = torch.randn(400, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    b = a + 0.05
    reps_a, reps_b = bootstrap_fds(a, ref, 200, stream=0), bootstrap_fds(b, ref, 200, stream=0)
    change = paired_change([ref.fd(a)], [ref.fd(b)], [reps_a], [reps_b])
    assert change.low <= change.change <= change.high and change.low > 0
    assert change.half_width < 0.25 * float(np.percentile(reps_a, 97.5) - np.percentile(reps_a, 2.5))


def test_changes_average_over_seeds_and_refuse_unequal_inputs() -> None:
    reps = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])]
    change = paired_change([1.0, 3.0], [2.0, 5.0], reps, [r + 1.5 for r in reps])
    assert change.change == pytest.approx(1.5) and change.n_seeds == 2
    assert change.low == pytest.approx(1.5) and change.high == pytest.approx(1.5)
    with pytest.raises(ValueError, match="same number"):
        paired_change([1.0], [2.0, 3.0], reps[:1], reps)
