"""Folders of PNG/JPEG images as pixel arrays, for `lib.data.datasets.load_image_folder`.

A dataset folder holds `train/` and `test/`; each holds either its images directly (no labels) or one subfolder per
class. Labels number the class names of both splits together, sorted once (`cat`, `dog`, `fox` -> 0, 1, 2 in either
split, even when one split lacks a class). Either both splits are labelled or neither; images lying beside class
folders are refused rather than dropped. 8-bit images are read as uint8; 16-bit greyscale ones (PIL modes `I;16*`,
`I`) as uint16, keeping their range (8-bit images in the same split are widened exactly, v -> 257 v). A file PIL
cannot read (not an image, truncated, broken) is one `DatasetError` line that names it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.data.datasets import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _hidden(path: Path) -> bool:
    """Hidden files and folders (`.ipynb_checkpoints`, `.DS_Store`, editors' backups) are not data."""
    return path.name.startswith(".")


def _is_image(path: Path) -> bool:
    return not _hidden(path) and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if _is_image(f))


def _class_names(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not _hidden(p))


def _pixels(image) -> np.ndarray:
    """An opened PIL image as (H, W) or (H, W, 3): uint8, or uint16 for 16-bit greyscale."""
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ValueError(f"{image.mode} pixels in [{pixels.min()}, {pixels.max()}], beyond 16 bits")
        return pixels.astype(np.uint16)
    return np.asarray(image.convert("L" if image.mode in ("1", "L") else "RGB"))


def read_image(path: Path) -> np.ndarray:
    """One image file's pixels (`_pixels`); an unreadable file is a one-line `DatasetError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return _pixels(image)
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError: OSError
        found = " ".join(str(err).split()) or "no detail"
        raise DatasetError(f"{path}: not a readable image ({type(err).__name__}: {found})") from err


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    """The images of one split as one array; 8-bit ones are widened to 16 bits when the split has both."""
    sizes = sorted({im.shape for im in images})
    if len(sizes) > 1:
        raise DatasetError(f"{where}: images of {len(sizes)} sizes ({', '.join(map(str, sizes[:4]))}); "
                           "resize them to one size first")
    if any(im.dtype == np.uint16 for im in images):
        images = [im.astype(np.uint16) * 257 if im.dtype == np.uint8 else im for im in images]
    return np.stack(images)


def _refuse_loose_images(split: Path) -> None:
    loose = _images_in(split)
    if loose:
        names = ", ".join(f.name for f in loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise DatasetError(f"{split}: {len(loose)} images ({names}) lie beside the class subfolders; "
                           "move each into its class folder, or remove the class folders for unlabelled images")


def read_split(split: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """A split folder's images and, when `classes` (the names of both splits) is not empty, their labels."""
    if classes:
        _refuse_loose_images(split)
        names = _class_names(split)
        files = [(f, classes.index(c)) for c in names for f in _images_in(split / c)]
    else:
        files = [(f, -1) for f in _images_in(split)]
    if not files:
        raise DatasetError(f"{split}: no {'/'.join(IMAGE_SUFFIXES)} images")
    x = _stack([read_image(f) for f, _ in files], str(split))
    return x, (np.array([label for _, label in files], dtype=np.int64) if classes else None)


def shared_classes(folders: dict[str, Path]) -> list[str]:
    """The class names of both splits, sorted once; both splits have class folders or neither does."""
    names = {s: _class_names(p) for s, p in folders.items()}
    labelled = [s for s in SPLITS if names[s]]
    if len(labelled) == 1:
        other = next(s for s in SPLITS if s not in labelled)
        raise DatasetError(f"{folders[labelled[0]]} has class subfolders but {folders[other]} has none: label both "
                           "splits (the same class folder names) or neither")
    return sorted(set().union(*names.values()))


def read_image_folder(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """(images, labels or None) of `train/` and `test/` in `folder`."""
    folders = {s: folder / s for s in SPLITS}
    missing = [s for s, p in folders.items() if not p.is_dir()]
    if missing:
        raise DatasetError(f"{folder}: no {' and no '.join(s + '/' for s in missing)} subfolder; put the images "
                           "in train/ and test/ (each with optional class subfolders)")
    classes = shared_classes(folders)
    return {s: read_split(p, classes) for s, p in folders.items()}
