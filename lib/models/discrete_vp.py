"""A network trained on a discrete DDPM/VP schedule (a `diffusers` UNet2DModel) as a denoiser D(x; sigma).

A discrete variance-preserving model sees x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at integer timesteps
t = 0 .. T-1, abar_t = prod_{s <= t} (1 - beta_s). In EDM's variance-exploding space, x = x0 + sigma n, the same
state is x_t = x / sqrt(1 + sigma^2) at

    sigma_t = sqrt((1 - abar_t) / abar_t),

so the model's output gives the denoiser

    epsilon:  D(x; sigma) = x - sigma eps_hat,
    v:        D(x; sigma) = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v_hat,
              (v = sqrt(abar) eps - sqrt(1 - abar) x0)
    sample:   D(x; sigma) = x0_hat,

with eps_hat, v_hat, x0_hat the network evaluated at (x / sqrt(1 + sigma^2), t(sigma)). At the training levels
t(sigma_t) = t exactly; between them t is interpolated linearly in log sigma (as k-diffusion's discrete
wrappers do). Outside [sigma_0, sigma_{T-1}] the model is not defined: an error by default; with
`below_range="lowest"` a sigma below sigma_0 (the probes' 0.01 against sigma_0 = 0.0100005 of the usual linear
schedule, a sampler's sigma_min = 0.002) is evaluated at t = 0 with the formulas above at the true sigma, as
k-diffusion's wrappers do by clamping t; D then tends to x as sigma -> 0, as it must.

Nothing is downloaded: `load_diffusers_vp(folder)` reads a local folder saved by `save_pretrained` (a pipeline
folder with `unet/` and `scheduler/`, or a model folder with `scheduler_config.json` beside it), local files only
(`lib.models.model_files`: configs must be JSON objects, the hub is offline for the call). The weights are checked
against the sha256 given as `folder#sha256=<hex>` (or `sha256=`), else a `<weights>.sha256` sidecar when there is
one; NaN or inf in the weights or in the network's first output is an error naming the file. A schedule needs at
least two training levels, 0 < abar_t < 1. Every refusal is one line (`lib.models.errors`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lib.core.integrity import one_line
from lib.models import model_files
from lib.models.denoisers import check_batch, check_shape, sigma_per_sample
from lib.models.errors import ModelError, ModelFileError

PREDICTIONS = ("epsilon", "v_prediction", "sample")
BELOW_RANGE = ("refuse", "lowest")


def vp_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for every training timestep, increasing with t (float64)."""
    abar = alphas_cumprod.double()
    return ((1.0 - abar) / abar).sqrt()


