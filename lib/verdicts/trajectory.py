"""Claim C5: the Gaussian closed form predicts the early part of the network's sampling trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.verdicts.common import yes as _yes

#: C5: the Gaussian "predicts" the network's denoised estimate while the median RMS pixel deviation stays
#: below this (5% of the [-1, 1] pixel range) ...
C5_DEVIATION_THRESHOLD = 0.1
#: ... and it must do so at least down to this sigma (skipping the first 30% of an 18-step EDM schedule
#: lands at sigma ~ 12.9, so teleportation needs the prediction to hold there).
C5_REQUIRED_SIGMA = 10.0


@dataclass(frozen=True)
class C5Verdict:
    """Claim C5: the Gaussian closed form predicts the early part of the network's sampling trajectory."""

    break_sigma_x0: float | None  # highest sigma at which the x0_hat deviation reaches the threshold
    break_sigma_x: float | None  # the same for the state x_sigma
    gaussian_closer_than_delta: bool  # early on, the Gaussian predicts the network better than the training set

    @staticmethod
    def _holds_below(break_sigma: float | None) -> bool:
        return break_sigma is None or break_sigma < C5_REQUIRED_SIGMA

    @property
    def holds_for_x(self) -> bool:
        return self._holds_below(self.break_sigma_x)

    @property
    def holds_for_x0(self) -> bool:
        return self._holds_below(self.break_sigma_x0)

    @property
    def holds(self) -> bool:
        return self.holds_for_x and self.holds_for_x0

    def report(self) -> str:
        def where(s: float | None) -> str:
            return "never along the trajectory" if s is None else f"from sigma = {s:.3g} down"

        if self.holds:
            outcome = "REPRODUCED"
        elif self.holds_for_x or self.holds_for_x0:
            outcome = "PARTLY REPRODUCED"
        else:
            outcome = "NOT REPRODUCED"
        lines = [
            "C5: the Gaussian solution predicts the early sampling trajectory",
            f"  x_sigma deviates by >= {C5_DEVIATION_THRESHOLD} RMS (median) {where(self.break_sigma_x)}",
            f"  x0_hat deviates by >= {C5_DEVIATION_THRESHOLD} RMS (median) {where(self.break_sigma_x0)}",
            f"  x_sigma predicted down to sigma = {C5_REQUIRED_SIGMA:g} (teleport range): {_yes(self.holds_for_x)}",
            f"  x0_hat predicted down to sigma = {C5_REQUIRED_SIGMA:g}: {_yes(self.holds_for_x0)}",
            "  Gaussian predicts the network's x0_hat better than the training-set score does for sigma >= "
            f"{C5_REQUIRED_SIGMA:g}: {_yes(self.gaussian_closer_than_delta)}",
            f"verdict: C5 {outcome}",
        ]
        return "\n".join(lines)


def c5_verdict(sigmas, deviation_x0, deviation_x, deviation_x0_delta) -> C5Verdict:
    """Judge C5 from median deviations (network vs Gaussian, and network vs training-set score) per sigma,
    ordered from the highest sigma down."""
    from lib.trajectories import prediction_break_sigma  # imports torch: only when judging C5

    sig = np.asarray(sigmas, dtype=float)
    early = sig >= C5_REQUIRED_SIGMA
    closer = bool(early.any() and (np.asarray(deviation_x0)[early] <= np.asarray(deviation_x0_delta)[early]).all())
    return C5Verdict(prediction_break_sigma(sig, deviation_x0, C5_DEVIATION_THRESHOLD),
                     prediction_break_sigma(sig, deviation_x, C5_DEVIATION_THRESHOLD), closer)
