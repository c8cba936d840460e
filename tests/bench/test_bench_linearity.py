"""Target: the full linearity table of one checkpoint (16 sigmas, every model, the training-set score
over 60,000 images, the default number of probes) in at most a minute. Prints the median and where it goes."""

from __future__ import annotations

import statistics
import time

import torch

from lib.analysis import linearity
from lib.core import config
from lib.data import mnist
from lib.data.statistics import dataset_stats
from lib.diffusion import checkpoints, train_config

REPEATS = 3


def test_bench_linearity_table_one_checkpoint() -> None:
    scale = config.get_scale("default")
    cfg = train_config.train_config("default")
    trained = checkpoints.available_steps(cfg)
    network = checkpoints.load_checkpoint(cfg) if trained else train_config.build_network(cfg).eval()
    stats = dataset_stats()
    x_train = mnist.load_mnist("train")
    models = linearity.analytic_models(stats, x_train, gmm_components=scale.gmm_components,
                                       gaussian_ranks=scale.gaussian_ranks, progress=False)
    x0 = mnist.load_mnist("test")[: scale.n_probes]
    totals, parts = [], []
    for _ in range(REPEATS):
        bank = linearity.ProbeBank(x0, config.PROBE_SIGMAS, "test")
        tic = time.perf_counter()
        bank.add_models(models, progress=False)
        bank.score_network(network)
        totals.append(time.perf_counter() - tic)
        parts.append(dict(bank.timings))
    median = statistics.median(totals)
    share = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    print(f"\n[bench] linearity table: {len(config.PROBE_SIGMAS)} sigmas x {len(models)} models x {scale.n_probes} "
          f"probes (delta over {len(x_train):,} images), {torch.get_num_threads()} threads: median {median:.1f} s "
          f"over {REPEATS} runs")
    print("[bench]   seconds per part: " + ", ".join(f"{k} {v:.1f}" for k, v in share.items()))
