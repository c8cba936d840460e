"""The training images of a run and their augmentation: MNIST at the run's size or another dataset, on the
device, and the seeded horizontal flips of the authors' CIFAR-10 setup."""

from __future__ import annotations

import hashlib

import torch

from lib.data.datasets import ImageDataset
from lib.diffusion.train_config import TrainConfig


def load_training_data(config: TrainConfig, device: torch.device, dataset: ImageDataset | None = None) -> torch.Tensor:
    """The training images of `config`: MNIST's, or those of `dataset`, which must be the one the configuration was
    made for (`for_dataset`: same name and digest)."""
    if config.dataset == "mnist":
        from lib.data.mnist import load_mnist

        data = load_mnist("train", config.image_size)
    else:
        if dataset is None or (dataset.name, dataset.digest) != (config.dataset, config.data_digest):
            got = "no dataset" if dataset is None else f"{dataset.name} (digest {dataset.digest})"
            raise ValueError(f"{config.tag} trains on {config.dataset} (digest {config.data_digest}); got {got}: "
                             "pass the dataset the configuration was made for")
        data = dataset.x_train
    return data[: config.data_size].to(device) if config.data_size else data.to(device)


def flip_mask(seed: int, step: int, n: int) -> torch.Tensor:
    """Which images of step `step`'s batch are flipped left-right (half on average), a pure function of (seed, step):
    a resumed run flips the same ones."""
    mixed = int.from_bytes(hashlib.sha256(f"hflip/{seed}/{step}".encode()).digest()[:7], "little")
    return torch.rand(n, generator=torch.Generator().manual_seed(mixed)) < 0.5


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Data order of one epoch, a pure function of (seed, epoch): nothing to save for resuming."""
    mixed = int.from_bytes(hashlib.sha256(f"data-order/{seed}/{epoch}".encode()).digest()[:7], "little")
    return torch.randperm(n, generator=torch.Generator().manual_seed(mixed))


def training_batch(data: torch.Tensor, indices: torch.Tensor, config: TrainConfig, step: int) -> torch.Tensor:
    """The (global) batch of step `step`: the images `indices` of `data`, flipped where `flip_mask` says when the
    configuration flips."""
    batch = data[indices]
    if config.hflip:
        flips = flip_mask(config.seed, step, len(batch)).to(batch.device)
        batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)
    return batch
