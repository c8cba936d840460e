"""Shared fixtures. Unit tests never write into the committed figures/ or data/results/."""

from __future__ import annotations

import os

# Before torch loads OpenMP: passive waiting keeps the tests fast beside a busy core (see lib/__init__).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lib.core import devices  # noqa: E402
from lib.models.gaussian import GaussianDenoiser  # noqa: E402

# `$REPRO_THREADS` (make unit sets one core's share per pytest-xdist worker), else the idle cores.
torch.set_num_threads(devices.default_threads())


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def gaussian32() -> GaussianDenoiser:
    """N(mu, U diag(lambda) U^T) on 2x4x4 in float64: lambda log-spaced from 25 to 1e-3, a random rotation U.
    The samplers' test problem: its closed form is the exact answer."""
    gen = torch.Generator().manual_seed(0)
    d = 32
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    eigvals = torch.logspace(math.log10(25.0), -3.0, d, dtype=torch.float64)
    mean = 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
    return GaussianDenoiser(mean, eigvals, eigvecs, (2, 4, 4), dtype=torch.float64)


@pytest.fixture(scope="session")
def gain_data():
    """2000 samples of N(0.2, U diag(lambda) U^T) on 1x4x4, lambda log-spaced from 10 to 1e-3, and their float64
    statistics: the gain tests' data (lib.analysis.gains, gain_study), whose Gaussian gains are exact."""
    from lib.data.statistics import compute_stats

    d, shape = 16, (1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    lam = torch.logspace(1, -3, d, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    x = (0.2 + (torch.randn(2000, d, generator=gen, dtype=torch.float64) * lam.sqrt()) @ u.T).reshape(-1, *shape)
    return x, compute_stats(x, key="test-data")


@pytest.fixture
def read_only_data_dir(tmp_path, monkeypatch):
    """`REPRO_DATA_DIR` in a folder where nothing can be created, as a read-only disk behaves (patched, since
    chmod does not bind root); yields the folder."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    original = type(tmp_path).mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tiny_rgb_study(tmp_path_factory):
    """A tiny RGB dataset (48 training and 40 test images, 3x16x16, three labelled colour classes, as an .npz)
    and a randomly initialised `diffusers` UNet2DModel for it with its DDPM scheduler, saved to a folder:
    (dataset path, model folder). What a study of another dataset with a pretrained model looks like, small."""
    import numpy as np
    from diffusers import DDPMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("tiny_rgb")
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 3, n)
        x = rng.normal(96, 40, (n, 16, 16, 3))
        x[np.arange(n), :, :, labels] += 80  # each class brighter in its own channel
        return np.clip(x, 0, 255).astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = images(48), images(40)
    dataset = root / "tiny_rgb.npz"
    np.savez(dataset, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)
    model = root / "tiny_unet"
    unet.save_pretrained(model)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(model)
    return dataset, model


def image_gaussian(rank: int = 12) -> GaussianDenoiser:
    """A rank-`rank` Gaussian on 1x32x32 images (what the feature network takes), float32."""
    gen = torch.Generator().manual_seed(1)
    d = 32 * 32
    eigvecs, _ = torch.linalg.qr(torch.randn(d, rank, generator=gen, dtype=torch.float64))
    eigvals = torch.logspace(0.0, -2.0, rank, dtype=torch.float64)
    mean = (0.5 * torch.randn(d, generator=gen, dtype=torch.float64)).clamp(-0.9, 0.9)
    return GaussianDenoiser(mean, eigvals, eigvecs, (1, 32, 32))


@pytest.fixture(scope="session")
def feature_setup():
    """(an untrained seeded feature network, `image_gaussian()`, features of 64 of its samples): the stand-ins for
    the classifier, the network and the test set of the teleportation sweep."""
    from lib.analysis.features import FeatureClassifier, extract_features

    torch.manual_seed(0)
    classifier = FeatureClassifier().eval()
    model = image_gaussian()
    reference = extract_features(classifier, model.sample(64, generator=torch.Generator().manual_seed(9)))
    return classifier, model, reference
