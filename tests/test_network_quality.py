"""The network-quality measures on tiny stand-ins: the rules can pass and fail, one FD row per Heun budget, and a
second measurement comes from the cache, unchanged and without running the network."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lib.analysis import network_quality as nq
from lib.analysis.features import FeatureClassifier
from lib.data import statistics
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import MeanDenoiser

SHAPE = (1, 8, 8)


def images(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (0.4 * torch.randn(n, *SHAPE, generator=gen) + torch.linspace(-0.5, 0.5, 8)).clamp(-1, 1)


def reference() -> nq.Reference:
    torch.manual_seed(0)
    classifier = FeatureClassifier(feature_dim=8, widths=(4, 4, 4), image_size=8).eval()
    return nq.Reference(classifier, "fake-classifier", statistics.compute_stats(images(200, 0)), images(40, 1))


class Counting:
    """A denoiser that counts its evaluations."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.denoiser(x, sigma)


def test_confident_share_of_a_sure_and_of_a_uniform_classifier():
    x = images(30, 2)
    sure = lambda batch: torch.nn.functional.one_hot(torch.zeros(len(batch), dtype=torch.long), 10) * 50.0  # noqa: E731
    uniform = lambda batch: torch.zeros(len(batch), 10)  # noqa: E731
    assert nq.confident_share(sure, x) == 1.0
    assert nq.confident_share(uniform, x) == 0.0
    assert nq.confident_share(uniform, x, threshold=0.1) == 1.0  # p = 0.1 for every class: at the threshold


def test_the_mean_image_against_itself():
    ref = reference()
    mean = MeanDenoiser.from_stats(ref.stats)
    table = nq.denoising_table(mean, ref.stats, ref.x_test, [0.1, 1.0, 20.0, 80.0])
    assert set(table["model"]) == {"network", "mean", "gaussian"}
    assert (nq.error_ratios(table)["vs_mean"] == 1.0).all()
    excess = nq.paired_excess(mean, mean, ref.x_test, [0.1, 20.0, 80.0])
    assert (excess["excess"] == 0).all() and not excess["worse"].any(), "worse than itself nowhere"


def test_worse_than_the_mean_can_be_found():
    ref = reference()
    mean = MeanDenoiser.from_stats(ref.stats)
    off = lambda x, sigma: mean(x, sigma) + 0.3  # noqa: E731  (the mean, shifted)
    excess = nq.paired_excess(off, mean, ref.x_test, [1.0, 80.0])
    assert excess["worse"].all()
    gauss = GaussianDenoiser.from_stats(ref.stats)
    assert not nq.paired_excess(gauss, mean, ref.x_test, [0.1, 1.0])["worse"].any(), "the Gaussian beats the mean"


def test_fd_by_levels_gives_one_row_per_budget():
    ref = reference()
    table, samples = nq.fd_by_levels(GaussianDenoiser.from_stats(ref.stats), ref, (2, 3, 5), 16, n_boot=20,
                                     progress=False)
    assert table["steps"].tolist() == [2, 3, 5]
    assert table["nfe"].tolist() == [3, 5, 9]  # 2N - 1
    assert (table["n_samples"] == 16).all() and table["fd"].notna().all()
    assert sorted(samples) == [2, 3, 5] and samples[5].shape == (16, *SHAPE)
    top = table.set_index("steps").loc[5]
    assert top["rise_to_top"] == 0 and top["rise_low"] == 0 and top["rise_high"] == 0, "the largest N against itself"
    first = table.set_index("steps").loc[2]
    assert first["rise_to_top"] == table["fd"].iloc[-1] - table["fd"].iloc[0]
    assert first["rise_low"] <= first["rise_high"]


def test_measure_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    ref = reference()
    settings = nq.Settings(n_samples=16, levels=(2, 3), n_eval=12, sigmas=(0.5, 20.0, 80.0), n_boot=10)
    network = Counting(GaussianDenoiser.from_stats(ref.stats))
    first = nq.measure(network, "a-network", ref, settings, progress=False)
    calls = network.calls
    again = nq.measure(network, "a-network", ref, settings, progress=False)
    assert network.calls == calls, "the second measurement reads the cache"
    for name in nq.TABLES:
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    assert first.confident["share"].between(0, 1).all()
    side = nq.compare({"short": first, "long": again})
    assert list(side.columns) == ["short", "long"] and (side["short"] == side["long"]).all()
    assert "FD, Heun N = 3 (NFE 5)" in side.index
    stacked = nq.long_tables({"short": first, "long": again})
    assert len(stacked.fd) == 4 and stacked.fd.columns[0] == "network"


def test_the_first_part_is_the_same_run():
    from lib.analysis import run_length
    from lib.diffusion import checkpoints, train_config
    from lib.verdicts.mixtures import C4_COARSE_MAX_K

    config = train_config.train_config("smoke")
    half = run_length.first_part(config)
    assert 2 * half.total_steps == config.total_steps and checkpoints.same_run(config, half)
    assert half.tag != config.tag and half.total_steps in train_config.checkpoint_schedule(config)
    assert run_length.C4_MAX_COMPONENTS == C4_COARSE_MAX_K
    with pytest.raises(ValueError, match="do not split into 7 equal parts"):
        run_length.first_part(config, 7)


def test_the_default_run_splits_at_a_checkpoint_of_its_own():
    """Notebook 02 compares each scale's run with its first half: that step must be one the run saves."""
    from lib.analysis import run_length
    from lib.diffusion import train_config

    for name in ("smoke", "default", "paper"):
        config = train_config.train_config(name)
        assert run_length.first_part(config).total_steps in train_config.checkpoint_schedule(config), name


def test_the_c4_grid_is_what_the_verdict_reads(tmp_path, monkeypatch):
    from dataclasses import replace

    from lib import verdicts
    from lib.analysis import run_length
    from lib.core.config import get_scale

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    x_train, x_test = images(60, 3), images(20, 4)
    stats = statistics.compute_stats(x_train, key="tiny")
    scale = replace(get_scale("smoke"), train_subset=None, grid_components=(1, 2, 200), grid_ranks=(4, None),
                    n_grid_probes=4)
    setup = run_length.grid_setup(stats, x_train, x_test, scale, progress=False)
    assert sorted(setup.models) == ["delta", "gaussian", "gmm1", "gmm1_rank4", "gmm2", "gmm2_rank4"], "K <= 100"
    gauss = GaussianDenoiser.from_stats(stats)
    grid = run_length.grid_table(setup, {10: gauss, 20: MeanDenoiser.from_stats(stats)}, progress=False)
    assert set(grid["step"]) == {10, 20} and set(grid["probe_set"]) == {"train", "test"}
    assert verdicts.c4_verdict(grid, step=10).coarse_model.startswith("gmm2")


def test_band_loss_averages_the_network_rows_inside_the_band_only():
    table = pd.DataFrame({"model": ["network"] * 5 + ["mean"] * 5, "sigma": [0.05, 0.1, 1.0, 2.0, 3.0] * 2,
                          "weighted": [100.0, 1.0, 2.0, 3.0, 100.0] + [50.0] * 5})
    assert nq.band_loss(table) == 2.0  # 0.1 <= sigma <= 2 (C3_C4_BAND), ends included
    assert nq.band_loss(table, (2.5, 80.0)) == 100.0
