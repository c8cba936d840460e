"""What a saved model folder may hold before anything is built from it: only local files, checked.

- `read_json_object(path)`: a config file must be a JSON object (a dict). `diffusers`' `from_config` takes a string
  or a list for a model name and goes to the model hub for it; a dict never does.
- `weight_files(folder)`: the weights `from_pretrained` will read (one file, or the shards of an index).
- `check_digests(files, sha256)`: each file against the sha256 the user gives (the `folder#sha256=<hex>` suffix of
  a model spec, `split_spec`) or the one in its `<weights>.sha256` sidecar (`sha256sum` format), when there is one.
- `offline()`: `HF_HUB_OFFLINE=1` for the duration of a load (with `local_files_only=True` at the call).
- `check_finite_parameters(module, source)`: NaN or inf in the loaded weights is an error naming the file.

Every refusal is a one-line `ModelError` (or `ModelFileError` for what is missing) naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from lib.core import integrity
from lib.models.errors import ModelError, ModelFileError

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SPEC_DIGEST = "#sha256="
_HEX64 = re.compile(r"[0-9a-f]{64}")


def split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """(folder, sha256 or None) of `folder` or `folder#sha256=<64 hex digits>`."""
    text = str(spec)
    folder, marker, digest = text.partition(SPEC_DIGEST)
    if not marker:
        return Path(text), None
    return Path(folder), check_hex_digest(digest, f"the sha256 in {text!r}")


def check_hex_digest(digest: str, what: str) -> str:
    """`digest` in lower case if it is 64 hex digits, else a one-line ModelError."""
    value = str(digest).strip().lower()
    if not _HEX64.fullmatch(value):
        raise ModelError(f"{what} is not a sha256 (64 hex digits), got {digest!r}: copy it from `sha256sum <weights>`")
    return value


def read_json_object(path: Path) -> dict:
    """The JSON object (dict) in `path`; anything else is a one-line ModelError naming the file."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: save the model with save_pretrained(folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({integrity.one_line(exc)}): save the model again with "
                         "save_pretrained(folder)") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path} holds a JSON {type(value).__name__}, not an object of settings: a config must be "
                         "the dict save_pretrained writes (a model name is not loaded: nothing is downloaded)")
    return value


def weight_files(folder: Path) -> list[Path]:
    """The weights of a `diffusers` model folder: the single file, or the shards its index lists."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = read_json_object(index).get("weight_map")
            if not isinstance(shards, dict) or not shards:
                raise ModelError(f"{index} has no weight_map of shards: save the model again with save_pretrained")
            return sorted({folder / str(shard) for shard in shards.values()})
    raise ModelFileError(f"no weights in {folder} (neither {' nor '.join(WEIGHT_NAMES)}): save the network there "
                         "with unet.save_pretrained(folder)")


def check_digests(files: list[Path], sha256: str | None = None) -> None:
    """Each file against `sha256` (only for a single file) or its `<name>.sha256` sidecar, where either exists."""
    if sha256 is not None and len(files) != 1:
        raise ModelError(f"a sha256 was given but the weights are {len(files)} shards: put one "
                         "`<shard>.sha256` (sha256sum format) beside each shard instead")
    for path in files:
        if not path.is_file():
            raise ModelFileError(f"the weights file {path} is missing: save the model again with save_pretrained")
        expected = check_hex_digest(sha256, "the given sha256") if sha256 is not None else _sidecar_digest(path)
        if expected is not None and integrity.file_digest(path) != expected:
            source = "the given sha256" if sha256 is not None else integrity.sidecar(path).name
            raise ModelError(f"the sha256 of {path} differs from {source} (expected {expected[:12]}...): the file "
                             "is corrupt or not the one meant; copy it again")


def _sidecar_digest(path: Path) -> str | None:
    """The digest in `<path>.sha256`, None without one; an unreadable sidecar is a one-line ModelError."""
    try:
        return integrity.recorded_digest(path)
    except integrity.IntegrityError as exc:
        raise ModelError(f"{path}: {exc}; write it with `sha256sum {path.name} > {path.name}.sha256`") from None


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """`HF_HUB_OFFLINE=1` (and `DIFFUSERS_OFFLINE=1`) while the block runs; the previous values come back after."""
    names = ("HF_HUB_OFFLINE", "DIFFUSERS_OFFLINE")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_finite_parameters(module: torch.nn.Module, source: Path | str) -> None:
    """A one-line ModelError naming `source` if any parameter or buffer of `module` holds NaN or inf."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"{source}: the weight {name} holds NaN or inf (the file is corrupt): copy it again "
                             "or check it against its sha256")
