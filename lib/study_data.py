"""The dataset side of a study (`lib.study`): an object that carries its own images, statistics, names and capabilities,
so that the notebooks ask it ("are there originals at another size?", "which tables did the authors publish for it?")
instead of testing which dataset it is.

- `MnistData`: the suite's MNIST at the scale's image size (`lib.data.mnist`, its statistics cached by
  `lib.data.statistics.dataset_stats`), exactly what the notebooks used before studies existed;
- `FileData`: any other dataset `lib.data.datasets.load_dataset` reads (CIFAR-10, an `.npz` file, an image folder),
  its statistics cached under `data/cache/stats/` by the digest of its pixels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import torch

from lib.core import paths
from lib.data import datasets, mnist, statistics
from lib.data.datasets import ImageDataset

SPLITS = ("train", "test")
#: Titles of the datasets the suite knows by name.
LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
#: The authors' tables of each dataset by kind (`lib.verdicts.reference`): "final" is their final network's,
#: "dynamics" their training run's checkpoints.
PAPER_TABLES = {"mnist": {"final": "mnist_1m_final", "dynamics": "mnist_25k_dynamics"},
                "cifar10": {"final": "cifar10_pretrained"}}
#: What the authors' final-network table of a dataset is, for reports.
PAPER_FINAL_DESCRIPTIONS = {"mnist_1m_final": "final MNIST network",
                            "cifar10_pretrained": "pretrained CIFAR-10 network"}


def slug(spec: str) -> str:
    """A folder-name form of a dataset or model spec: `mnist`, `cifar10`, `ours`, or the stem of a path."""
    name = spec if spec in LABELS or spec == "ours" else Path(spec.rstrip("/")).name.removesuffix(".npz")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name) or "unnamed"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


class StudyData:
    """What every dataset of a study answers (the subclasses fill in how)."""

    spec: str
    #: what one image is, for titles ("digits", "images")
    items: str = "images"

    @property
    def name(self) -> str:
        """The short name (`mnist`, `cifar10`, or the file or folder name)."""
        return slug(self.spec)

    @property
    def label(self) -> str:
        """The name for titles."""
        return LABELS.get(self.spec, self.name)

    @property
    def paper_tables(self) -> Mapping[str, str]:
        """The authors' tables of this dataset by kind ("final", "dynamics"); empty where they published none."""
        return PAPER_TABLES.get(self.spec, {})

    @property
    def paper_final(self) -> tuple[str, str] | None:
        """(name, description) of the authors' table of their final network on this dataset, or None."""
        name = self.paper_tables.get("final")
        return None if name is None else (name, PAPER_FINAL_DESCRIPTIONS[name])

    @property
    def dataset(self) -> ImageDataset:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dataset.shape

    @property
    def has_labels(self) -> bool:
        """Whether the training images come with class labels (a feature classifier can be trained on them)."""
        return self.dataset.y_train is not None

    def images(self, split: str = "train") -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]."""
        check_split(split)
        return self.dataset.x_train if split == "train" else self.dataset.x_test

    def stats(self, split: str = "train") -> statistics.DatasetStats:
        """Mean, covariance and eigenpairs of a split (float64), cached under `data/cache/stats/` by the pixels."""
        check_split(split)
        key = f"{self.dataset.digest}_{split}_v{statistics.STATS_VERSION}"
        cache = paths.cache_dir("stats") / f"{self.name}_{key}.pt"
        return statistics.cached_stats(self.images(split), key, cache, "[study] stats cache")

    @property
    def training_data(self) -> ImageDataset | None:
        """What our network and the feature classifier are trained on when it is not the suite's MNIST (whose
        configurations are the presets of `lib.diffusion.train_config` and `lib.analysis.features`): None for MNIST."""
        return self.dataset

    def originals(self) -> StudyData | None:
        """The same images at the size they were published at, when the study resized them; else None."""
        return None


class MnistData(StudyData):
    """The suite's MNIST at `size` pixels (32: the 28x28 digits resized bilinearly, as in the paper)."""

    spec = "mnist"
    items = "digits"

    def __init__(self, size: int = 32) -> None:
        self.size = size

    @cached_property
    def dataset(self) -> ImageDataset:
        return datasets.mnist_dataset(self.size)

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.size, self.size)

    @property
    def has_labels(self) -> bool:
        return True

    def images(self, split: str = "train") -> torch.Tensor:
        """(N, 1, size, size) float32 in [-1, 1] (`lib.data.mnist.load_mnist`)."""
        check_split(split)
        return mnist.load_mnist(split, self.size)

    def stats(self, split: str = "train") -> statistics.DatasetStats:
        """`lib.data.statistics.dataset_stats`: MNIST's statistics cache, shared with every notebook."""
        check_split(split)
        return statistics.dataset_stats(split, self.size)

    @property
    def training_data(self) -> ImageDataset | None:
        return None

    def originals(self) -> StudyData | None:
        """The 28x28 digits as published (None at that size already)."""
        return None if self.size == mnist.RAW_SIZE else MnistData(mnist.RAW_SIZE)


class FileData(StudyData):
    """A dataset `lib.data.datasets.load_dataset` reads: `cifar10` (with the folder or archive of the official
    distribution), or the path of an `.npz` file or of an image folder."""

    def __init__(self, spec: str, data_dir: str | None = None) -> None:
        self.spec, self.data_dir = spec, data_dir

    @cached_property
    def dataset(self) -> ImageDataset:
        return datasets.load_dataset(self.spec, self.data_dir)


def study_data(spec: str, data_dir: str | None, size: int) -> StudyData:
    """The dataset of a study from its spec (`mnist` at the scale's image `size`, or a `FileData`)."""
    return MnistData(size) if spec == "mnist" else FileData(spec, data_dir)
