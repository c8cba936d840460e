"""Score linearity: how much of a network's score each analytic model explains (the authors' metric).

Probe points are x = x0 + sigma * n with x0 from a probe set (training or held-out test images) and
one fixed noise draw per (probe, sigma), shared by every model and every checkpoint, so that all of
them are judged on the same points. The analytic models' outputs do not depend on the network, so a
`ProbeBank` computes them once and any number of checkpoints is then scored against them. For each
noise level and model a table row holds

    St_EV, St_EV_std      EV(score_net <- score_model), mean and std over probes
    Dt_EV, Dt_EV_std      EV(D_net <- D_model)
    St_EV_rev, Dt_EV_rev  the same with the analytic model as the reference

with the column names of the authors' tables.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pandas as pd
import torch
from tqdm import tqdm

from lib.analysis.metrics import explained_variance, mean_and_std
from lib.models.denoisers import Denoiser, check_sigma

COLUMNS = ["step", "sigma", "model", "probe_set", "n_probes", "St_EV", "St_EV_std", "Dt_EV", "Dt_EV_std",
           "St_EV_rev", "Dt_EV_rev"]


def probe_noise(n: int, shape: tuple[int, ...], sigma_index: int, seed: int) -> torch.Tensor:
    """Unit Gaussian noise for `n` probes at the `sigma_index`-th noise level, reproducible from the seed."""
    if n < 0:
        raise ValueError(f"the number of probes must be >= 0, got {n}")
    generator = torch.Generator().manual_seed(seed * 1000 + sigma_index)
    return torch.randn((n, *shape), generator=generator)


@torch.no_grad()
def evaluate(denoiser: Denoiser, x: torch.Tensor, sigma: float, device: torch.device | str = "cpu",
             batch: int = 256) -> torch.Tensor:
    """D(x; sigma) in fp32 on `device`, in batches, returned on the CPU (empty in, empty out)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if x.shape[0] == 0:
        return torch.empty(x.shape, dtype=torch.float32)
    return torch.cat([denoiser(chunk.to(device), sigma).float().cpu() for chunk in x.split(batch)])


class ProbeBank:
    """Fixed probes x = x0 + sigma n of one probe set, and every analytic model's denoiser output on them.

    `timings` accumulates the seconds spent per model (and "network") for the cost report. Every sigma
    must be finite and > 0 (the scores compared divide by sigma^2).
    """

    def __init__(self, x0: torch.Tensor, sigmas: Iterable[float], probe_set: str, seed: int = 0,
                 device: torch.device | str = "cpu", batch: int = 256) -> None:
        if not isinstance(x0, torch.Tensor):
            raise TypeError(f"x0 must be a torch.Tensor batch (N, C, H, W), got {type(x0).__name__}")
        self.x0 = x0.float()
        self.sigmas = [float(s) for s in sigmas]
        for s in self.sigmas:
            check_sigma(s, positive=True, name="every probe sigma",
                        hint="the scores compared, (D - x) / sigma^2, need a positive noise level")
        self.probe_set = probe_set
        self.device = torch.device(device)
        self.batch = batch
        self.x = [self.x0 + s * probe_noise(len(x0), tuple(x0.shape[1:]), i, seed) for i, s in enumerate(self.sigmas)]
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.timings: dict[str, float] = defaultdict(float)

    def add_models(self, models: Mapping[str, Denoiser], progress: bool = True) -> None:
        """Evaluate each model at every probe (once; models already in the bank are skipped)."""
        todo = [name for name in models if name not in self.outputs]
        for name in tqdm(todo, desc=f"analytic models on {self.probe_set} probes", disable=not progress):
            tic = time.perf_counter()
            self.outputs[name] = [evaluate(models[name], x, s, self.device, self.batch)
                                  for x, s in zip(self.x, self.sigmas, strict=True)]
            self.timings[name] += time.perf_counter() - tic

    def network_outputs(self, network: Denoiser, step: int = -1, progress: bool = False) -> list[torch.Tensor]:
        """The network's denoiser output at every probe, one (n, C, H, W) tensor per noise level."""
        outputs = []
        for x, sigma in zip(tqdm(self.x, desc=f"network step {step}", disable=not progress), self.sigmas, strict=True):
            tic = time.perf_counter()
            outputs.append(evaluate(network, x, sigma, self.device, self.batch))
            self.timings["network"] += time.perf_counter() - tic
        return outputs

    def score_outputs(self, d_net: list[torch.Tensor], step: int = -1) -> pd.DataFrame:
        """The EV table of given network outputs (from `network_outputs`) against every model in the bank."""
        rows = []
        for i, (x, sigma) in enumerate(zip(self.x, self.sigmas, strict=True)):
            for name, outputs in self.outputs.items():
                rows.append(ev_row(d_net[i], outputs[i], x, sigma) | {
                    "step": step, "sigma": sigma, "model": name, "probe_set": self.probe_set, "n_probes": len(x)})
        return pd.DataFrame(rows, columns=COLUMNS)

    def score_network(self, network: Denoiser, step: int = -1, progress: bool = False) -> pd.DataFrame:
        """The EV table of `network` against every model in the bank, one row per (sigma, model)."""
        return self.score_outputs(self.network_outputs(network, step, progress), step)


