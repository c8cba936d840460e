"""Our analytic models against a re-implementation of the authors' formulation (`authors_reference.py`).

Each row times the same computation both ways in one process, alternating ours / authors within every
repeat after one warm-up call each (the agreement check), and prints the medians, their ratio and the share
of the machine's fp32 matmul peak that *our* time represents:

    share = FLOPs of the row's dominant matrix products / our median time / measured peak,

counting 2 m n k per (m, k) x (k, n) product and only the products our model cannot avoid (listed per
row). The peak is the median rate of a few 2048 x 2048 fp32 matmuls at the current torch thread count
(`$REPRO_THREADS`, else every core). Nothing asserts on time (machines are noisy); every row first
asserts that both ways give the same denoiser (relative error per sample below `RTOL`, float32).

Run: `REPRO_THREADS=1 OMP_WAIT_POLICY=PASSIVE pytest tests/bench/test_bench_vs_authors.py -s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from statistics import median

import pytest
import torch
from authors_reference import (
    closed_form_jump,
    gaussian_score_dense,
    mixture_denoiser_eigenbasis,
    mixture_denoiser_per_component,
    training_set_denoiser_softmax,
)

from lib.core import devices
from lib.data import mnist
from lib.data.statistics import DatasetStats, dataset_stats
from lib.models import gmm
from lib.models.gaussian import GaussianDenoiser
from lib.models.mixtures import DeltaMixtureDenoiser

REPEATS = 5  # timed calls per implementation (after one warm-up call each)
SLOW_REPEATS = 3  # for the mixture rows, where the authors' loop takes seconds per call
RTOL = 1e-3  # max over samples of ||D_authors - D_ours|| / ||D_ours||
N_SAMPLES = 10_000
N_QUERIES = 256
K = 100
LOW_RANK = 64

ROWS: list[dict] = []


def median_seconds(fns: Sequence[Callable[[], object]], repeats: int = REPEATS, warmup: bool = True) -> list[float]:
    """Median wall time of each of `fns`: one warm-up call each, then `repeats` rounds calling them in turn."""
    if warmup:
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [median(t) for t in times]


def max_relative_error(reference: torch.Tensor, ours: torch.Tensor) -> float:
    a = reference.reshape(reference.shape[0], -1).double()
    b = ours.reshape(ours.shape[0], -1).double()
    return float(((a - b).norm(dim=1) / b.norm(dim=1)).max())


def check_and_time(name: str, work: str, flops: float, flops_note: str, ours: Callable[[], torch.Tensor],
                   authors: Callable[[], torch.Tensor], peak: float, repeats: int = REPEATS) -> None:
    """Assert that both give the same denoiser, time them alternately, print and record the row.

    The agreement check is each implementation's warm-up call.
    """
    err = max_relative_error(authors(), ours())
    assert err < RTOL, f"{name}: authors' and our denoisers differ (max relative error {err:.2e})"
    t_ours, t_authors = median_seconds([ours, authors], repeats, warmup=False)
    row = {"name": name, "work": work, "ours": t_ours, "authors": t_authors, "ratio": t_authors / t_ours,
           "share": flops / t_ours / peak, "err": err, "flops": flops, "note": flops_note, "repeats": repeats}
    ROWS.append(row)
    print(f"\n[bench vs authors] {name}: {work}\n    ours {t_ours:.3f} s, authors {t_authors:.3f} s "
          f"(medians of {repeats}), authors/ours {row['ratio']:.2f}x; ours at {row['share']:.1%} of the fp32 peak "
          f"({flops / 1e9:.1f} GFLOP: {flops_note}); max rel. difference {err:.1e}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def peak() -> float:
    """Measured fp32 matmul rate (FLOP/s): median of 5 products of 2048 x 2048 matrices."""
    torch.set_num_threads(devices.default_threads())
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    (seconds,) = median_seconds([lambda: a @ b], 5)
    rate = 2 * n**3 / seconds
    print(f"\n[bench vs authors] fp32 matmul peak: {rate / 1e9:.1f} GFLOP/s "
          f"({n}x{n} products, {torch.get_num_threads()} torch threads)")
    return rate


@pytest.fixture(scope="module")
def stats() -> DatasetStats:
    return dataset_stats()


@pytest.fixture(scope="module")
def train() -> torch.Tensor:
    return mnist.load_mnist("train")


@pytest.fixture(scope="module")
def fit100(stats, train) -> gmm.MixtureFit:
    # The key of the cached fits used by the notebooks (data/cache/gmm/<key>-n60000_K100_seed0_v1.pt).
    return gmm.fit_mixture(train, K, data_key=f"{stats.key}-n{len(train)}", progress=False)


# --------------------------------------------------------------------------- rows


def test_gaussian_denoiser(peak, stats, train) -> None:
    """FLOPs: one (B, d) x (d, d) product, the least a dense linear denoiser needs (whatever ours does)."""
    model = GaussianDenoiser.from_stats(stats)
    gen = torch.Generator().manual_seed(0)
    x = train[:N_SAMPLES] + torch.randn(N_SAMPLES, *stats.shape, generator=gen)
    mean, cov = stats.mean.float(), stats.cov.float()
    d = stats.dim
    check_and_time("Gaussian denoiser, sigma=1", f"{N_SAMPLES:,} samples x d={d}", 2 * N_SAMPLES * d * d,
                   "1 product (B,d)x(d,d)", lambda: model(x, 1.0),
                   lambda: gaussian_score_dense(x, mean, cov, 1.0), peak)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 10.0])
def test_training_set_denoiser(peak, train, sigma) -> None:
    """FLOPs: (B, d) x (d, N) for the logits and (B, N) x (N, d) for the weighted average."""
    model = DeltaMixtureDenoiser(train)
    flat = train.reshape(len(train), -1).float().contiguous()
    gen = torch.Generator().manual_seed(1)
    q = train[:N_QUERIES] + sigma * torch.randn(N_QUERIES, *train.shape[1:], generator=gen)
    n, d = flat.shape
    check_and_time(f"training-set denoiser, sigma={sigma:g}", f"{N_QUERIES} queries x {n:,} images x d={d}",
                   2 * 2 * N_QUERIES * n * d, "(B,d)x(d,N) + (B,N)x(N,d)", lambda: model(q, sigma),
                   lambda: training_set_denoiser_softmax(q, flat, sigma), peak)


def _mixture_inputs(fit: gmm.MixtureFit, rank: int | None):
    """The fit's components as the authors would hold them: dense covariances and full or rank-r eigenbases.

    Full rank: Sigma_k = U_k diag(lambda_k) U_k^T + ridge I (what `MixtureFit.denoiser(rank=None)` models);
    its eigenbasis is U_k completed to d columns (complete QR), eigenvalues lambda_k + ridge, then ridge.
    Rank r: Sigma_k = U_k,r diag(lambda_k,r) U_k,r^T (no ridge), eigenbasis U_k,r (zero-padded if m_k < r).
    """
    d = fit.means.shape[1]
    ridge = gmm.DEFAULT_RIDGE
    covs, bases, eigvals = [], [], []
    for vals, vecs in zip(fit.eigvals, fit.eigvecs, strict=True):
        u = vecs.double()
        m = u.shape[1] if rank is None else min(rank, u.shape[1])
        u, lam = u[:, :m], vals[:m].double()
        cov = (u * lam) @ u.T
        if rank is None:
            cov = cov + ridge * torch.eye(d, dtype=torch.float64)
            q, _ = torch.linalg.qr(u, mode="complete")
            bases.append(torch.cat([u, q[:, m:]], dim=1).float())
            eigvals.append(torch.cat([lam + ridge, torch.full((d - m,), ridge, dtype=torch.float64)]).float())
        else:
            basis = torch.zeros(d, rank, dtype=torch.float32)
            basis[:, :m] = u.float()
            lam_r = torch.zeros(rank, dtype=torch.float64)
            lam_r[:m] = lam
            bases.append(basis)
            eigvals.append(lam_r.float())
        covs.append(cov.float())
    return (fit.means.float(), torch.stack(covs), torch.stack(bases), torch.stack(eigvals),
            fit.counts.double() / fit.counts.sum())


@pytest.mark.parametrize("rank", [None, LOW_RANK], ids=["full", f"rank{LOW_RANK}"])
def test_mixture_denoiser(peak, train, fit100, rank) -> None:
    """FLOPs: per component, (B, d) x (d, m_k) onto its eigenbasis and (B, m_k) x (m_k, d) back, with m_k the
    eigenpairs ours keeps (all nonzero ones at full rank, the ridge covering the rest; 64 at rank 64)."""
    sigma = 0.1
    model = fit100.denoiser(rank=rank)
    means, covs, bases, eigvals, weights = _mixture_inputs(fit100, rank)
    gen = torch.Generator().manual_seed(2)
    q = train[:N_QUERIES] + sigma * torch.randn(N_QUERIES, *train.shape[1:], generator=gen)
    d = means.shape[1]
    widths = model.widths
    flops = sum(2 * 2 * N_QUERIES * d * m for m in widths)
    label = "full" if rank is None else f"rank {rank}"
    work = f"{N_QUERIES} queries x K={K} ({'full rank + ridge' if rank is None else label}, " \
           f"sum m_k={sum(widths):,}) x d={d}"
    note = "per component (B,d)x(d,m_k) + (B,m_k)x(m_k,d)"
    check_and_time(f"mixture K={K} {label}, sigma={sigma:g} [authors: dense loop]", work, flops, note,
                   lambda: model(q, sigma), lambda: mixture_denoiser_per_component(q, means, covs, weights, sigma),
                   peak, SLOW_REPEATS)
    check_and_time(f"mixture K={K} {label}, sigma={sigma:g} [authors: eigenbasis]", work, flops, note,
                   lambda: model(q, sigma),
                   lambda: mixture_denoiser_eigenbasis(q, means, bases, eigvals, weights, sigma),
                   peak, SLOW_REPEATS)


def test_closed_form_jump(peak, stats) -> None:
    """FLOPs: one (B, d) x (d, d) product with the jump operator (ours); the authors project and back (two)."""
    model = GaussianDenoiser.from_stats(stats)
    gen = torch.Generator().manual_seed(3)
    x_t = 80.0 * torch.randn(N_SAMPLES, *stats.shape, generator=gen)
    mean, u, lam = stats.mean.float(), stats.eigvecs.float(), stats.eigvals.float()
    d = stats.dim
    check_and_time("closed-form jump, sigma_T=80 -> 1", f"{N_SAMPLES:,} samples x d={d}", 2 * N_SAMPLES * d * d,
                   "1 product (B,d)x(d,d)", lambda: model.jump(x_t, 80.0, 1.0),
                   lambda: closed_form_jump(x_t, mean, u, lam, 80.0, 1.0), peak)


def test_table(peak) -> None:
    """The rows above as one table (only those that ran in this session)."""
    if not ROWS:
        pytest.skip("no rows ran")
    header = f"{'row':<58} {'ours s':>8} {'authors s':>10} {'auth/ours':>9} {'ours %peak':>10}"
    lines = [f"\n[bench vs authors] {torch.get_num_threads()} torch threads, fp32 peak {peak / 1e9:.1f} GFLOP/s",
             header, "-" * len(header)]
    for r in ROWS:
        lines.append(f"{r['name']:<58} {r['ours']:>8.3f} {r['authors']:>10.3f} {r['ratio']:>8.2f}x "
                     f"{r['share']:>10.1%}")
    print("\n".join(lines))
