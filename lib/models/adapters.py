"""Any torch module as a denoiser: `ModuleDenoiser(module, shape)` adapts a module whose `forward(x, sigma)` already
returns D in EDM's sigma space (for example an EDM network the user has loaded), with the same input checks as
the suite's own denoisers. Our checkpoints and `diffusers` folders are loaded by `lib.study.load_model`.

The adapter checks what it is given, once, with a one-line `ModelError`: a `torch.nn.Module`, an image shape
that is a tuple of positive ints, and a `forward` that can be called as `forward(x, sigma)`.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from lib.models.denoisers import check_batch, check_shape, sigma_per_sample
from lib.models.errors import ModelError


def check_module(module: object, who: str = "ModuleDenoiser") -> nn.Module:
    """`module` if it is a `torch.nn.Module` whose `forward` takes (x, sigma), else a one-line ModelError."""
    if not isinstance(module, nn.Module):
        raise ModelError(f"{who}: module must be a torch.nn.Module with forward(x, sigma) -> D, got "
                         f"{type(module).__name__}: load the network first (e.g. torch.load or its from_pretrained)")
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):  # no signature to read (a builtin): the first call will tell
        return module
    try:
        signature.bind(None, None)
    except TypeError:
        raise ModelError(f"{who}: {type(module).__name__}.forward{signature} cannot be called as forward(x, sigma): "
                         "wrap the network in a module whose forward takes the batch and the noise levels "
                         "and returns D(x; sigma)") from None
    return module


class ModuleDenoiser:
    """D(x; sigma) = module(x, sigma) with sigma as a (B,) tensor, in eval mode and without gradients."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...]) -> None:
        self.shape = check_shape(shape, "ModuleDenoiser")
        self.module = check_module(module).eval()

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_batch(x, self.shape, "ModuleDenoiser")
        s = sigma_per_sample(sigma, x, positive=True, hint="pass the small positive sigma the network was trained at")
        with torch.no_grad():
            out = self.module(x, s.flatten())
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError(f"the module returned {got} for input {tuple(x.shape)}: its forward(x, sigma) must "
                             "return the denoised images D(x; sigma), same shape as x")
        return out
