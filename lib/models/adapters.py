"""Any torch module as a denoiser: `ModuleDenoiser(module, shape)` adapts a module whose `forward(x, sigma)` already
returns D in EDM's sigma space (for example an EDM network the user has loaded), with the same input checks as
the suite's own denoisers. Our checkpoints and `diffusers` folders are loaded by `lib.study.load_model`.
"""

from __future__ import annotations

import torch
from torch import nn

from lib.models.denoisers import check_batch, sigma_per_sample


class ModuleDenoiser:
    """D(x; sigma) = module(x, sigma) with sigma as a (B,) tensor, in eval mode and without gradients."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...]) -> None:
        self.module, self.shape = module.eval(), tuple(shape)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_batch(x, self.shape, "ModuleDenoiser")
        s = sigma_per_sample(sigma, x, positive=True, hint="pass the small positive sigma the network was trained at")
        with torch.no_grad():
            out = self.module(x, s.flatten())
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the module returned {got} for input {tuple(x.shape)}: its forward(x, sigma) must "
                             "return the denoised images D(x; sigma), same shape as x")
        return out


