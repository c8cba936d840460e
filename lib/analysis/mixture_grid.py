"""The grid of Gaussian mixtures between the Gaussian and the training set (claim C4, notebook 05).

A Gaussian mixture with K components of rank r interpolates between the two models the paper contrasts:

    K = 1, full rank      the Gaussian N(mu, Sigma)                     (generalizes; too coarse at low noise)
    K = N, rank 0         the delta mixture of the N training images    (reproduces training images only)

Each K is fitted once (k-means, then every cluster's eigenpairs; `lib.models.gmm`, cached by data, K and seed);
every rank is a truncation of the same eigenpairs, so the grid costs one fit per K. Models are named
`gmm<K>` (full rank) and `gmm<K>_rank<r>`, as in the linearity tables, which the grid table extends with
the columns `K` and `rank` ("full", an integer, or "0" for the training set).

The denoising score-matching (DSM) loss of a denoiser D used directly as a score model, on clean images x0,

    L(sigma) = lambda(sigma) E ||D(x0 + sigma n; sigma) - x0||^2 / d,   lambda = (sigma^2 + sd^2) / (sigma sd)^2

(EDM's weighting, per pixel), is evaluated on training and on held-out test images; the test - train gap
measures how much a model has memorized its training set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lib.core.conventions import MIXTURE_NAME, SIGMA_BANDS
from lib.models import gmm
from lib.models.denoisers import Denoiser
from lib.models.edm import SIGMA_DATA

#: Notebook 05's reading of its heat map: a mixture is clearly closer to the network than the training set at a level
#: where the best mixture's residual is below this share of the training set's ...
CLEARLY_CLOSER = 0.9
#: ... and every model agrees at a level where each residual is within this relative distance of the training set's.
AGREEMENT_RTOL = 0.1

def model_name(n_components: int, rank: int | None) -> str:
    """`gmm<K>` for full-rank components, `gmm<K>_rank<r>` at rank r."""
    return f"gmm{n_components}" if rank is None else f"gmm{n_components}_rank{rank}"


def parse_model_name(name: str, n_train: int) -> tuple[int, str]:
    """(K, rank) of a table model: a grid mixture, `gaussian` (1, "full") or `delta` (n_train, "0")."""
    if name == "gaussian":
        return 1, "full"
    if name == "delta":
        return n_train, "0"
    match = MIXTURE_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a mixture of the grid (gmm<K> or gmm<K>_rank<r>), gaussian or delta")
    return int(match["K"]), match["rank"] or "full"


def is_grid_model(name: str) -> bool:
    """Whether a table model belongs to the family of the grid: a mixture, the Gaussian or the training set."""
    return name in ("gaussian", "delta") or MIXTURE_NAME.match(name) is not None


def sigma_band(sigma: float) -> str | None:
    """The band ("low", "mid", "high") a noise level belongs to, None between bands."""
    for band, (lo, hi) in SIGMA_BANDS.items():
        if lo <= sigma <= hi:
            return band
    return None


def fit_grid(x_train: torch.Tensor, components: Iterable[int], seed: int = 0, data_key: str | None = None,
             progress: bool = True) -> dict[int, gmm.MixtureFit]:
    """One k-means fit (with every cluster's eigenpairs) per K; cached when `data_key` is given."""
    return {k: gmm.fit_mixture(x_train, k, seed=seed, data_key=data_key, progress=progress) for k in components}


def grid_models(fits: dict[int, gmm.MixtureFit], ranks: Sequence[int | None],
                device: torch.device | str = "cpu") -> dict[str, Denoiser]:
    """Every (K, rank) mixture of the grid as a denoiser, by table name."""
    return {model_name(k, r): fit.denoiser(rank=r).to(device=device) for k, fit in fits.items() for r in ranks}


def annotate(table: pd.DataFrame, n_train: int) -> pd.DataFrame:
    """The linearity table with the columns `K` and `rank` of each model (rows of other models dropped)."""
    keep = table[table["model"].map(is_grid_model)].copy()
    parsed = keep["model"].map(lambda m: parse_model_name(m, n_train))
    keep["K"] = parsed.map(lambda p: p[0]).astype(int)
    keep["rank"] = parsed.map(lambda p: p[1])
    return keep


def rank_order(ranks: Iterable[str]) -> list[str]:
    """Ranks sorted as numbers, "full" last."""
    return sorted(set(ranks), key=lambda r: float("inf") if r == "full" else int(r))


# --------------------------------------------------------------------------- DSM loss


def dsm_weight(sigma: float, sigma_data: float = SIGMA_DATA) -> float:
    """EDM's loss weight lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def dsm_loss(denoised: torch.Tensor, x0: torch.Tensor, sigma: float) -> float:
    """lambda(sigma) * mean over images and pixels of (D - x0)^2, in float64."""
    err = (denoised.double() - x0.double()).reshape(len(x0), -1)
    return dsm_weight(sigma) * float((err**2).mean())


def dsm_loss_table(banks: dict, networks: Mapping[str, Mapping[str, list[torch.Tensor]]] | None = None,
                   n_train: int | None = None,
                   model_losses: Mapping[tuple[str, str], Sequence[float]] | None = None) -> pd.DataFrame:
    """Per (model, split, sigma) DSM loss from the probe banks' stored outputs (no new evaluations).

    `banks` maps a split ("train", "test") to a `lib.analysis.linearity.ProbeBank` whose clean images are that split's;
    `networks` maps a row name (e.g. "network (step 4000)") to that network's outputs on each split's probes
    (`ProbeBank.network_outputs`). Bank models outside the grid are skipped; networks get K = rank = None.
    `model_losses` ((split, model) -> loss per sigma, `lib.analysis.grid_sweep`) replaces the banks' stored outputs
    of the grid models when they were scored without being kept. Columns: model, K, rank, split, sigma, sigma_band,
    loss.
    """
    rows = []
    for split, bank in banks.items():
        losses = {name: [dsm_loss(denoised, bank.x0, sigma) for sigma, denoised in zip(bank.sigmas, per_split[split],
                                                                                      strict=True)]
                  for name, per_split in (networks or {}).items() if split in per_split}
        named = {name: (None, None) for name in losses}
        if model_losses is None:
            losses |= {name: [dsm_loss(d, bank.x0, sigma) for sigma, d in zip(bank.sigmas, per_sigma, strict=True)]
                       for name, per_sigma in bank.outputs.items() if is_grid_model(name)}
        else:
            losses |= {name: list(values) for (where, name), values in model_losses.items() if where == split}
        named |= {name: parse_model_name(name, n_train or 0) for name in losses if name not in named}
        for name, (k, rank) in named.items():
            for sigma, loss in zip(bank.sigmas, losses[name], strict=True):
                rows.append({"model": name, "K": k, "rank": rank, "split": split, "sigma": sigma,
                             "sigma_band": sigma_band(sigma), "loss": loss})
    return pd.DataFrame(rows)


def band_losses(per_sigma: pd.DataFrame) -> pd.DataFrame:
    """Mean DSM loss per (model, K, rank, split, sigma_band): the committed `mixture_dsm_loss.csv` rows."""
    keys = ["model", "K", "rank", "split", "sigma_band"]
    table = per_sigma.dropna(subset=["sigma_band"]).groupby(keys, dropna=False, sort=False)["loss"].mean()
    return table.reset_index()


def memorization_gap(band_table: pd.DataFrame) -> pd.DataFrame:
    """test - train DSM loss per (model, K, rank, sigma_band), for models scored on both splits."""
    wide = band_table.pivot_table(index=["model", "sigma_band"], columns="split", values="loss")
    wide = wide.dropna()
    wide["gap"] = wide["test"] - wide["train"]
    wide["ratio"] = wide["test"] / wide["train"]
    return wide.reset_index()


# --------------------------------------------------------------------------- which model is closest


def band_residuals(table: pd.DataFrame, column: str = "St_EV") -> pd.DataFrame:
    """Geometric-mean residual 1 - EV over each band's noise levels, per (step, probe_set, model, K, rank)."""
    frame = table.assign(sigma_band=table["sigma"].map(sigma_band)).dropna(subset=["sigma_band"])
    frame = frame.assign(log_residual=np.log10(np.clip(1.0 - frame[column].to_numpy(), 1e-12, None)))
    keys = ["step", "probe_set", "sigma_band", "model", "K", "rank"]
    out = frame.groupby(keys, sort=False)["log_residual"].mean().reset_index()
    out["residual"] = 10.0 ** out.pop("log_residual")
    return out


def model_kind(name: str) -> str:
    """'Gaussian', 'mixture' or 'training set', the three answers C4 can give."""
    if name == "delta":
        return "training set"
    match = MIXTURE_NAME.match(name)
    if name == "gaussian" or (match is not None and match["K"] == "1"):
        return "Gaussian"
    return "mixture"


def closest_models(residuals: pd.DataFrame) -> pd.DataFrame:
    """Per (step, probe_set, sigma_band): the model with the smallest band residual, its kind, the best
    mixture (K > 1) and the training set's residual."""
    rows = []
    for (step, probe_set, band), group in residuals.groupby(["step", "probe_set", "sigma_band"], sort=False):
        best = group.loc[group["residual"].idxmin()]
        mixtures = group[group["model"].map(model_kind) == "mixture"]
        best_mix = mixtures.loc[mixtures["residual"].idxmin()] if len(mixtures) else None
        delta = group[group["model"] == "delta"]
        gauss = group[group["model"].map(model_kind) == "Gaussian"]
        rows.append({
            "step": step, "probe_set": probe_set, "sigma_band": band,
            "closest": best["model"], "closest_kind": model_kind(best["model"]), "closest_residual": best["residual"],
            "best_mixture": None if best_mix is None else best_mix["model"],
            "best_mixture_residual": np.nan if best_mix is None else best_mix["residual"],
            "delta_residual": float(delta["residual"].iloc[0]) if len(delta) else np.nan,
            "gaussian_residual": float(gauss["residual"].min()) if len(gauss) else np.nan,
        })
    return pd.DataFrame(rows)
