"""The mixture grid, DSM losses, the C4 verdict, nearest-neighbour copies and score-field slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis import linearity, memorization, mixture_grid, score_fields
from lib.models import gmm, mixtures


def _clusters(n_per: int = 60, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(4, 1, 3, 3, generator=g)
    spreads = torch.tensor([0.2, 0.5, 0.3, 0.8]).reshape(4, 1, 1, 1)
    return torch.cat([c + s * torch.randn(n_per, 1, 3, 3, generator=g) for c, s in zip(centres, spreads, strict=True)])


# --------------------------------------------------------------------------- grid and names


@pytest.mark.parametrize("rank", [None, 5])
def test_stacked_eigenpairs_equal_the_mixture_padded_to_a_common_width(rank):
    """Stacking each component's own eigenpairs equals padding all of them to the widest with (zero vector,
    variance = floor) pairs, which the floor term accounts for exactly."""
    x = torch.cat([_clusters(40), _clusters(4, seed=1)])  # clusters of very different sizes -> widths
    fit = gmm.fit_mixture(x, 6, seed=0, progress=False)
    model = fit.denoiser(rank=rank, dtype=torch.float64)
    assert len(set(model.widths)) > 1
    width, d = max(model.widths), model.dim
    eigvals = torch.full((6, width), model.floor, dtype=torch.float64)
    eigvecs = torch.zeros(6, d, width, dtype=torch.float64)
    for k, cols in enumerate(torch.split(torch.arange(model.eigvals.shape[0]), list(model.widths))):
        eigvals[k, :len(cols)], eigvecs[k, :, :len(cols)] = model.eigvals[cols], model.eigvecs[:, cols]
    padded = gmm.GaussianMixtureDenoiser.from_padded(model.means, model.log_weights, eigvals, eigvecs, model.floor,
                                                     model.shape)
    probes = 2 * torch.randn(10, 1, 3, 3, dtype=torch.float64)
    for sigma in (0.05, 0.7, 5.0):
        torch.testing.assert_close(model(probes, sigma), padded(probes, sigma))
        torch.testing.assert_close(model.log_density(probes, sigma), padded.log_density(probes, sigma))


def test_model_names_round_trip_and_name_the_two_ends():
    assert mixture_grid.model_name(10, None) == "gmm10"
    assert mixture_grid.parse_model_name("gmm10", 60000) == (10, "full")
    assert mixture_grid.parse_model_name(mixture_grid.model_name(500, 32), 60000) == (500, "32")
    assert mixture_grid.parse_model_name("gaussian", 60000) == (1, "full")
    assert mixture_grid.parse_model_name("delta", 60000) == (60000, "0")
    with pytest.raises(ValueError, match="not a mixture of the grid"):
        mixture_grid.parse_model_name("mean_std", 60000)
    assert mixture_grid.rank_order(["full", "64", "8", "0"]) == ["0", "8", "64", "full"]


def test_sigma_bands_cover_the_probe_levels_in_three_groups():
    from lib.core.config import PROBE_SIGMAS

    bands = [mixture_grid.sigma_band(s) for s in PROBE_SIGMAS]
    assert bands[:5] == ["low"] * 5 and bands[5:10] == ["mid"] * 5 and bands[10:] == ["high"] * 6


def test_grid_models_build_every_component_count_and_rank():
    fits = mixture_grid.fit_grid(_clusters(), (1, 3), progress=False)
    models = mixture_grid.grid_models(fits, (2, None))
    assert sorted(models) == ["gmm1", "gmm1_rank2", "gmm3", "gmm3_rank2"]
    assert models["gmm3"].n_components == 3


# --------------------------------------------------------------------------- DSM loss


def test_dsm_loss_is_zero_for_the_perfect_denoiser_and_weighted_like_edm():
    x0 = torch.randn(8, 1, 3, 3)
    assert mixture_grid.dsm_loss(x0, x0, 0.3) == 0.0
    # error of 1 everywhere: loss = lambda(sigma) = (s^2 + sd^2)/(s sd)^2
    assert mixture_grid.dsm_loss(x0 + 1, x0, 0.5) == pytest.approx((0.25 + 0.25) / (0.25 * 0.25))


def test_training_set_score_memorizes_its_training_images_and_not_held_out_ones():
    train, test = _clusters(60, seed=0), _clusters(60, seed=0)[:0]
    test = train[:30] + 0.5 * torch.randn(30, 1, 3, 3)  # new points near the data
    banks = {}
    for split, x0 in {"train": train[:30], "test": test}.items():
        banks[split] = linearity.ProbeBank(x0, [0.02, 1.0], split, seed=0)
        banks[split].add_models({"delta": mixtures.DeltaMixtureDenoiser(train)}, progress=False)
    per_sigma = mixture_grid.dsm_loss_table(banks, n_train=len(train))
    low = per_sigma[per_sigma["sigma"] == 0.02].set_index("split")["loss"]
    assert low["train"] < 1e-3 * low["test"]
    gap = mixture_grid.memorization_gap(mixture_grid.band_losses(per_sigma))
    assert (gap.set_index("sigma_band").loc["low", "gap"] > 0)


# --------------------------------------------------------------------------- closest model per band


def test_closest_models_names_the_kind_of_the_best_model_per_band():
    sigmas = (0.05, 1.0, 10.0)
    rows = [{"step": 100, "sigma": s, "model": m, "probe_set": "train", "St_EV": 1 - r}
            for m, per in {"gaussian": (0.5, 0.05, 1e-4), "gmm50": (0.1, 0.02, 2e-4), "delta": (0.9, 0.3, 3e-4)}.items()
            for s, r in zip(sigmas, per, strict=True)]
    table = mixture_grid.annotate(pd.DataFrame(rows), n_train=1000)
    closest = mixture_grid.closest_models(mixture_grid.band_residuals(table)).set_index("sigma_band")
    assert closest.loc["low", "closest_kind"] == "mixture" and closest.loc["high", "closest_kind"] == "Gaussian"
    assert closest.loc["low", "delta_residual"] == pytest.approx(0.9)


# --------------------------------------------------------------------------- memorization


def test_nearest_neighbours_match_brute_force_and_flag_exact_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(500, 1, 4, 4, generator=g)
    queries = torch.cat([train[[3, 77, 410]], torch.randn(20, 1, 4, 4, generator=g)])
    found = memorization.nearest_training_images(queries, train, chunk=64)
    brute = torch.cdist(queries.reshape(len(queries), -1).double(), train.reshape(500, -1).double())
    top2 = brute.topk(2, largest=False)
    torch.testing.assert_close(found.d1, top2.values[:, 0])
    torch.testing.assert_close(found.d2, top2.values[:, 1])
    assert found.index[:3].tolist() == [3, 77, 410]
    assert found.ratio[:3].max() < 1e-6
    assert found.copy_fraction() == pytest.approx(3 / 23, abs=0.1)


def test_nearest_neighbour_needs_two_training_images():
    with pytest.raises(ValueError, match="at least two"):
        memorization.nearest_training_images(torch.randn(2, 3), torch.randn(1, 3))


# --------------------------------------------------------------------------- score-field slices


def test_plane_passes_through_its_three_images():
    a, b, c = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    plane = score_fields.plane_through(a, b, c)
    torch.testing.assert_close(plane.basis @ plane.basis.T, torch.eye(2, dtype=torch.float64))
    back = plane.points(plane.anchors)
    torch.testing.assert_close(back.double(), torch.stack([a, b, c]), atol=1e-5, rtol=1e-5)
    uv = score_fields.grid_coordinates(plane, 5)
    assert uv.shape == (5, 5, 2)


def test_collinear_images_are_a_clear_error():
    a = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="collinear"):
        score_fields.plane_through(a, a + 1, a + 2)


def test_projected_score_of_a_point_mass_points_at_it():
    """The training-set score of one image pulls every point straight towards it: in-plane, fully."""
    a, b, c = torch.randn(3, 1, 3, 3)
    target = mixtures.DeltaMixtureDenoiser(torch.stack([a, a.clone()]))  # a single point (twice)
    plane = score_fields.plane_through(a, b, c)
    uv = torch.tensor([[1.0, 2.0], [-0.5, 0.3]])
    field, fraction = score_fields.projected_score(target, plane, uv, sigma=0.7)
    torch.testing.assert_close(field.float(), -uv / 0.49, atol=1e-4, rtol=1e-4)
    assert np.allclose(fraction.numpy(), 1.0, atol=1e-5)