def ev_row(d_net: torch.Tensor, d_model: torch.Tensor, x: torch.Tensor, sigma: float) -> dict[str, float]:
    """The EV columns for one (network, model, sigma): scores s = (D - x) / sigma^2 compared both ways. An empty
    batch or a sigma that is not finite and positive is a one-line ValueError (the means would be NaN)."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"ev_row needs a batch of at least one probe, got {got}: check the probe set")
    check_sigma(float(sigma), positive=True, hint="ev_row's scores divide by sigma^2")
    s_net, s_model = (d_net - x) / sigma**2, (d_model - x) / sigma**2
    st, st_std = mean_and_std(explained_variance(s_net, s_model))
    dt, dt_std = mean_and_std(explained_variance(d_net, d_model))
    return {"St_EV": st, "St_EV_std": st_std, "Dt_EV": dt, "Dt_EV_std": dt_std,
            "St_EV_rev": mean_and_std(explained_variance(s_model, s_net))[0],
            "Dt_EV_rev": mean_and_std(explained_variance(d_model, d_net))[0]}


# --------------------------------------------------------------------------- the analytic models compared


def analytic_models(
    stats, x_train: torch.Tensor, gmm_components: Iterable[int] = (10, 100), gaussian_ranks: Iterable[int] = (),
    train_subset: int | None = None, seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
) -> dict[str, Denoiser]:
    """The models of the linearity tables, by their table names: `mean`, `mean_std`, `gaussian`,
    `gaussian_rank<r>`, `gmm<K>` (full-rank components) and `delta` (the training-set score). With
    `train_subset` the mixtures and the delta model use only the first `train_subset` training images
    (the smoke scale); the Gaussians always use the full statistics. Mixtures are fitted once and cached."""
    from lib.models import gaussian, gmm, isotropic, mixtures

    models: dict[str, Denoiser] = {
        "mean": isotropic.MeanDenoiser.from_stats(stats, device=device),
        "mean_std": isotropic.IsotropicGaussianDenoiser.from_stats(stats, device=device),
        "gaussian": gaussian.GaussianDenoiser.from_stats(stats, device=device),
    }
    for rank in gaussian_ranks:
        models[f"gaussian_rank{rank}"] = gaussian.GaussianDenoiser.from_stats(stats, rank=rank, device=device)
    subset = x_train if train_subset is None else x_train[:train_subset]
    for k in gmm_components:
        fit = gmm.fit_mixture(subset, k, seed=seed, data_key=f"{stats.key}-n{len(subset)}", progress=progress)
        models[f"gmm{k}"] = fit.denoiser().to(device=device)
    models["delta"] = mixtures.DeltaMixtureDenoiser(subset, device=device)
    return models
