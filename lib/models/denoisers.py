"""The one interface every model shares - network or analytic - and the score derived from it.

A denoiser is a callable `D(x, sigma)` taking a batch `x` (B, C, H, W) and sigma as a float or a (B,)
tensor, and returning E[x0 | x_sigma = x] with the shape of `x`. The score is never written twice:

    s(x; sigma) = (D(x; sigma) - x) / sigma^2.

Bad input is refused here, once, with a one-line `ModelError` (a ValueError): sigma must be finite and >= 0
(> 0 where sigma = 0 has no meaning, e.g. the score), `check_batch` names the image shape a model expects and
`check_shape` that a shape is a tuple of positive ints.
A Python float sigma is checked in Python (no tensor work); a tensor sigma costs one reduction.
"""

from __future__ import annotations

import math
import numbers
from typing import Protocol

import torch

from lib.models.errors import ModelError


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor: ...


def _first_bad(sigma: float | torch.Tensor, positive: bool) -> float | None:
    """The first sigma that is not finite or below the bound (0, or anything <= 0 with `positive`), else None."""
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() == 0:
            return None
        bad = ~torch.isfinite(sigma) | ((sigma <= 0) if positive else (sigma < 0))
        if not bool(bad.any()):
            return None
        return float(sigma.reshape(-1)[bad.reshape(-1)][0])
    value = float(sigma)
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    return None if ok else value


def check_sigma(sigma: float | torch.Tensor, positive: bool = False, name: str = "sigma", hint: str = "") -> None:
    """Raise a one-line ValueError unless every noise level in `sigma` is finite and >= 0 (> 0 with `positive`).

    `hint` says what to do instead (for example where sigma = 0 has no meaning).
    """
    value = _first_bad(sigma, positive)
    if value is None:
        return
    bound = "> 0" if positive else ">= 0"
    advice = hint or ("a noise level is a standard deviation: pass a finite number "
                      f"{bound} (check the schedule or the computation that produced it)")
    raise ModelError(f"{name} must be finite and {bound}, got {value}: {advice}")


def check_jump_gains(sigma_t: float, sigma: float, dtype: torch.dtype, gains: torch.Tensor | None = None) -> None:
    """A one-line ModelError unless a closed-form jump from sigma_T to sigma is representable in `dtype`: sigma_T^2
    a normal number of it (sigma_T >= 1.1e-19 in float32, 1.5e-154 in float64), the ratio sigma / sigma_T and the
    `gains` finite. Below, a zero-variance direction gives 0/0 (NaN), and its gain sigma / sigma_T has no limit
    as sigma_T -> 0: there is no exact answer to fall back on."""
    fin = torch.finfo(dtype)
    finite = gains is None or bool(torch.isfinite(gains).all())
    if sigma_t**2 < fin.tiny or sigma / sigma_t > fin.max or not finite:
        raise ModelError(f"sigma_T = {sigma_t:g} is too small for a jump to sigma = {sigma:g} in {dtype} "
                         f"(it needs sigma_T^2 >= {fin.tiny:.3g} and finite gains): use float64 or a larger sigma_T")


def check_batch(x: torch.Tensor, shape: tuple[int, ...], model: str) -> None:
    """Raise a one-line ValueError unless `x` is a batch (B, *shape) of the images `model` was built for."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} takes a torch.Tensor batch, got {type(x).__name__}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        expected = ", ".join(str(n) for n in shape)
        raise ModelError(f"{model} expects a batch of shape (B, {expected}), got {tuple(x.shape)}: "
                         f"pass images of {'x'.join(str(n) for n in shape)} (resize or reshape them first)")


def check_shape(shape: object, who: str) -> tuple[int, ...]:
    """`shape` as a tuple of positive ints (the image shape (C, H, W) a model takes), else a one-line ModelError."""
    ok = isinstance(shape, tuple | list) and len(shape) > 0 and all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in shape)
    if not ok:
        raise ModelError(f"{who}: shape must be a tuple of positive ints, the image shape (C, H, W), got {shape!r}: "
                         "pass for example (1, 28, 28)")
    return tuple(int(n) for n in shape)


def sigma_per_sample(
    sigma: float | torch.Tensor, x: torch.Tensor, positive: bool = False, check: bool = True, hint: str = "",
) -> torch.Tensor:
    """Sigma as a (B, 1, 1, 1) tensor in x's dtype and device, from a float, a 0-d or a (B,) tensor.

    With `check` (the default) every sigma must be finite and >= 0 (> 0 with `positive`; `hint` is
    added to the error); `check=False` skips the test where the caller drew sigma itself (training).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor batch (B, C, H, W), got {type(x).__name__}")
    scalar = isinstance(sigma, numbers.Real)
    if check and scalar:
        check_sigma(sigma, positive, hint=hint)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ModelError(f"sigma must be a float or a ({x.shape[0]},) tensor, got shape {tuple(s.shape)}")
    if check and not scalar:
        check_sigma(s, positive, hint=hint)
    return s.reshape(-1, *([1] * (x.ndim - 1)))


_SCORE_HINT = "the score (D - x) / sigma^2 is undefined at sigma = 0; pass a small positive sigma"


def score(denoiser: Denoiser, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """s(x; sigma) = (D(x; sigma) - x) / sigma^2, the score of the noised distribution (sigma > 0)."""
    s = sigma_per_sample(sigma, x, positive=True, hint=_SCORE_HINT)
    return (denoiser(x, sigma) - x) / s**2


def ode_slope(x: torch.Tensor, denoised: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """dx/dsigma = (x - D) / sigma from a denoised estimate D already computed (the samplers keep D for their
    callbacks); `sigma` a positive number or a per-sample tensor that broadcasts against x."""
    return (x - denoised) / sigma


def ode_derivative(denoiser: Denoiser, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE in sigma: dx/dsigma = (x - D(x; sigma)) / sigma = -sigma * score (sigma > 0)."""
    s = sigma_per_sample(sigma, x, positive=True, hint=_SCORE_HINT)
    return ode_slope(x, denoiser(x, sigma), s)
