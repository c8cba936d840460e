"""The samplers by name, what each costs in network evaluations, and sampling with a jump (teleportation).

A teleported run replaces the first k levels of an N-level EDM schedule by one jump of a model with a
closed-form solution (the Gaussian) from sigma_max to sigma_k, then runs the sampler on the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from lib.diffusion.sampler_records import RECORDS
from lib.diffusion.samplers import Callback, check_sigma_schedule
from lib.models.denoisers import Denoiser
from lib.models.edm import karras_sigmas

#: The samplers' functions by name (`lib.diffusion.sampler_records`, one record each).
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {name: r.function for name, r in RECORDS.items()}


def nfe(sampler: str | Callable[..., torch.Tensor], sigmas: torch.Tensor) -> int:
    """Network evaluations of a sampler (a name in `SAMPLERS` or the function) on this schedule, by its record's
    rule: Heun 2 per step, 1 for a step to sigma = 0; Euler, DPM-Solver++(2M) and UniPC 1 per step.
    """
    names = {fn: name for name, fn in SAMPLERS.items()}
    name = sampler if isinstance(sampler, str) else names.get(sampler)
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known: {sorted(SAMPLERS)}")
    check_sigma_schedule(sigmas)
    return RECORDS[name].nfe(sigmas)


def teleport_schedule(
    n_steps: int, sigma_skip: float, sigma_min: float = 0.002, rho: float = 7.0, append_zero: bool = True,
) -> torch.Tensor:
    """A fresh Karras schedule of n_steps levels from sigma_skip down to sigma_min, then 0 (float64).

    Teleportation re-discretizes [sigma_min, sigma_skip] rather than keeping the tail of the schedule
    from sigma_max, so all n_steps steps are spent below sigma_skip. (sigma^(1/rho) is linear in the
    index, so the tail of karras_sigmas(N) from level k *is* teleport_schedule(N - k, sigma_k): the two
    differ only when n_steps is not the number of levels left.) The first level is set to sigma_skip
    exactly, so that it matches the jump's target bit for bit.
    """
    if not sigma_skip > sigma_min:
        raise ValueError(f"sigma_skip must exceed sigma_min, got {sigma_skip} <= {sigma_min}")
    if n_steps < (1 if append_zero else 2):
        raise ValueError(f"too few steps for a schedule: n_steps={n_steps}")

    sigmas = karras_sigmas(n_steps, sigma_min=sigma_min, sigma_max=sigma_skip, rho=rho, append_zero=append_zero)
    sigmas[0] = float(sigma_skip)
    return sigmas


def skip_to_sigma(
    n_total: int, n_skip: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
) -> float:
    """sigma_{n_skip} of the Karras schedule of n_total levels from sigma_max: "skip k of N steps".

    n_skip = 0 gives sigma_max (no teleport); n_skip <= n_total - 2 keeps sigma_skip above sigma_min.
    """
    if not 0 <= n_skip <= n_total - 2:
        raise ValueError(f"n_skip must be in [0, n_total - 2] = [0, {n_total - 2}], got {n_skip}")

    return float(karras_sigmas(n_total, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)[n_skip])


class JumpModel(Protocol):
    """Anything with the closed-form jump of `lib.models.gaussian.GaussianDenoiser` (x_T at sigma_T to x at sigma)."""

    def jump(self, x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor: ...


class NoJump:
    """The control that jumps nowhere: x_T rescaled to pure noise at sigma, x = (sigma / sigma_T) x_T (what a naive
    skip of the first levels does). A `JumpModel` without a model."""

    def jump(self, x_t: torch.Tensor, sigma_t: float, sigma: float) -> torch.Tensor:
        return x_t * (sigma / sigma_t)


def sample_with_teleport(
    sampler: Callable[..., torch.Tensor], denoiser: Denoiser, gaussian_model: JumpModel | None,
    x_T: torch.Tensor, sigma_T: float, sigma_skip: float, n_steps: int,
    sigma_min: float = 0.002, rho: float = 7.0, append_zero: bool = True,
    progress: bool = False, callback: Callback | None = None, batch_size: int | None = None, **sampler_kwargs,
) -> torch.Tensor:
    """Analytical teleportation (Wang & Vastola, claim C6): jump, then sample on a fresh schedule.

        x_skip = gaussian_model.jump(x_T, sigma_T, sigma_skip)       (closed form, no network evaluations)
        x_0    = sampler(denoiser, x_skip, teleport_schedule(n_steps, sigma_skip, sigma_min, rho))

    `gaussian_model`: any `JumpModel`, e.g. the Gaussian, its isotropic twin or `NoJump` (the controls of
    `lib.analysis.teleportation`). sigma_skip >= sigma_T means no teleport (and no model needed: None will do): the
    sampler runs on karras_sigmas(n_steps, sigma_max=sigma_T). The NFE is `nfe(sampler, teleport_schedule(...))`.
    `batch_size`: the jump is made once for all of `x_T`, the sampler run on batches of that many samples (None:
    all at once), and the batches concatenated.
    """
    if sigma_skip >= sigma_T:
        x_start, top = x_T, float(sigma_T)
    else:
        if gaussian_model is None:
            raise ValueError(f"a jump from sigma_T = {sigma_T} to sigma_skip = {sigma_skip} needs a model to jump with")
        x_start, top = gaussian_model.jump(x_T, sigma_T, sigma_skip), float(sigma_skip)
    sigmas = teleport_schedule(n_steps, top, sigma_min=sigma_min, rho=rho, append_zero=append_zero).to(x_T.device)
    chunks = [x_start] if batch_size is None else x_start.split(batch_size)
    out = [sampler(denoiser, chunk, sigmas, progress=progress, callback=callback, **sampler_kwargs) for chunk in chunks]
    return out[0] if len(out) == 1 else torch.cat(out)
