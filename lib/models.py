"""Where a denoiser D(x; sigma) comes from: our checkpoints, a local `diffusers` model, or any torch module.

`load_model(spec)` takes

- `ours` or `ours:<scale>`: the network trained by `lib.train` at that scale (default `$REPRO_SCALE`), its last
  EMA checkpoint;
- the path of a folder saved by `diffusers` (`lib.discrete_vp.load_diffusers_vp`: a discrete DDPM/VP
  `UNet2DModel` and its scheduler config).

`ModuleDenoiser(module, shape)` adapts any module whose `forward(x, sigma)` already returns D in EDM's sigma
space (for example an EDM network the user has loaded), with the same input checks as the suite's own denoisers.
Nothing is downloaded. The notebooks reach it through `lib.study`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lib.denoisers import Denoiser, check_batch, sigma_per_sample


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


def load_model(spec: str, device: torch.device | str = "cpu", below_range: str = "refuse") -> Denoiser:
    """`ours`, `ours:<scale>` or a diffusers folder as a denoiser; see the module docstring. `below_range`: what a
    discrete model does with a sigma below its lowest training level (`lib.discrete_vp.DiscreteVPDenoiser`)."""
    if spec == "ours" or spec.startswith("ours:"):
        from lib import train

        scale = spec.partition(":")[2] or None
        return train.load_checkpoint(train.train_config(scale), device=device)
    if Path(spec).is_dir():
        from lib import discrete_vp

        return discrete_vp.load_diffusers_vp(spec, device=device, below_range=below_range)
    raise ValueError(f"model {spec!r}: use ours, ours:<scale> (smoke, default, paper) or the folder of a saved "
                     "diffusers model")
