"""lib.data.datasets: every format on tiny data made here, and a one-line error for each wrong input."""

from __future__ import annotations

import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torch

from lib.data import datasets
from lib.data.datasets import DatasetError


def _rgb(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_npz_in_either_layout_and_range_gives_the_same_dataset(tmp_path):
    x_train, x_test = _rgb(6), _rgb(4, seed=1)
    np.savez(tmp_path / "a.npz", x_train=x_train, x_test=x_test, y_train=np.arange(6), y_test=np.arange(4))
    np.savez(tmp_path / "b.npz", x_train=x_train.transpose(0, 3, 1, 2) / 255.0,
             x_test=x_test.transpose(0, 3, 1, 2) / 255.0)
    a, b = datasets.load_dataset(str(tmp_path / "a.npz")), datasets.load_dataset(str(tmp_path / "b.npz"))
    assert a.shape == b.shape == (3, 8, 8) and a.x_train.dtype == torch.float32
    torch.testing.assert_close(a.x_train, b.x_train, atol=1e-6, rtol=0)
    assert float(a.x_train.min()) >= -1.0 and float(a.x_train.max()) <= 1.0
    assert a.y_train.tolist() == list(range(6)) and b.y_train is None
    assert a.digest == datasets.load_npz(tmp_path / "a.npz").digest != b.digest


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x_train": _rgb(2)}, "no x_test"),
    ({"x_train": np.zeros((2, 3, 8, 3), np.uint8), "x_test": np.zeros((2, 3, 8, 3), np.uint8)}, "channel axis"),
    ({"x_train": np.full((2, 8, 8, 3), 3.0), "x_test": np.zeros((2, 8, 8, 3))}, r"expected \[0, 1\] or \[-1, 1\]"),
    ({"x_train": _rgb(2), "x_test": _rgb(2, size=6)}, "differ"),
    ({"x_train": _rgb(2), "x_test": _rgb(2), "y_train": np.zeros(3, np.int64)}, "labels of shape"),
])
def test_a_wrong_npz_is_refused_in_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=message) as err:
        datasets.load_dataset(str(tmp_path / "d.npz"))
    assert "\n" not in str(err.value)


def _write_pngs(folder, images) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:03d}.png")


def test_an_image_folder_with_class_subfolders_gives_labels(tmp_path):
    _write_pngs(tmp_path / "train" / "cat", _rgb(3))
    _write_pngs(tmp_path / "train" / "dog", _rgb(2, seed=2))
    _write_pngs(tmp_path / "test" / "dog", _rgb(2, seed=3))
    ds = datasets.load_dataset(str(tmp_path))
    assert ds.x_train.shape == (5, 3, 8, 8) and ds.x_test.shape == (2, 3, 8, 8)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1] and ds.y_test.tolist() == [1, 1]
    expected = torch.from_numpy(_rgb(3)[0].transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)
    torch.testing.assert_close(ds.x_train[0], expected)


def test_image_folders_with_mixed_sizes_or_no_split_are_refused(tmp_path):
    _write_pngs(tmp_path / "train", list(_rgb(2)) + list(_rgb(1, size=4)))
    with pytest.raises(DatasetError, match="no test/ subfolder"):
        datasets.load_dataset(str(tmp_path))
    _write_pngs(tmp_path / "test", _rgb(1))
    with pytest.raises(DatasetError, match="2 sizes"):
        datasets.load_dataset(str(tmp_path))


def _cifar_batches(n: int = 3):
    rng = np.random.default_rng(5)
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))
            for names in datasets.CIFAR10_SPLITS.values() for name in names}


def _write_binary(folder, batches) -> None:
    folder.mkdir(parents=True)
    for name, (x, y) in batches.items():
        (folder / f"{name}.bin").write_bytes(np.concatenate([y.astype(np.uint8)[:, None], x], 1).tobytes())


def _write_python(folder, batches) -> None:
    folder.mkdir(parents=True)
    for name, (x, y) in batches.items():
        (folder / name).write_bytes(pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2))


def test_cifar10_binary_and_python_versions_read_the_same_images(tmp_path):
    batches = _cifar_batches()
    _write_binary(tmp_path / "bin" / "cifar-10-batches-bin", batches)
    _write_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    a = datasets.load_dataset("cifar10", tmp_path / "bin")
    b = datasets.load_dataset("cifar10", tmp_path / "py" / "cifar-10-batches-py")
    assert a.x_train.shape == (15, 3, 32, 32) and a.x_test.shape == (3, 3, 32, 32)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test) and a.digest == b.digest
    first = batches["data_batch_1"][0][0]  # red plane first, row by row
    assert float(a.x_train[0, 0, 0, 1]) == pytest.approx(first[1] / 127.5 - 1)
    assert float(a.x_train[0, 2, 31, 31]) == pytest.approx(first[3071] / 127.5 - 1)


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    batches = _cifar_batches()
    _write_python(tmp_path / "cifar-10-batches-py", batches)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DatasetError, match="only numpy arrays are accepted"):
        datasets.load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_the_archive_is_checked_against_its_published_md5_and_read_without_extracting(tmp_path, monkeypatch):
    batches = _cifar_batches()
    _write_binary(tmp_path / "src" / "cifar-10-batches-bin", batches)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    with pytest.raises(DatasetError, match="the published one is c32a1d4ab5d03f1284b67883e8d87530"):
        datasets.load_dataset("cifar10", archive)
    monkeypatch.setitem(datasets.CIFAR10_MD5, archive.name, hashlib.md5(archive.read_bytes()).hexdigest())
    ds = datasets.load_dataset("cifar10", archive)
    assert ds.x_train.shape == (15, 3, 32, 32)
    assert not (tmp_path / "cifar-10-batches-bin").exists()


@pytest.mark.parametrize(("spec", "data_dir", "message"), [
    ("cifar10", None, "needs DATA_DIR"),
    ("cifar10", "/nonexistent/cifar", "does not exist"),
    ("imagenet", None, "neither mnist, cifar10"),
])
def test_wrong_specs_say_what_is_valid(spec, data_dir, message):
    with pytest.raises(DatasetError, match=message):
        datasets.load_dataset(spec, data_dir)


def test_a_folder_without_cifar_batches_is_not_taken_for_cifar(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"\0" * 3073)
    with pytest.raises(DatasetError, match="no CIFAR-10 batches"):
        datasets.load_dataset("cifar10", tmp_path)


def test_mnist_through_the_same_loader_is_the_suites_mnist():
    from lib.data import mnist

    ds = datasets.load_dataset("mnist")
    assert ds.shape == (1, 32, 32) and len(ds.x_train) == 60_000 and len(ds.x_test) == 10_000
    assert torch.equal(ds.x_test, mnist.load_mnist("test", 32)) and torch.equal(ds.y_train, mnist.load_mnist_labels())
    assert ds.digest == datasets.mnist_dataset().digest != datasets.mnist_dataset(28).digest
