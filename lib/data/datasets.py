"""Image datasets beyond MNIST, read from local files only (nothing is downloaded).

`load_dataset(spec, data_dir)` returns an `ImageDataset`: float32 images (N, C, H, W) in [-1, 1] for a train
and a test split, optional integer labels, and a content digest (sha256 of the pixels and labels) to key
caches by. `spec` is one of

- `mnist`: the suite's own MNIST (`lib.data.mnist`: fetched and verified), at 32x32;
- `cifar10`: `data_dir` is the official archive (`cifar-10-binary.tar.gz` or `cifar-10-python.tar.gz`, checked
  against its published MD5 and read without extracting), or a folder holding the extracted
  `cifar-10-batches-bin/` or `cifar-10-batches-py/` (or that folder itself). The Python version is read with an
  unpickler that accepts only numpy's array reconstruction, so a pickle cannot run code;
- the path of an `.npz` with `x_train`, `x_test` ((N, H, W, C) or (N, C, H, W); uint8 in 0..255, uint16 in 0..65535 or
  floats in [0, 1] or [-1, 1]) and optional `y_train`, `y_test`;
- the path of a folder of PNG/JPEG images of one size, with `train/` and `test/` subfolders; inside each,
  optional class subfolders give the labels (the sorted names of both splits -> 0, 1, ...; `lib.data.image_files`).

uint16 pixels (16-bit PNGs) are read as 0..65535, as uint8 ones are as 0..255. Labels come for both splits or for
neither, and neither split may be empty. Every wrong path or format, and every damaged file (a truncated `.npz`, an
image PIL cannot read, a broken CIFAR batch), is a `DatasetError` of one line that names the file and says what was
found. The notebooks reach it through `lib.study`; `lib.train --dataset` trains on it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lib.core.errors import ReproError

#: Published MD5 digests of the official CIFAR-10 archives (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_MD5 = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
               "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
CIFAR10_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
#: What numpy raises for a damaged `.npz`: 0 bytes (EOFError), truncated or a bad CRC (BadZipFile), a damaged
#: compressed member (zlib.error), a bad header or a pickled array (ValueError), an unreadable file (OSError).
NPZ_DAMAGE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
#: What unpickling a damaged CIFAR-10 batch raises (garbage, truncated, not a dict, no `data`/`labels`, wrong size).
CIFAR_DAMAGE = (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError)


class DatasetError(ReproError, ValueError):
    """A dataset that cannot be read as given; the message says what was found and what is expected."""


@dataclass(frozen=True)
class ImageDataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    x_test: torch.Tensor
    y_train: torch.Tensor | None  # (N,) int64
    y_test: torch.Tensor | None
    digest: str  # sha256 of the pixels and labels, 16 hex digits

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(b"none" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _found(err: BaseException) -> str:
    """An exception as `Type: message` on one line, for the "what was found" of a damaged file."""
    return f"{type(err).__name__}: {' '.join(str(err).split()) or 'no detail'}"


def _to_unit_range(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 0..255, uint16 0..65535, or floats in [0, 1] or [-1, 1], as float32 in [-1, 1]."""
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)
    if x.dtype == np.uint16:
        return torch.from_numpy(x.astype(np.float32) / 32767.5 - 1.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{what}: pixels of type {x.dtype}; expected uint8 (0..255), uint16 (0..65535) or floats "
                           "in [0, 1] or [-1, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        return torch.from_numpy(x.astype(np.float32) * 2.0 - 1.0)
    if lo >= -1.0 and hi <= 1.0:
        return torch.from_numpy(x.astype(np.float32))
    raise DatasetError(f"{what}: float pixels in [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [-1, 1]")


def _channels_first(x: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W, C) or (N, C, H, W) with C in {1, 3, 4}, or (N, H, W), as (N, C, H, W)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DatasetError(f"{what}: array of shape {x.shape}; expected (N, H, W, C), (N, C, H, W) or (N, H, W)")
    first, last = x.shape[1] in (1, 3, 4), x.shape[3] in (1, 3, 4)
    if first and not last:
        return x
    if last and not first:
        return x.transpose(0, 3, 1, 2)
    raise DatasetError(f"{what}: cannot tell the channel axis of shape {x.shape}; save images as (N, H, W, C)")


def _labels(y: np.ndarray | None, n: int, what: str) -> torch.Tensor | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{what}: labels of shape {y.shape} and type {y.dtype}; expected ({n},) integers")
    return torch.from_numpy(y.astype(np.int64))


def _check_images(x_train: np.ndarray, x_test: np.ndarray, where: str) -> None:
    """Both splits hold images."""
    empty = [s for s, x in (("train", x_train), ("test", x_test)) if x.size == 0]
    if empty:
        raise DatasetError(f"{where}: no {' and no '.join(empty)} images (shapes {np.shape(x_train)} and "
                           f"{np.shape(x_test)}); both splits need images")


def _both_or_no_labels(y_train: torch.Tensor | None, y_test: torch.Tensor | None, where: str) -> None:
    if (y_train is None) != (y_test is None):
        labelled, other = ("train", "test") if y_test is None else ("test", "train")
        raise DatasetError(f"{where}: {labelled} labels but no {other} labels; give labels for both splits or neither")


def _dataset(name: str, x_train: np.ndarray, x_test: np.ndarray, y_train, y_test, where: str) -> ImageDataset:
    _check_images(np.asarray(x_train), np.asarray(x_test), where)
    x_train, x_test = _channels_first(x_train, f"{where} train"), _channels_first(x_test, f"{where} test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{where}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ")
    labels = _labels(y_train, len(x_train), f"{where} train"), _labels(y_test, len(x_test), f"{where} test")
    _both_or_no_labels(*labels, where)
    return ImageDataset(name, _to_unit_range(x_train, f"{where} train"), _to_unit_range(x_test, f"{where} test"),
                        *labels, _digest(x_train, x_test, y_train, y_test))


# --------------------------------------------------------------------------- .npz


def load_npz(path: Path) -> ImageDataset:
    """An `.npz` with `x_train`, `x_test` and optional `y_train`, `y_test`."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:  # own handle: closed on a bad zip
            arrays = {k: npz[k] for k in npz.files}
    except PermissionError:
        raise
    except NPZ_DAMAGE as err:
        raise DatasetError(f"{path}: not a readable .npz, the file is damaged or not one ({_found(err)})") from err
    missing = [k for k in ("x_train", "x_test") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: no {' and no '.join(missing)} (found {', '.join(sorted(arrays)) or 'nothing'})")
    return _dataset(path.stem, arrays["x_train"], arrays["x_test"], arrays.get("y_train"), arrays.get("y_test"),
                    str(path))


# --------------------------------------------------------------------------- image folders


def load_image_folder(folder: Path) -> ImageDataset:
    """A folder with `train/` and `test/` subfolders of images (class subfolders optional; `lib.data.image_files`)."""
    from lib.data import image_files

    split = image_files.read_image_folder(folder)
    return _dataset(folder.name, split["train"][0], split["test"][0], split["train"][1], split["test"][1],
                    str(folder))


# --------------------------------------------------------------------------- CIFAR-10


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings; any other global (a function to call) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: bytes in protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DatasetError(f"the CIFAR-10 pickle refers to {module}.{name}; only numpy arrays are accepted")
        return super().find_class(module, name)


def _cifar_python_batch(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _ArraysOnly(io.BytesIO(blob), encoding="bytes").load()
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(batch["labels"], dtype=np.int64)


def _cifar_binary_batch(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    if len(blob) % 3073:
        raise DatasetError(f"{len(blob)} bytes is not a whole number of 3,073-byte records")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _cifar_batch(version: str, blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's images and labels; a damaged one is a one-line `DatasetError` that names it (`where`)."""
    read = _cifar_binary_batch if version == "bin" else _cifar_python_batch
    try:
        x, y = read(blob)
    except DatasetError as err:
        raise DatasetError(f"{where}: {err}") from err
    except CIFAR_DAMAGE as err:
        raise DatasetError(f"{where}: not a readable CIFAR-10 batch, the file is damaged ({_found(err)})") from err
    if len(x) == 0 or y.shape != (len(x),):
        raise DatasetError(f"{where}: {len(x)} images and labels of shape {y.shape}; a CIFAR-10 batch has "
                           "images and one label each")
    return x, y


def _cifar_members(location: Path) -> tuple[dict[str, tuple[str, bytes]], str]:
    """(where, bytes) of each batch file by name (where: its path, or the archive and the name), and which version
    they are ("bin" or "py")."""
    if location.is_file():
        expected = CIFAR10_MD5.get(location.name)
        if expected is None:
            raise DatasetError(f"{location.name} is not an official CIFAR-10 archive ({', '.join(CIFAR10_MD5)})")
        blob = location.read_bytes()  # read once: checksummed, then opened in memory
        md5 = hashlib.md5(blob).hexdigest()  # noqa: S324 - the checksum the authors publish
        if md5 != expected:
            raise DatasetError(f"{location}: MD5 {md5}, the published one is {expected}; the archive is damaged")
        version = "bin" if "binary" in location.name else "py"
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            return {n: (f"{location} ({n})", tar.extractfile(m).read()) for n, m in members.items()}, version
    for version in ("bin", "py"):
        folder = location / f"cifar-10-batches-{version}"
        folder = folder if folder.is_dir() else location
        suffix = ".bin" if version == "bin" else ""
        if all((folder / f"{n}{suffix}").is_file() for names in CIFAR10_SPLITS.values() for n in names):
            files = [folder / f"{n}{suffix}" for names in CIFAR10_SPLITS.values() for n in names]
            return {f.name: (str(f), f.read_bytes()) for f in files}, version
    raise DatasetError(f"{location}: no CIFAR-10 batches (data_batch_1..5 and test_batch, binary or Python version) "
                       "and not an official archive")


def load_cifar10(location: Path) -> ImageDataset:
    """CIFAR-10 from the official archive or its extracted folder (binary or Python version)."""
    if not location.exists():
        raise DatasetError(f"{location} does not exist: pass the CIFAR-10 archive or its extracted folder")
    members, version = _cifar_members(location)
    suffix = ".bin" if version == "bin" else ""
    split = {}
    for s, names in CIFAR10_SPLITS.items():
        found = [members[f"{n}{suffix}"] for n in names if f"{n}{suffix}" in members]
        parts = [_cifar_batch(version, blob, where) for where, blob in found]
        if len(parts) != len(names):
            raise DatasetError(f"{location}: the {s} split lacks some of {', '.join(names)}")
        split[s] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return _dataset("cifar10", split["train"][0], split["test"][0], split["train"][1], split["test"][1], str(location))


def mnist_dataset(size: int = 32) -> ImageDataset:
    """The suite's MNIST as an ImageDataset: the images and labels of `lib.data.mnist` (the one MNIST loader), with a
    digest of the raw bytes and the size."""
    from lib.data import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_mnist_uint8("train"), mnist.load_mnist_uint8("test")
    return ImageDataset("mnist", mnist.preprocess(x_train, size), mnist.preprocess(x_test, size),
                        torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_test.astype(np.int64)),
                        _digest(x_train, x_test, y_train, y_test, np.array([size])))


def load_dataset(spec: str, data_dir: str | Path | None = None) -> ImageDataset:
    """`mnist`, `cifar10` (with `data_dir`), or the path of an `.npz` or of an image folder (module docstring)."""
    if spec == "mnist":
        return mnist_dataset()
    if spec == "cifar10":
        if data_dir is None:
            raise DatasetError("cifar10 needs DATA_DIR: the official archive or the folder it was extracted to")
        return load_cifar10(Path(data_dir))
    path = Path(spec)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path)
    raise DatasetError(f"{spec!r} is neither mnist, cifar10, an existing .npz file nor a folder of images")
