"""What the second cell of every notebook does: seeds, threads, device, the study, output folders."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lib.core import paths
from lib.core.config import Scale, get_scale
from lib.core.devices import default_threads, pick_device, use_full_fp32
from lib.study import Study, from_environment


@dataclass(frozen=True)
class Context:
    """Everything a notebook needs to know about where and how big it runs: the study (which holds the scale and the
    device), where its figures and tables go, and the seed."""

    study: Study  # the dataset and model (MNIST and our network by default), at one scale, on one device
    figures: Path
    results: Path
    seed: int

    @property
    def scale(self) -> Scale:
        return self.study.scale

    @property
    def device(self) -> torch.device:
        return self.study.device

    @property
    def outputs(self) -> str:
        """The name of the output folders (`lib.study.output_name`): the scale for MNIST with our network."""
        return self.study.outputs


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(scale_name: str | None = None, seed: int = 0, verbose: bool = True, dataset: str | None = None,
          dataset_dir: str | None = None, model: str | None = None, inception: str | None = None) -> Context:
    """Seed, set threads, pick the device, name the study and resolve its output folders; print them.

    `dataset`, `dataset_dir`, `model` and `inception` default to `$REPRO_DATASET`, `$REPRO_DATASET_DIR`,
    `$REPRO_MODEL` and `$REPRO_INCEPTION`, else MNIST, our network and the suite's feature classifier (`lib.study`).
    """
    scale = get_scale(scale_name)
    seed_everything(seed)
    torch.set_num_threads(default_threads())
    use_full_fp32()
    env_dataset, env_dir, env_model, env_inception = from_environment()
    device = pick_device()
    inception = inception or env_inception
    study = Study(scale, dataset or env_dataset, dataset_dir or env_dir, model or env_model, device, inception)
    ctx = Context(study, paths.figures_dir(study.outputs), paths.results_dir(study.outputs), seed)
    if verbose:
        what = "" if study.outputs == scale.name else f" dataset={study.dataset_spec} model={study.model_spec}"
        what += f" inception={inception}" if inception else ""
        print(f"scale={scale.name}{what} device={ctx.device} threads={torch.get_num_threads()} seed={seed}")
    return ctx
