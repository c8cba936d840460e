"""What a notebook studies: a dataset and a model, and everything the notebooks build from them.

A study is named by two strings, as on the command line (`make figures DATASET=... DATA_DIR=... MODEL=...`):

- the dataset (`lib.data.datasets.load_dataset`): `mnist` (the default), `cifar10` with the folder or archive of the
  official distribution, or the path of an `.npz` file or of an image folder;
- the model (`load_model`): `ours` (the default: the network `lib.train` trains at the notebook's
  scale, on this dataset, `lib.diffusion.train_config.for_dataset`), or the folder of a saved `diffusers` model.

`Study` gives the notebooks the images of each split, their statistics (mean, covariance, eigenpairs in float64,
cached by the data's digest), the network as a denoiser D(x; sigma), the feature classifier of the sample-quality
metrics and the name of the output folders. For MNIST and our network every one of these is what the notebooks
used before studies existed (the same tensors, caches and folders), so the committed results are unchanged;
any other study writes under `data/scales/<dataset>[-<model>]-<scale>/`, never over them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

from lib.core import paths
from lib.core.config import Scale
from lib.data import mnist, statistics
from lib.data.datasets import ImageDataset, load_dataset
from lib.models.denoisers import Denoiser

DEFAULT_DATASET, DEFAULT_MODEL = "mnist", "ours"
DATASET_ENV_VAR, DATASET_DIR_ENV_VAR, MODEL_ENV_VAR = "REPRO_DATASET", "REPRO_DATASET_DIR", "REPRO_MODEL"
INCEPTION_ENV_VAR = "REPRO_INCEPTION"  # the path of the FID Inception weights (`lib.analysis.inception`)
LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
#: The authors' table of their final network on each dataset (`lib.verdicts.reference`), and what it is.
PAPER_FINAL_TABLES = {"mnist": ("mnist_1m_final", "final MNIST network"),
                      "cifar10": ("cifar10_pretrained", "pretrained CIFAR-10 network")}
SPLITS = ("train", "test")


def from_environment() -> tuple[str, str | None, str, str | None]:
    """(dataset, dataset folder, model, Inception weights) from `$REPRO_DATASET`, `$REPRO_DATASET_DIR`,
    `$REPRO_MODEL` and `$REPRO_INCEPTION`, else the defaults: how `lib.notebooks` (and `make figures DATASET=...
    DATA_DIR=... MODEL=... INCEPTION=...`) reach the notebooks."""
    return (os.environ.get(DATASET_ENV_VAR) or DEFAULT_DATASET, os.environ.get(DATASET_DIR_ENV_VAR) or None,
            os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL, os.environ.get(INCEPTION_ENV_VAR) or None)


def _slug(spec: str) -> str:
    """A folder-name form of a dataset or model spec: `mnist`, `cifar10`, or the stem of a path."""
    name = spec if spec in LABELS or spec == DEFAULT_MODEL else Path(spec.rstrip("/")).name.removesuffix(".npz")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name) or "unnamed"


def output_name(scale: str, dataset: str = DEFAULT_DATASET, model: str = DEFAULT_MODEL,
                inception: str | None = None) -> str:
    """The name of a run's output folders: the scale for MNIST with our network (`default` writes the committed
    folders), else `<dataset>-<scale>` or `<dataset>-<model>-<scale>` (under `data/scales/`), with `-inception`
    after the model when sample quality is measured in Inception features."""
    if dataset == DEFAULT_DATASET and model == DEFAULT_MODEL and not inception:
        return scale
    parts = [_slug(dataset)] + ([] if model == DEFAULT_MODEL else [_slug(model)]) + (["inception"] if inception else [])
    return "-".join([*parts, scale])


@dataclass
class Study:
    """A dataset and a model at one scale (module docstring); what is loaded is loaded once."""

    scale: Scale
    dataset_spec: str = DEFAULT_DATASET
    dataset_dir: str | None = None
    model_spec: str = DEFAULT_MODEL
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    inception: str | None = None  # a local copy of the FID Inception weights: FD and KID in its features

    def __post_init__(self) -> None:
        check_model_spec(self.model_spec)

    @property
    def is_mnist(self) -> bool:
        return self.dataset_spec == DEFAULT_DATASET

    @property
    def is_ours(self) -> bool:
        return self.model_spec == DEFAULT_MODEL

    @property
    def name(self) -> str:
        """The dataset's short name (`mnist`, `cifar10`, or the file or folder name)."""
        return _slug(self.dataset_spec)

    @property
    def label(self) -> str:
        """The dataset's name for titles."""
        return LABELS.get(self.dataset_spec, self.name)

    @property
    def outputs(self) -> str:
        return output_name(self.scale.name, self.dataset_spec, self.model_spec, self.inception)

    def with_model(self, model_spec: str) -> Study:
        """The same dataset and scale with another model (e.g. `ours`: the network the suite trains on this dataset,
        whose checkpoints carry a training history that a model from a folder does not have)."""
        other = replace(self, model_spec=model_spec)
        if "dataset" in self.__dict__:  # loaded once per dataset
            other.__dict__["dataset"] = self.__dict__["dataset"]
        return other

    @property
    def paper_final(self) -> tuple[str, str] | None:
        """(name, description) of the authors' table for this dataset's final network, or None."""
        return PAPER_FINAL_TABLES.get(self.dataset_spec)

    # ------------------------------------------------------------------ data

    @cached_property
    def dataset(self) -> ImageDataset:
        if self.is_mnist:
            from lib.data import datasets

            return datasets.load_mnist(self.scale.image_size)
        return load_dataset(self.dataset_spec, self.dataset_dir)

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.scale.image_size, self.scale.image_size) if self.is_mnist else self.dataset.shape

    def images(self, split: str = "train") -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]; MNIST at the scale's image size (`lib.data.mnist.load_mnist`)."""
        _check_split(split)
        if self.is_mnist:
            return mnist.load_mnist(split, self.scale.image_size)
        return self.dataset.x_train if split == "train" else self.dataset.x_test

    def stats(self, split: str = "train") -> statistics.DatasetStats:
        """Mean, covariance and eigenpairs of a split (float64), cached under `data/cache/stats/` by the pixels."""
        _check_split(split)
        if self.is_mnist:
            return statistics.dataset_stats(split, self.scale.image_size)
        key = f"{self.dataset.digest}_{split}_v{statistics.STATS_VERSION}"
        cache = paths.cache_dir("stats") / f"{self.name}_{key}.pt"
        return statistics.cached_stats(self.images(split), key, cache, "[study] stats cache")

    # ------------------------------------------------------------------ model

    def _training_data(self) -> ImageDataset | None:
        return None if self.is_mnist else self.dataset

    def train_config(self):
        """Our network's training configuration at this scale, on this dataset (`train_config.for_dataset`)."""
        from lib.diffusion import train_config

        config = train_config.train_config(self.scale.name)
        return config if self.is_mnist else train_config.for_dataset(config, self.dataset)

    @cached_property
    def _checkpoints(self) -> list[int]:
        """Our network's checkpoint steps, trained first if missing (once per study)."""
        from lib.diffusion import training

        listed = training.ensure_checkpoints(self.train_config(), device=self.device, dataset=self._training_data())
        return [step for step, _ in listed]

    def checkpoint_steps(self) -> list[int]:
        """Steps of our network's checkpoints, trained first if missing; [] for a model loaded from a folder."""
        return list(self._checkpoints) if self.is_ours else []

    def network(self, step: int | None = None) -> Denoiser:
        """The model as a denoiser in fp32: our network's EMA weights at `step` (default: the last; trained first if
        missing) or the model folder's network (no steps)."""
        if self.is_ours:
            from lib.diffusion import checkpoints

            _ = self._checkpoints  # trained first if missing
            return checkpoints.load_checkpoint(self.train_config(), step, device=self.device)
        if step is not None:
            raise ValueError(f"the model {self.model_spec} has no training checkpoints; call network() without a step")
        network = load_model(self.model_spec, device=self.device, below_range="lowest")
        if tuple(network.shape) != tuple(self.shape):
            raise ValueError(f"the model {self.model_spec} takes images {tuple(network.shape)} but {self.label} has "
                             f"{tuple(self.shape)}: pass a model trained on this dataset")
        return network

    @property
    def final_step(self) -> int:
        """The training step of `network()`: our run's last step, -1 for a model from a folder."""
        return self.train_config().total_steps if self.is_ours else -1

    def model_tag(self) -> str:
        """What keys the caches of results computed with the model: our run's checkpoint tag, or the folder's name
        and a digest of its files (a model saved again with other weights gets new caches)."""
        if self.is_ours:
            return self.train_config().tag
        folder = Path(self.model_spec)
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return f"{_slug(self.model_spec)}-{digest.hexdigest()[:12]}"

    def describe_network(self, network: Denoiser) -> str:
        """One line: which network, how many parameters."""
        params = getattr(network, "parameters", None) or getattr(getattr(network, "module", None), "parameters", None)
        count = f", {sum(p.numel() for p in params()):,} parameters" if callable(params) else ""
        if self.is_ours:
            config = self.train_config()
            return f"network: {config.tag}, step {config.total_steps}{count}"
        return f"network: {self.model_spec} ({type(network).__name__}){count}"

    # ------------------------------------------------------------------ features

    @property
    def features_label(self) -> str:
        """What the Frechet distance and KID are computed in, for axis labels and reports."""
        return "Inception-v3 pool3 features (FID)" if self.inception else "classifier features"

    def classifier_key(self) -> str:
        """What keys the caches of results scored with the feature network (`classifier`)."""
        if self.inception:
            return self.classifier().key
        from lib.analysis import features

        return features.classifier_key(features.classifier_config(self.scale.name), self._training_data())

    def classifier(self):
        """The feature network of FD and KID: the FID Inception network from `inception` when given, else the
        scale's MNIST classifier or one trained on this dataset's labels. Loaded once per study."""
        return self._feature_network

    @cached_property
    def _feature_network(self):
        if self.inception:
            from lib.analysis.inception import load_inception

            return load_inception(self.inception, device=self.device)
        from lib.analysis import features

        config = features.classifier_config(self.scale.name)
        return features.load_classifier(config, dataset=self._training_data()).to(self.device)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def load_model(spec: str, device: torch.device | str = "cpu", below_range: str = "refuse") -> Denoiser:
    """A denoiser from a model spec: `ours` or `ours:<scale>` (the last EMA checkpoint of the network `lib.train`
    trains at that scale, default `$REPRO_SCALE`) or the folder of a saved diffusers model, optionally with the
    weights' digest, `folder#sha256=<64 hex digits>` (checked before loading). `below_range`: what a discrete model
    does with a sigma below its lowest training level (`lib.models.discrete_vp.DiscreteVPDenoiser`)."""
    if check_model_spec(spec) == "ours":
        from lib.diffusion import checkpoints, train_config

        scale = spec.partition(":")[2] or None
        return checkpoints.load_checkpoint(train_config.train_config(scale), device=device)
    from lib.models import discrete_vp

    return discrete_vp.load_diffusers_vp(spec, device=device, below_range=below_range)


def check_model_spec(spec: str) -> str:
    """"ours" or "folder" for a model spec `load_model` can load, without loading anything; else a one-line
    ValueError (so that a command refuses a bad `--model` before any expensive work)."""
    if spec == "ours" or spec.startswith("ours:"):
        return "ours"
    from lib.models import model_files

    if model_files.split_spec(spec)[0].is_dir():
        return "folder"
    raise ValueError(f"model {spec!r}: use ours, ours:<scale> (smoke, default, paper) or the folder of a saved "
                     "diffusers model (optionally folder#sha256=<digest of its weights>)")
