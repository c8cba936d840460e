"""The image-quality feature network: a small MNIST classifier the suite trains itself
(Inception weights cannot be downloaded offline, and Inception FID means little on MNIST).

Inception weights cannot be downloaded here, so the Frechet distance and KID are computed in the
penultimate feature space (128 dimensions) of a small CNN trained on the MNIST training set at
1x32x32 in [-1, 1]. Training is seeded, takes about 70 s on one CPU core, must reach 98.5% test
accuracy, and is cached under `data/cache/features/` keyed by its configuration. The smoke scale (CI)
trains a cheaper one (one epoch on 30,000 images, 15 s, about 97%): its Frechet distances only have to
run, not to mean anything. The same network trains on any labelled `lib.data.datasets.ImageDataset` (C channels,
sides a multiple of 8), cached by the configuration and the dataset's content digest.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib.core import integrity, paths
from lib.core.config import get_scale
from lib.data import mnist
from lib.data.datasets import DatasetError, ImageDataset

MIN_TEST_ACCURACY = 0.985


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    feature_dim: int = 128
    widths: tuple[int, int, int] = (16, 32, 64)
    version: int = 1
    train_subset: int | None = None  # the first N training images (None: all 60,000)
    min_accuracy: float = MIN_TEST_ACCURACY  # the test accuracy a trained classifier must reach to be kept
    in_channels: int = 1  # image channels, classes and side: MNIST's unless a dataset says otherwise
    n_classes: int = 10
    image_size: int = 32
    min_steps: int = 200  # a small dataset gets more epochs, up to this many optimizer steps (MNIST: more anyway)

    def key(self) -> str:
        """Hash of the training settings. Settings added after version 1 enter only when they differ from their
        defaults, and `min_accuracy` (a gate, not a setting) never, so that cached classifiers keep their names."""
        settings = asdict(self)
        settings.pop("min_accuracy")
        defaults = {f.name: f.default for f in fields(ClassifierConfig)}
        for name in _ADDED_SETTINGS:
            if settings[name] == defaults[name]:
                settings.pop(name)
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def for_dataset(self, dataset: ImageDataset) -> ClassifierConfig:
        """This configuration with the channels, classes and size of `dataset` (which must have labels)."""
        if dataset.y_train is None or dataset.y_test is None:
            raise DatasetError(f"dataset {dataset.name} has no labels: the feature classifier needs train and test "
                               "labels (class subfolders, or y_train and y_test in the .npz)")
        channels, height, width = dataset.shape
        if height != width or height % 8:
            raise DatasetError(f"dataset {dataset.name}: images {height}x{width}; the feature classifier needs "
                               "square images with sides a multiple of 8")
        n_classes = int(max(dataset.y_train.max(), dataset.y_test.max())) + 1
        return replace(self, in_channels=channels, n_classes=n_classes, image_size=height)


_ADDED_SETTINGS = ("train_subset", "in_channels", "n_classes", "image_size", "min_steps")  # added after version 1


#: The classifier of each scale; smoke's is cheap (CI), the others are the one behind the committed FDs.
CLASSIFIER_CONFIGS: dict[str, ClassifierConfig] = {
    "smoke": ClassifierConfig(epochs=1, train_subset=30_000, min_accuracy=0.96),
    "default": ClassifierConfig(),
    "paper": ClassifierConfig(),
}


def classifier_config(scale_name: str | None = None) -> ClassifierConfig:
    """The feature classifier's configuration at a scale (None: `$REPRO_SCALE`, else `default`)."""
    return CLASSIFIER_CONFIGS[get_scale(scale_name).name]


class FeatureClassifier(nn.Module):
    """Three conv blocks (each halving the resolution), then a `feature_dim` feature layer and the head."""

    def __init__(self, feature_dim: int = 128, widths: tuple[int, int, int] = (16, 32, 64), in_channels: int = 1,
                 n_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c3 * (image_size // 8) ** 2, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    @classmethod
    def of(cls, config: ClassifierConfig) -> FeatureClassifier:
        return cls(config.feature_dim, config.widths, config.in_channels, config.n_classes, config.image_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim) of images (B, C, H, W) in [-1, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def accuracy(model: FeatureClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch), y.split(batch), strict=True))
    return correct / len(x)


def _labelled(split: str, dataset: ImageDataset | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a split: MNIST at 32x32, or those of `dataset`."""
    if dataset is None:
        return mnist.load_mnist(split, 32), mnist.load_mnist_labels(split)
    return (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)


def train_classifier(config: ClassifierConfig = ClassifierConfig(), progress: bool = True,
                     dataset: ImageDataset | None = None) -> FeatureClassifier:
    """Train the feature network from scratch (seeded) on MNIST, or on `dataset` (`config.for_dataset` first), for
    `config.epochs` epochs, or more on a small dataset: at least `config.min_steps` optimizer steps."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x, y = _labelled("train", dataset)
    x, y = x[:config.train_subset], y[:config.train_subset]
    model = FeatureClassifier.of(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = max(1, len(x) // config.batch_size)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=epochs * steps_per_epoch)
    bar = tqdm(total=epochs * steps_per_epoch, desc="feature classifier", disable=not progress)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def classifier_key(config: ClassifierConfig, dataset: ImageDataset | None = None) -> str:
    """What names the cached classifier of `config` (on MNIST, or on a labelled `dataset`: its adapted
    configuration and the dataset's digest), and keys the caches of results scored with it."""
    return config.key() if dataset is None else f"{config.for_dataset(dataset).key()}_{dataset.digest}"


def load_classifier(config: ClassifierConfig | None = None, progress: bool = True,
                    dataset: ImageDataset | None = None) -> FeatureClassifier:
    """The cached feature network (None: the scale's, `classifier_config()`) of MNIST or of a labelled `dataset`,
    trained first if missing; refuses one below `config.min_accuracy` test accuracy."""
    config = classifier_config() if config is None else config
    name = f"classifier_{classifier_key(config, dataset)}"
    if dataset is not None:
        config = config.for_dataset(dataset)
    cache = paths.cache_dir("features") / f"{name}.pt"
    with paths.exclusive_lock(cache.with_suffix(".lock"), f"training the feature classifier {cache.name}"):
        return _cached_or_trained_classifier(cache, config, progress, dataset)


def _cached_or_trained_classifier(cache: Path, config: ClassifierConfig, progress: bool,
                                  dataset: ImageDataset | None) -> FeatureClassifier:
    model = FeatureClassifier.of(config)
    # the digest checked, then the keys and shapes by the strict load into the model
    if integrity.load_cache(cache, model.load_state_dict, "[features]", "retraining") is not None:
        return model.eval()
    model = train_classifier(config, progress, dataset)
    acc = accuracy(model, *_labelled("test", dataset))
    if acc < config.min_accuracy:
        raise RuntimeError(f"feature classifier reached {acc:.2%} test accuracy (< {config.min_accuracy:.1%}); "
                           "change ClassifierConfig (more epochs) and retry")
    integrity.save(model.state_dict(), cache)
    return model


@torch.no_grad()
def extract_features(model: FeatureClassifier, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Feature vectors (N, feature_dim) of images (N, C, H, W) in [-1, 1], in fp32 on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.features(chunk.to(device).float().clamp(-1, 1)).cpu() for chunk in images.split(batch)])
