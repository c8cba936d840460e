"""Training on another dataset (lib.diffusion.train_config.for_dataset, lib.train --dataset): MNIST runs keep their
folders,
an RGB dataset trains with flips and resumes bit for bit, and the wrong data is refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib import train
from lib.core import cli
from lib.data.datasets import ImageDataset, load_dataset
from lib.diffusion import checkpoints, train_config, training, training_data

TINY = train_config.TrainConfig(
    name="tiny", channels=8, channel_mult=(1, 2), data_size=None, batch_size=16, total_steps=6, lr=2e-3,
    warmup_steps=2, checkpoint_every=3, checkpoint_early=(0,),
)


def test_the_mnist_runs_keep_their_checkpoint_folders():
    """The dataset fields stay out of the hash at their MNIST defaults: the committed runs' folders are unchanged."""
    from dataclasses import replace

    assert {name: c.tag for name, c in train_config.TRAIN_CONFIGS.items()} == {
        "smoke": "smoke-33e2e7074ae1", "default": "default-e4040e15fb33", "paper": "paper-37f26d38c3dc"}
    # the 4,000-step default of the earlier sessions (notebook 02's first half) keeps its folder too
    assert replace(train_config.TRAIN_CONFIGS["default"], total_steps=4000).tag == "default-51e61f29709f"
    assert "dataset" not in train_config.TRAIN_CONFIGS["default"].as_dict()


@pytest.fixture(scope="module")
def tiny_rgb(tiny_rgb_study) -> ImageDataset:
    return load_dataset(str(tiny_rgb_study[0]))


def test_for_dataset_takes_the_datas_channels_size_and_digest(tiny_rgb):
    config = train_config.for_dataset(TINY, tiny_rgb)
    assert (config.name, config.dataset, config.in_channels, config.image_size) == ("tiny-tiny_rgb", "tiny_rgb", 3, 16)
    assert config.data_digest == tiny_rgb.digest and not config.hflip
    assert config.hash != dataclasses.replace(config, data_digest="0" * 16).hash  # other pixels, another run
    assert train_config.for_dataset(TINY, dataclasses.replace(tiny_rgb, name="mnist")) is TINY
    cifar = dataclasses.replace(tiny_rgb, name="cifar10", x_train=torch.zeros(200, 3, 32, 32))
    paper = train_config.for_dataset(train_config.train_config("paper"), cifar)
    assert (paper.channels, paper.channel_mult, paper.num_blocks, paper.attn_resolutions, paper.hflip) == (
        96, (1, 2, 2), 2, (16,), True)
    smoke = train_config.train_config("smoke")
    assert train_config.for_dataset(smoke, cifar).channels == smoke.channels
    with pytest.raises(ValueError, match="multiple of 2"):
        train_config.for_dataset(TINY, dataclasses.replace(tiny_rgb, x_train=torch.zeros(48, 3, 15, 15)))


def test_an_rgb_run_with_flips_resumes_bit_for_bit(tiny_rgb, tmp_path):
    config = dataclasses.replace(train_config.for_dataset(TINY, tiny_rgb), hflip=True)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    training.train(config, root=straight, device="cpu", progress=False, dataset=tiny_rgb)
    assert training.train(config, root=resumed, device="cpu", stop_at=3, progress=False, dataset=tiny_rgb) == [0, 3]
    assert training.train(config, root=resumed, device="cpu", progress=False, dataset=tiny_rgb) == [6]
    a, b = (torch.load(checkpoints.checkpoint_path(config, 6, r), weights_only=True) for r in (straight, resumed))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    model = checkpoints.load_checkpoint(config, root=straight)
    x = tiny_rgb.x_test[:2]
    assert model(x, 1.0).shape == (2, 3, 16, 16)
    flips = training_data.flip_mask(0, 5, 1000)
    assert torch.equal(flips, training_data.flip_mask(0, 5, 1000)) and 400 < int(flips.sum()) < 600


def test_the_wrong_training_data_is_refused(tiny_rgb, tmp_path):
    config = train_config.for_dataset(TINY, tiny_rgb)
    with pytest.raises(ValueError, match="pass the dataset the configuration was made for"):
        training.train(config, root=tmp_path, device="cpu", progress=False)
    other = dataclasses.replace(tiny_rgb, digest="f" * 16)
    with pytest.raises(ValueError, match="digest"):
        training_data.load_training_data(config, torch.device("cpu"), other)
    with pytest.raises(checkpoints.CheckpointError, match=r"--dataset tiny_rgb"):
        checkpoints.load_checkpoint(train_config.for_dataset(train_config.train_config("smoke"), tiny_rgb),
                              root=tmp_path)


def test_the_command_line_trains_on_a_dataset_file(tiny_rgb_study, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(train, "train", lambda config, **kw: calls.append((config, kw)) or [])
    monkeypatch.setattr(train, "load_history", lambda config: checkpoints.History(np.ones(3), 0, {
        "seconds": 1.0, "precision": "fp32", "threads": 1}))
    monkeypatch.setattr(train, "verify_checkpoints", lambda config: None)
    assert train.main(["--scale", "smoke", "--dataset", str(tiny_rgb_study[0]), "--threads", "1"]) == 0
    config, kwargs = calls[0]
    assert config.dataset == "tiny_rgb" and config.in_channels == 3 and kwargs["dataset"].name == "tiny_rgb"
    assert cli.run(train.main, ["--scale", "smoke", "--dataset", str(tmp_path / "none.npz")]) == 2
    assert "neither mnist, cifar10" in capsys.readouterr().err
