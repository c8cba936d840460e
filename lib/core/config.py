"""Scale presets: one place that says how big every experiment is.

`smoke` runs each notebook in about a minute on 2 CPU cores (CI, via nbval); `default` is what
`make figures` runs on a laptop CPU and what is committed; `paper` follows the authors' settings and
is meant for a GPU. Notebooks read the scale from their papermill `parameters` cell, which falls back
to the environment variable `REPRO_SCALE`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

from lib.core.errors import ReproError

SCALE_ENV_VAR = "REPRO_SCALE"

#: The 16 noise levels at which linearity is probed (those of the authors' tables).
PROBE_SIGMAS: tuple[float, ...] = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 80.0,
)
#: Notebook 03's levels (claim C2): the authors' 16 and three between 2 and 5, where the Gaussian's and the
#: isotropic models' 99% crossings fall, so that those crossings are measured between close levels rather than
#: interpolated across the authors' gap from 2 to 5.
LINEARITY_SIGMAS: tuple[float, ...] = tuple(sorted((*PROBE_SIGMAS, 2.5, 3.0, 4.0)))


@dataclass(frozen=True)
class Scale:
    """How much work each notebook does at one scale."""

    name: str
    image_size: int = 32
    # notebook 00: data statistics
    n_grid_images: int = 64
    n_pc_images: int = 16
    # notebook 01: closed form
    n_closed_form_samples: int = 8  # trajectories verified against numerical integration
    heun_step_counts: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    n_gaussian_samples: int = 16  # samples shown per rank
    n_far_field_probes: int = 64
    train_subset: int | None = None  # mixtures and the training-set score use the first N images (None: all)
    # notebooks 03-05: linearity probes per noise level and probe set, and the models compared
    n_probes: int = 256
    gmm_components: tuple[int, ...] = (10, 100)
    gaussian_ranks: tuple[int, ...] = (64,)
    # notebook 04: training dynamics, every checkpoint at these noise levels
    dynamics_sigmas: tuple[float, ...] = (0.1, 0.2, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)
    n_dynamics_probes: int = 256
    # notebook 06: sampling trajectories compared with the closed form
    n_trajectories: int = 64
    trajectory_steps: int = 18
    # notebook 01: Heun steps of the trajectory on which feature emergence is measured
    emergence_steps: int = 128
    # notebook 05: the grid of Gaussian mixtures (components K by component rank; None = full rank)
    # K up to 2,000 (about 30 images per component), far enough to see where the residual stops falling
    grid_components: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
    grid_ranks: tuple[int | None, ...] = (8, 16, 32, 64, 128, 256, 512, None)
    n_grid_probes: int = 128  # probes per noise level, on training and on held-out test images
    early_step: int = 1_000  # the early checkpoint compared with the final one
    n_memorization_samples: int = 256
    field_grid: int = 13  # arrow-map points per side in the plane through three training images
    # notebook 07: analytical teleportation; (sampler, number of noise levels) budgets
    teleport_budgets: tuple[tuple[str, int], ...] = (
        ("heun", 10), ("heun", 18), ("dpmpp_2m", 6), ("dpmpp_2m", 12), ("unipc", 6), ("unipc", 12),
        ("dpm_solver_v3", 6), ("dpm_solver_v3", 12),
    )
    teleport_skip_fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5)
    n_teleport_samples: int = 500  # samples per (budget, skip, seed)
    # the second stage: the skips whose interval straddles the C6 tolerance, and their plain runs, get samples up to
    # this many (equal to n_teleport_samples: one stage); 2,000 halves the intervals of 500
    n_teleport_samples_max: int = 2_000
    # plain runs (no teleport) at more budgets: the equal-cost reference of the quality-vs-NFE comparison
    plain_budgets: tuple[tuple[str, int], ...] = (
        ("heun", 6), ("heun", 8), ("heun", 12), ("heun", 14),
        ("dpmpp_2m", 3), ("dpmpp_2m", 4), ("dpmpp_2m", 5), ("dpmpp_2m", 8), ("dpmpp_2m", 9), ("dpmpp_2m", 10),
        ("unipc", 3), ("unipc", 4), ("unipc", 5), ("unipc", 8), ("unipc", 9), ("unipc", 10),
        ("dpm_solver_v3", 3), ("dpm_solver_v3", 4), ("dpm_solver_v3", 5), ("dpm_solver_v3", 8), ("dpm_solver_v3", 9),
        ("dpm_solver_v3", 10),
    )
    # one seed: the paired bootstrap over the samples of each configuration gives the intervals of the verdict
    teleport_seeds: tuple[int, ...] = (0,)
    # the controls: how else a run can reach sigma_skip (lib.analysis.teleportation.JUMPS)
    teleport_jumps: tuple[str, ...] = ("gaussian", "isotropic", "noise")
    n_bootstrap: int = 200  # resamples for the intervals of paired FD changes
    # plain DPM-Solver++(2M) and UniPC at small budgets: the levels studied, and the middle level of a 3-level
    # schedule scanned across the noise range
    schedule_study_levels: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
    middle_level_scan: tuple[float, ...] = (0.3, 0.6, 1.0, 1.6, 2.5, 4.0, 6.0, 10.0)
    # issue 29 (beyond the paper, lib.analysis.gain_study): the denoiser's gain along each principal component.
    # Modes: the top `gain_top_modes` and about `gain_log_modes` more spaced in log k (lib.analysis.gains.mode_indices)
    gain_top_modes: int = 10
    gain_log_modes: int = 20
    # notebook 03: the final network on held-out probes at these levels (None: LINEARITY_SIGMAS), and the training-set
    # score (the memorising reference, costly on 60,000 images) on fewer probes and levels; Jacobian variation along
    # this many random directions
    gain_sigmas: tuple[float, ...] | None = None
    n_gain_probes: int = 64
    gain_reference_sigmas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)
    n_gain_reference_probes: int = 16
    n_gain_directions: int = 4
    # notebook 04: this many checkpoints (0 and the last among them), each mode at the level nearest sqrt(lambda_k)
    n_gain_checkpoints: int = 14
    n_gain_training_probes: int = 64

    def as_dict(self) -> dict:
        return asdict(self)


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke",
        n_grid_images=16,
        n_pc_images=8,
        n_closed_form_samples=2,
        heun_step_counts=(8, 16, 32, 64),
        n_gaussian_samples=8,
        n_far_field_probes=16,
        train_subset=5_000,
        n_probes=32,
        gmm_components=(2, 5),
        dynamics_sigmas=(0.5, 2.0, 10.0),
        n_dynamics_probes=32,
        n_trajectories=8,
        emergence_steps=64,
        grid_components=(1, 2, 5),
        grid_ranks=(8, 32, None),
        n_grid_probes=32,
        early_step=30,
        n_memorization_samples=32,
        field_grid=7,
        teleport_budgets=(("heun", 6), ("dpmpp_2m", 5), ("unipc", 5), ("dpm_solver_v3", 5)),
        teleport_skip_fractions=(0.0, 0.2, 0.4),
        plain_budgets=(("heun", 4), ("dpmpp_2m", 3), ("unipc", 3), ("dpm_solver_v3", 3)),
        n_teleport_samples=64,
        n_teleport_samples_max=128,
        n_bootstrap=40,
        schedule_study_levels=(3, 4),
        middle_level_scan=(1.0, 4.0),
        gain_top_modes=5,
        gain_log_modes=5,
        gain_sigmas=(0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 80.0),
        n_gain_probes=8,
        gain_reference_sigmas=(0.5, 2.0),
        n_gain_reference_probes=4,
        n_gain_directions=2,
        n_gain_checkpoints=4,
        n_gain_training_probes=8,
    ),
    "default": Scale(name="default"),
    "paper": Scale(
        name="paper",
        n_closed_form_samples=32,
        heun_step_counts=(4, 8, 16, 32, 64, 128, 256, 512),
        n_far_field_probes=256,
        n_probes=1024,
        n_dynamics_probes=1024,
        n_trajectories=256,
        emergence_steps=512,
        n_grid_probes=512,
        n_memorization_samples=1024,
        teleport_budgets=(
            ("heun", 10), ("heun", 18), ("heun", 32), ("dpmpp_2m", 6), ("dpmpp_2m", 12), ("dpmpp_2m", 20),
            ("unipc", 6), ("unipc", 12), ("unipc", 20), ("dpm_solver_v3", 6), ("dpm_solver_v3", 12),
            ("dpm_solver_v3", 20),
        ),
        n_teleport_samples=5_000,
        n_teleport_samples_max=5_000,
        teleport_seeds=(0, 1, 2),
        gain_log_modes=40,
        n_gain_probes=256,
        n_gain_reference_probes=64,
        n_gain_directions=16,
        n_gain_checkpoints=30,
        n_gain_training_probes=256,
    ),
}


class UnknownScaleError(ReproError, ValueError):
    """Raised for a scale name that is not one of `SCALES`."""


def scale_name_from_environment() -> str:
    """The scale every entry point uses when none is given: `$REPRO_SCALE`, else `default`."""
    return os.environ.get(SCALE_ENV_VAR, "default")


def get_scale(name: str | None = None) -> Scale:
    """The preset called `name`, or the one named by `$REPRO_SCALE` (default: `default`)."""
    if name is None:
        name = scale_name_from_environment()
    try:
        return SCALES[name]
    except KeyError:
        valid = ", ".join(SCALES)
        raise UnknownScaleError(f"unknown scale {name!r}: choose one of {valid}") from None


def scale_from_command_line(name: str) -> str | None:
    """The scale called `name` for a command-line tool, or None after printing the one-line error (exit 2)."""
    try:
        return get_scale(name).name
    except UnknownScaleError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