def timestep_of(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The (fractional) timestep of each sigma: exact at the training levels, linear in log sigma between."""
    log_sigmas, log_s = sigmas.log(), sigma.double().log()
    low = torch.searchsorted(log_sigmas, log_s, right=True).clamp(1, len(sigmas) - 1) - 1
    frac = (log_s - log_sigmas[low]) / (log_sigmas[low + 1] - log_sigmas[low])
    return low.double() + frac.clamp(0.0, 1.0)


def check_schedule(alphas_cumprod: object) -> torch.Tensor:
    """`alphas_cumprod` as a tensor if it is a 1-d schedule of at least two levels with 0 < abar_t < 1 (every
    sigma_t finite and positive), else a one-line ModelError."""
    if not isinstance(alphas_cumprod, torch.Tensor) or alphas_cumprod.ndim != 1 or len(alphas_cumprod) < 2:
        got = tuple(alphas_cumprod.shape) if isinstance(alphas_cumprod, torch.Tensor) else type(alphas_cumprod).__name__
        raise ModelError(f"alphas_cumprod must be a 1-d tensor of at least two training levels, got {got}: a "
                         "discrete model interpolates between its levels (set num_train_timesteps >= 2)")
    abar = alphas_cumprod.double()
    if not bool(((abar > 0) & (abar < 1)).all()):
        raise ModelError("alphas_cumprod must lie strictly between 0 and 1 (every sigma_t finite and > 0), got "
                         f"[{float(abar.min()):.4g}, {float(abar.max()):.4g}] or NaN: check the beta schedule")
    return alphas_cumprod


class DiscreteVPDenoiser:
    """D(x; sigma) of a discrete VP network `net(x_t, t) -> output` (the module docstring's formulas).

    `source` names where the network came from (its weights file): a first output holding NaN or inf is an
    error naming it."""

    def __init__(self, net, alphas_cumprod: torch.Tensor, prediction_type: str, shape: tuple[int, ...],
                 below_range: str = "refuse", module: torch.nn.Module | None = None,
                 source: str | None = None) -> None:
        if prediction_type not in PREDICTIONS:
            raise ModelError(f"prediction_type must be one of {', '.join(PREDICTIONS)}, got {prediction_type!r}")
        if below_range not in BELOW_RANGE:
            raise ModelError(f"below_range must be one of {', '.join(BELOW_RANGE)}, got {below_range!r}")
        if not callable(net):
            raise ModelError(f"net must be callable as net(x_t, t), got {type(net).__name__}")
        self.net, self.prediction_type, self.shape = net, prediction_type, check_shape(shape, "DiscreteVPDenoiser")
        self.below_range, self.module = below_range, module  # the nn.Module behind `net`, when there is one
        self.source, self._checked = source or "the network", False
        self.sigmas = vp_sigmas(check_schedule(alphas_cumprod))
        if not bool((self.sigmas[1:] > self.sigmas[:-1]).all()):
            raise ModelError("alphas_cumprod must decrease strictly with t (sigma_t increasing)")

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def _output(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x_t, t)
        out = out.sample if hasattr(out, "sample") else out
        if not self._checked:
            self._check_first_output(out)
        return out

    def _check_first_output(self, out: torch.Tensor) -> None:
        """The first output must be finite (a corrupt weight shows here); later calls are not checked."""
        if not bool(torch.isfinite(out).all()):
            raise ModelError(f"{self.source}: the network's first output holds NaN or inf (a corrupt or wrong weights "
                             "file): copy the file again or check it against its sha256")
        self._checked = True

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_batch(x, self.shape, "DiscreteVPDenoiser")
        s = sigma_per_sample(sigma, x, positive=True, hint="a discrete VP model has no level at sigma = 0")
        flat = s.flatten().double().cpu()
        tol = 1e-6
        below = bool((flat < self.sigma_min * (1 - tol)).any()) and self.below_range == "refuse"
        if below or bool((flat > self.sigma_max * (1 + tol)).any()):
            raise ModelError(f"sigma outside the model's training levels [{self.sigma_min:.4g}, {self.sigma_max:.4g}]; "
                             "a discrete VP model is only defined there")
        t = timestep_of(flat.clamp(self.sigma_min, self.sigma_max), self.sigmas)
        scale = 1.0 / torch.sqrt(1.0 + s**2)  # sqrt(abar)
        out = self._output(x * scale, t.to(device=x.device, dtype=x.dtype)).to(x.dtype)
        if self.prediction_type == "epsilon":
            return x - s * out
        if self.prediction_type == "v_prediction":
            return x * scale**2 - s * scale * out
        return out


def _config_path(folder: Path) -> tuple[Path, Path]:
    """(the UNet's folder, the scheduler's config) of a pipeline folder or a model folder."""
    unet = folder / "unet" if (folder / "unet" / "config.json").exists() else folder
    for candidate in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json",
                      unet / "scheduler_config.json"):
        if candidate.exists():
            return unet, candidate
    raise ModelFileError(f"no scheduler_config.json in {folder} (nor in its scheduler/ subfolder): save the "
                            "model's DDPM scheduler beside it with `scheduler.save_pretrained(folder)`")


def load_diffusers_vp(folder: str | Path, device: torch.device | str = "cpu", below_range: str = "refuse",
                      sha256: str | None = None) -> DiscreteVPDenoiser:
    """A local `diffusers` UNet2DModel and its DDPM-type scheduler config as a denoiser in sigma space
    (`below_range`: see `DiscreteVPDenoiser`). `folder` may end in `#sha256=<hex>`, the weights' digest, as may
    `sha256` be given; nothing is downloaded (the module docstring)."""
    folder, spec_digest = model_files.split_spec(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is not a folder: pass the folder a diffusers model was saved to")
    unet_dir, scheduler_config = _config_path(folder)
    config = model_files.read_json_object(scheduler_config)
    model_files.read_json_object(unet_dir / "config.json")
    weights = model_files.weight_files(unet_dir)
    model_files.check_digests(weights, sha256 or spec_digest)
    with warnings.catch_warnings():  # diffusers imports tqdm.auto, which warns about missing ipywidgets
        warnings.simplefilter("ignore")
        from diffusers import DDPMScheduler, UNet2DModel
    with model_files.offline():
        scheduler = _build(lambda: DDPMScheduler.from_config(config), scheduler_config)
        net = _build(lambda: UNet2DModel.from_pretrained(unet_dir, low_cpu_mem_usage=False, local_files_only=True),
                     unet_dir)
    model_files.check_finite_parameters(net, weights[0] if len(weights) == 1 else unet_dir)
    net = net.to(device).eval()
    size = net.config.sample_size
    shape = (net.config.in_channels, *((size, size) if isinstance(size, int) else size))
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ModelError(f"{scheduler_config}: prediction_type must be one of {', '.join(PREDICTIONS)}, got "
                         f"{prediction!r}: set the one the network was trained with")
    return DiscreteVPDenoiser(lambda x_t, t: net(x_t, t), scheduler.alphas_cumprod, prediction, shape, below_range,
                              module=net, source=str(weights[0] if len(weights) == 1 else unet_dir))


def _build(make, source: Path):
    """`make()` (a diffusers scheduler or model), its refusal of a bad setting as a one-line ModelError naming
    `source`."""
    try:
        return make()
    except (NotImplementedError, ValueError, TypeError, KeyError, AttributeError, OSError, RuntimeError) as exc:
        raise ModelError(f"{source}: diffusers cannot build from it ({one_line(exc)}): fix the setting or save "
                         "the model again with save_pretrained") from None


def training_sigmas(denoiser: DiscreteVPDenoiser) -> list[float]:
    """The model's training levels sigma_t, largest first (for sampling schedules within its range)."""
    return [float(s) for s in denoiser.sigmas.flip(0)]

