"""The feature network behind the Frechet distance: shapes, accuracy floor, cache, and its failure path."""

from __future__ import annotations

import pytest
import torch

from lib import data, features, metrics


def test_feature_shapes():
    model = features.MnistClassifier()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    assert model.features(x).shape == (5, 128)
    assert model(x).shape == (5, 10)


def test_cached_classifier_is_accurate_and_train_test_features_are_close():
    config = features.classifier_config()  # the scale's ($REPRO_SCALE; smoke under make test)
    model = features.load_classifier(config, progress=False)
    x_test, y_test = data.load_mnist("test", 32), data.load_mnist_labels("test")
    assert features.accuracy(model, x_test, y_test) >= config.min_accuracy
    f_train = features.extract_features(model, data.load_mnist("train", 32)[:2000])
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
    monkeypatch.setattr(features, "train_classifier", lambda config, progress: features.MnistClassifier().eval())
    monkeypatch.setattr(features, "accuracy", lambda *args, **kwargs: 0.5)
    monkeypatch.setattr(data, "load_mnist", lambda split, size: torch.zeros(2, 1, 32, 32))
    monkeypatch.setattr(data, "load_mnist_labels", lambda split: torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="50.00% test accuracy"):
        features.load_classifier(progress=False)
    assert not list((tmp_path / "cache" / "features").glob("*.pt")), "a failed classifier must not be cached"
