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

import os
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from lib.core.config import Scale
from lib.data import statistics
from lib.models.denoisers import Denoiser
from lib.study_data import LABELS, SPLITS, StudyData, slug, study_data
from lib.study_model import FolderModel, OurNetwork, check_model_spec, load_model, study_model

__all__ = ["LABELS", "SPLITS", "Study", "check_model_spec", "from_environment", "load_model", "output_name"]

DEFAULT_DATASET, DEFAULT_MODEL = "mnist", "ours"
DATASET_ENV_VAR, DATASET_DIR_ENV_VAR, MODEL_ENV_VAR = "REPRO_DATASET", "REPRO_DATASET_DIR", "REPRO_MODEL"
INCEPTION_ENV_VAR = "REPRO_INCEPTION"  # the path of the FID Inception weights (`lib.analysis.inception`)


def from_environment() -> tuple[str, str | None, str, str | None]:
    """(dataset, dataset folder, model, Inception weights) from `$REPRO_DATASET`, `$REPRO_DATASET_DIR`,
    `$REPRO_MODEL` and `$REPRO_INCEPTION`, else the defaults: how `lib.notebooks` (and `make figures DATASET=...
    DATA_DIR=... MODEL=... INCEPTION=...`) reach the notebooks."""
    return (os.environ.get(DATASET_ENV_VAR) or DEFAULT_DATASET, os.environ.get(DATASET_DIR_ENV_VAR) or None,
            os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL, os.environ.get(INCEPTION_ENV_VAR) or None)


def output_name(scale: str, dataset: str = DEFAULT_DATASET, model: str = DEFAULT_MODEL,
                inception: str | None = None) -> str:
    """The name of a run's output folders: the scale for MNIST with our network (`default` writes the committed
    folders), else `<dataset>-<scale>` or `<dataset>-<model>-<scale>` (under `data/scales/`), with `-inception`
    after the model when sample quality is measured in Inception features."""
    if dataset == DEFAULT_DATASET and model == DEFAULT_MODEL and not inception:
        return scale
    parts = [slug(dataset)] + ([] if model == DEFAULT_MODEL else [slug(model)]) + (["inception"] if inception else [])
    return "-".join([*parts, scale])


@dataclass
class Study:
    """A dataset and a model at one scale (module docstring); what is loaded is loaded once. The dataset (`data`,
    `lib.study_data`) and the model (`model`, `lib.study_model`) answer for themselves; the study adds what needs
    both (the feature classifier, the output folders) and hands the rest on."""

    scale: Scale
    dataset_spec: str = DEFAULT_DATASET
    dataset_dir: str | None = None
    model_spec: str = DEFAULT_MODEL
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    inception: str | None = None  # a local copy of the FID Inception weights: FD and KID in its features

    def __post_init__(self) -> None:
        check_model_spec(self.model_spec)

    @cached_property
    def data(self) -> StudyData:
        """The dataset: its images, statistics, names, the authors' tables of it."""
        return study_data(self.dataset_spec, self.dataset_dir, self.scale.image_size)

    @cached_property
    def model(self) -> OurNetwork | FolderModel:
        """The model: its networks, checkpoints (if it has a training history), cache tag and description."""
        return study_model(self.model_spec, self.scale, self.data, self.device)

    @property
    def name(self) -> str:
        """The dataset's short name (`mnist`, `cifar10`, or the file or folder name)."""
        return self.data.name

    @property
    def label(self) -> str:
        """The dataset's name for titles."""
        return self.data.label

    @property
    def outputs(self) -> str:
        return output_name(self.scale.name, self.dataset_spec, self.model_spec, self.inception)

    def with_model(self, model_spec: str) -> Study:
        """The same dataset and scale with another model (e.g. `ours`: the network the suite trains on this dataset,
        whose checkpoints carry a training history that a model from a folder does not have)."""
        other = replace(self, model_spec=model_spec)
        if "data" in self.__dict__:  # loaded once per dataset
            other.__dict__["data"] = self.__dict__["data"]
        return other

    def with_history(self) -> Study:
        """This study if its model has a training history, else the same dataset with our network (whose training run
        the notebooks of training dynamics follow)."""
        return self if self.model.has_history else self.with_model(DEFAULT_MODEL)

    @property
    def paper_final(self) -> tuple[str, str] | None:
        """(name, description) of the authors' table for this dataset's final network, or None."""
        return self.data.paper_final

    # ------------------------------------------------------------------ data

    @property
    def dataset(self):
        """The dataset as a `lib.data.datasets.ImageDataset` (images, labels, digest)."""
        return self.data.dataset

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def images(self, split: str = "train") -> torch.Tensor:
        """(N, C, H, W) float32 in [-1, 1]; MNIST at the scale's image size (`lib.data.mnist.load_mnist`)."""
        return self.data.images(split)

    def stats(self, split: str = "train") -> statistics.DatasetStats:
        """Mean, covariance and eigenpairs of a split (float64), cached under `data/cache/stats/`."""
        return self.data.stats(split)

    # ------------------------------------------------------------------ model

    def train_config(self):
        """Our network's training configuration at this scale, on this dataset (`train_config.for_dataset`)."""
        return self.model.train_config()

    def train(self) -> list[int]:
        """Train what is missing of our network's run (nothing for a model from a folder); its checkpoint steps."""
        return self.model.train()

    def checkpoint_steps(self) -> list[int]:
        """Steps of our network's checkpoints (a one-line error naming the training command if any is missing); []
        for a model loaded from a folder."""
        return self.model.checkpoint_steps()

    def network(self, step: int | None = None) -> Denoiser:
        """The model as a denoiser in fp32: our network's EMA weights at `step` (default: the last; an error naming
        the training command if it is not trained) or the model folder's network (no steps)."""
        return self.model.network(step)

    @property
    def final_step(self) -> int:
        """The training step of `network()`: our run's last step, -1 for a model from a folder."""
        return self.model.final_step

    def model_tag(self) -> str:
        """What keys the caches of results computed with the model: our run's checkpoint tag, or the folder's name
        and a digest of its files (a model saved again with other weights gets new caches)."""
        return self.model.tag()

    def describe_network(self, network: Denoiser) -> str:
        """One line: which network, how many parameters."""
        return self.model.describe(network)

    def network_title(self) -> str:
        """What a figure calls the final network."""
        return self.model.title()

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

        return features.classifier_key(features.classifier_config(self.scale.name), self.data.training_data)

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
        return features.load_classifier(config, dataset=self.data.training_data).to(self.device)

