"""The feature network behind the Frechet distance: shapes, accuracy floor, cache, and its failure path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.analysis import features, metrics
from lib.data import datasets, mnist


def test_feature_shapes():
    model = features.FeatureClassifier()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    assert model.features(x).shape == (5, 128)
    assert model(x).shape == (5, 10)


def test_cached_classifier_is_accurate_and_train_test_features_are_close():
    config = features.classifier_config()  # the scale's ($REPRO_SCALE; smoke under make test)
    model = features.load_classifier(config, progress=False)
    x_test, y_test = mnist.load_mnist("test", 32), mnist.load_mnist_labels("test")
    assert features.accuracy(model, x_test, y_test) >= config.min_accuracy
    f_train = features.extract_features(model, mnist.load_mnist("train", 32)[:2000])
    f_test = features.extract_features(model, x_test[:2000])
    f_noise = features.extract_features(model, torch.rand(2000, 1, 32, 32) * 2 - 1)
    floor = metrics.frechet_distance_from_features(f_train, f_test)
    assert floor < 0.1 * metrics.frechet_distance_from_features(f_train, f_noise)


def test_the_default_classifier_keeps_the_name_of_its_cache():
    """The committed Frechet distances and notebook 07's sweep cache are keyed by this classifier: new settings
    at their defaults must not rename it; the smoke scale's cheaper classifier is a different one."""
    assert features.classifier_config("default") == features.ClassifierConfig()
    assert features.ClassifierConfig().key() == "65ac68aceb61"
    assert features.classifier_config("smoke").key() != features.ClassifierConfig().key()
    assert features.ClassifierConfig(min_accuracy=0.5).key() == features.ClassifierConfig().key()


def test_a_classifier_below_the_accuracy_floor_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(features, "train_classifier",
                        lambda config, progress, dataset: features.FeatureClassifier().eval())
    monkeypatch.setattr(features, "accuracy", lambda *args, **kwargs: 0.5)
    monkeypatch.setattr(mnist, "load_mnist", lambda split, size: torch.zeros(2, 1, 32, 32))
    monkeypatch.setattr(mnist, "load_mnist_labels", lambda split: torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="50.00% test accuracy"):
        features.load_classifier(progress=False)
    assert not list((tmp_path / "cache" / "features").glob("*.pt")), "a failed classifier must not be cached"


def _two_class_rgb(tmp_path, labels: bool = True, size: int = 16):
    """Dark images are class 0, bright ones class 1: a dataset any classifier separates."""
    gen = torch.Generator().manual_seed(0)
    def split(n):
        y = torch.arange(n) % 2
        x = (0.3 * torch.rand(n, size, size, 3, generator=gen) + 0.6 * y.reshape(-1, 1, 1, 1)) * 255
        return x.to(torch.uint8).numpy(), y.numpy()
    (x_train, y_train), (x_test, y_test) = split(256), split(64)
    arrays = {"x_train": x_train, "x_test": x_test} | ({"y_train": y_train, "y_test": y_test} if labels else {})
    np.savez(tmp_path / "two.npz", **arrays)
    return datasets.load_dataset(str(tmp_path / "two.npz"))


def test_a_classifier_trains_on_another_labelled_dataset_and_is_cached_by_its_content(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    dataset = _two_class_rgb(tmp_path)
    config = features.ClassifierConfig(epochs=8, batch_size=32, lr=1e-2, widths=(4, 8, 8), feature_dim=16,
                                       min_accuracy=0.9)
    model = features.load_classifier(config, progress=False, dataset=dataset)
    assert features.accuracy(model, dataset.x_test, dataset.y_test) >= 0.9
    assert features.extract_features(model, dataset.x_test).shape == (64, 16)
    cached = list((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(cached) == 1 and dataset.digest in cached[0].name
    again = features.load_classifier(config, progress=False, dataset=dataset)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert config.for_dataset(dataset).key() != config.key()


@pytest.mark.parametrize(("min_steps", "expected"), [(0, 2), (20, 20)])
def test_a_small_dataset_gets_at_least_min_steps_of_training(tmp_path, monkeypatch, min_steps, expected):
    """256 images at batch 128 are 2 steps an epoch: one epoch is 2 steps, unless `min_steps` asks for more (the
    smoke preset's single epoch would otherwise train a 48-image dataset's classifier for one step)."""
    steps = []
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    config = features.ClassifierConfig(epochs=1, batch_size=128, widths=(4, 8, 8), feature_dim=16, min_steps=min_steps)
    features.train_classifier(config.for_dataset(_two_class_rgb(tmp_path)), progress=False,
                              dataset=_two_class_rgb(tmp_path))
    assert len(steps) == expected


def test_a_dataset_without_labels_or_with_odd_sizes_cannot_train_a_classifier(tmp_path):
    with pytest.raises(datasets.DatasetError, match="has no labels"):
        features.ClassifierConfig().for_dataset(_two_class_rgb(tmp_path, labels=False))
    with pytest.raises(datasets.DatasetError, match="multiple of 8"):
        features.ClassifierConfig().for_dataset(_two_class_rgb(tmp_path, size=12))
