"""Image datasets beyond MNIST, read from local files only (nothing is downloaded).

`load_dataset(spec, data_dir)` returns an `ImageDataset`: float32 images (N, C, H, W) in [-1, 1] for a train
and a test split, optional integer labels, and a content digest (sha256 of the pixels and labels) to key
caches by. `spec` is one of

- `mnist`: the suite's own MNIST (`lib.data.mnist`: fetched and verified), at 32x32;
- `cifar10`: `data_dir` is the official archive (`cifar-10-binary.tar.gz` or `cifar-10-python.tar.gz`, checked
  against its published MD5 and read without extracting), or a folder holding the extracted
  `cifar-10-batches-bin/` or `cifar-10-batches-py/` (or that folder itself). The Python version is read with an
  unpickler that accepts only numpy's array reconstruction, so a pickle cannot run code;
- the path of an `.npz` with `x_train`, `x_test` ((N, H, W, C) or (N, C, H, W); uint8 in 0..255 or floats in
  [0, 1] or [-1, 1]) and optional `y_train`, `y_test`;
- the path of a folder of PNG/JPEG images of one size, with `train/` and `test/` subfolders; inside each,
  optional class subfolders give the labels (sorted names -> 0, 1, ...).

Every wrong path or format is a `DatasetError` of one line that says what was found. The notebooks reach it
through `lib.study`; `lib.train --dataset` trains on it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lib.core.errors import ReproError

#: Published MD5 digests of the official CIFAR-10 archives (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_MD5 = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
               "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
CIFAR10_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


def _to_unit_range(x: np.ndarray, what: str) -> torch.Tensor:
    """uint8 0..255, or floats in [0, 1] or [-1, 1], as float32 in [-1, 1]."""
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{what}: pixels of type {x.dtype}; expected uint8 (0..255) or floats in [0, 1] or [-1, 1]")
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


def _dataset(name: str, x_train: np.ndarray, x_test: np.ndarray, y_train, y_test, where: str) -> ImageDataset:
    x_train, x_test = _channels_first(x_train, f"{where} train"), _channels_first(x_test, f"{where} test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{where}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ")
    return ImageDataset(name, _to_unit_range(x_train, f"{where} train"), _to_unit_range(x_test, f"{where} test"),
                        _labels(y_train, len(x_train), f"{where} train"), _labels(y_test, len(x_test), f"{where} test"),
                        _digest(x_train, x_test, y_train, y_test))


# --------------------------------------------------------------------------- .npz


def load_npz(path: Path) -> ImageDataset:
    """An `.npz` with `x_train`, `x_test` and optional `y_train`, `y_test`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npz ({err})") from None
    missing = [k for k in ("x_train", "x_test") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: no {' and no '.join(missing)} (found {', '.join(sorted(arrays)) or 'nothing'})")
    return _dataset(path.stem, arrays["x_train"], arrays["x_test"], arrays.get("y_train"), arrays.get("y_test"),
                    str(path))


# --------------------------------------------------------------------------- image folders


def _read_images(files: list[Path], where: str) -> np.ndarray:
    from PIL import Image

    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(np.asarray(im.convert("L" if im.mode in ("1", "L", "I;16") else "RGB")))
    sizes = sorted({im.shape for im in images})
    if len(sizes) > 1:
        raise DatasetError(f"{where}: images of {len(sizes)} sizes ({', '.join(map(str, sizes[:4]))}); "
                           "resize them to one size first")
    return np.stack(images)


def _split_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if classes:
        files = [(f, i) for i, c in enumerate(classes) for f in sorted(c.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [(f, -1) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
    x = _read_images([f for f, _ in files], str(folder))
    return x, (np.array([label for _, label in files], dtype=np.int64) if classes else None)


def load_image_folder(folder: Path) -> ImageDataset:
    """A folder with `train/` and `test/` subfolders of images (class subfolders optional)."""
    splits = {s: folder / s for s in ("train", "test")}
    missing = [s for s, p in splits.items() if not p.is_dir()]
    if missing:
        raise DatasetError(f"{folder}: no {' and no '.join(s + '/' for s in missing)} subfolder; put the images "
                           "in train/ and test/ (each with optional class subfolders)")
    (x_train, y_train), (x_test, y_test) = _split_folder(splits["train"]), _split_folder(splits["test"])
    return _dataset(folder.name, x_train, x_test, y_train, y_test, str(folder))


# --------------------------------------------------------------------------- CIFAR-10


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings; any other global (a function to call) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: bytes in protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DatasetError(f"the CIFAR-10 pickle refers to {module}.{name}; only numpy arrays are accepted")
        return super().find_class(module, name)


def _cifar_python_batch(blob: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _ArraysOnly(io.BytesIO(blob), encoding="bytes").load()
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(batch["labels"], dtype=np.int64)


def _cifar_binary_batch(blob: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(blob) % 3073:
        raise DatasetError(f"CIFAR-10 {name}: {len(blob)} bytes is not a whole number of 3,073-byte records")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _cifar_members(location: Path) -> tuple[dict[str, bytes], str]:
    """The batch files' bytes by name, and which version they are ("bin" or "py")."""
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
            return {n: tar.extractfile(m).read() for n, m in members.items()}, version
    for version in ("bin", "py"):
        folder = location / f"cifar-10-batches-{version}"
        folder = folder if folder.is_dir() else location
        suffix = ".bin" if version == "bin" else ""
        if all((folder / f"{n}{suffix}").is_file() for names in CIFAR10_SPLITS.values() for n in names):
            return {f"{n}{suffix}": (folder / f"{n}{suffix}").read_bytes()
                    for names in CIFAR10_SPLITS.values() for n in names}, version
    raise DatasetError(f"{location}: no CIFAR-10 batches (data_batch_1..5 and test_batch, binary or Python version) "
                       "and not an official archive")


def load_cifar10(location: Path) -> ImageDataset:
    """CIFAR-10 from the official archive or its extracted folder (binary or Python version)."""
    if not location.exists():
        raise DatasetError(f"{location} does not exist: pass the CIFAR-10 archive or its extracted folder")
    members, version = _cifar_members(location)
    read = _cifar_binary_batch if version == "bin" else _cifar_python_batch
    suffix = ".bin" if version == "bin" else ""
    split = {}
    for s, names in CIFAR10_SPLITS.items():
        parts = [read(members[f"{n}{suffix}"], n) for n in names if f"{n}{suffix}" in members]
        if len(parts) != len(names):
            raise DatasetError(f"{location}: the {s} split lacks some of {', '.join(names)}")
        split[s] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return _dataset("cifar10", split["train"][0], split["test"][0], split["train"][1], split["test"][1], str(location))


def load_mnist(size: int = 32) -> ImageDataset:
    """The suite's MNIST (`lib.data.mnist`) as an ImageDataset; the digest covers the raw bytes and the size."""
    from lib.data import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_mnist_uint8("train"), mnist.load_mnist_uint8("test")
    return ImageDataset("mnist", mnist.preprocess(x_train, size), mnist.preprocess(x_test, size),
                        torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_test.astype(np.int64)),
                        _digest(x_train, x_test, y_train, y_test, np.array([size])))


def load_dataset(spec: str, data_dir: str | Path | None = None) -> ImageDataset:
    """`mnist`, `cifar10` (with `data_dir`), or the path of an `.npz` or of an image folder (module docstring)."""
    if spec == "mnist":
        return load_mnist()
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
