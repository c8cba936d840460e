"""Speed of the analytic models on MNIST : prints medians and the size of the work."""

from __future__ import annotations

import time
from collections.abc import Callable
from statistics import median

import torch

from lib.data import mnist
from lib.data.statistics import dataset_stats
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser

REPEATS = 5


def median_seconds(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def test_bench_closed_form_jump() -> None:
    """Target: the jump of 10,000 MNIST-sized samples to any sigma in under a second."""
    stats = dataset_stats()
    model = GaussianDenoiser.from_stats(stats)
    x = 80.0 * torch.randn(10_000, *stats.shape)
    seconds = median_seconds(lambda: model.jump(x, 80.0, 1.0))
    print(f"\n[bench] closed-form jump: 10,000 samples x d={stats.dim}, float32, "
          f"{torch.get_num_threads()} threads: median {seconds:.3f} s over {REPEATS} runs")


def test_bench_delta_mixture() -> None:
    """Target: about 0.5 s per 256 queries over the 60,000 training images (2 cores)."""
    train = mnist.load_mnist("train")
    model = DeltaMixtureDenoiser(train)
    queries = train[:256] + 0.5 * torch.randn(256, *train.shape[1:])
    seconds = median_seconds(lambda: model(queries, 0.5))
    print(f"\n[bench] delta-mixture denoiser: 256 queries x {len(train):,} images x d={train[0].numel()}, "
          f"float32, {torch.get_num_threads()} threads: median {seconds:.3f} s over {REPEATS} runs")
