"""Target (notebook 05): fitting the grid of mixtures once and scoring it fits the default `make figures`
budget. Times a cold fit of K = 100 (into a temporary cache; K = 1,000 and 2,000 take 25-40 min cold on a
2-core CPU, so the grid itself comes from the project's cache, fitted there if missing) and the evaluation
of every (K, rank) mixture on the default number of probes at one noise level; prints medians and the
size of the work."""

from __future__ import annotations

import time
from statistics import median

import torch

from lib.analysis import mixture_grid
from lib.core import config
from lib.data import mnist
from lib.data.statistics import dataset_stats
from lib.models import gmm

REPEATS = 3
SIGMA = 0.1
COLD_K = 100


def test_bench_mixture_grid() -> None:
    scale = config.get_scale("default")
    x_train = mnist.load_mnist("train")
    tic = time.perf_counter()
    gmm.fit_mixture(x_train, COLD_K, data_key=None, progress=False)  # no cache: the fit itself
    fit_seconds = time.perf_counter() - tic
    key = f"{dataset_stats().key}-n{len(x_train)}"  # the notebooks' cache key
    fits = mixture_grid.fit_grid(x_train, scale.grid_components, data_key=key, progress=False)
    models = mixture_grid.grid_models(fits, scale.grid_ranks)
    probes = x_train[: scale.n_grid_probes] + SIGMA * torch.randn(scale.n_grid_probes, *x_train.shape[1:])
    totals = []
    for _ in range(REPEATS):
        tic = time.perf_counter()
        for model in models.values():
            model(probes, SIGMA)
        totals.append(time.perf_counter() - tic)
    per_sigma = median(totals)
    print(f"\n[bench] mixture grid: cold fit of K = {COLD_K} on {len(x_train):,} images, "
          f"{torch.get_num_threads()} threads: {fit_seconds:.0f} s (once, then cached)")
    print(f"[bench]   {len(models)} mixtures x {scale.n_grid_probes} probes at one sigma: median {per_sigma:.1f} s "
          f"over {REPEATS} runs (x {len(config.PROBE_SIGMAS)} sigmas x 2 probe sets in notebook 05: "
          f"~{per_sigma * len(config.PROBE_SIGMAS) * 2 / 60:.0f} min)")
