"""The model side of a study (`lib.study`): an object that carries its own networks, cache tag, description and
capabilities, so that the notebooks ask it ("has it a training history?") instead of testing which model it is.

- `OurNetwork`: the network `lib.train` trains at the study's scale on the study's dataset
  (`lib.diffusion.train_config.for_dataset`): checkpoints along its training run, its configuration and its noise
  distribution known. A network that is not trained yet is a one-line error naming the command that trains it
  (`train()` trains it explicitly: `lib.notebooks` does, before the notebooks that need it);
- `FolderModel`: the network of a saved `diffusers` folder (`lib.models.discrete_vp`): its final weights only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from lib.core.config import Scale
from lib.models.denoisers import Denoiser
from lib.study_data import StudyData, slug

OURS = "ours"


def parameter_count(network: Denoiser) -> str:
    """", N parameters" for a network with parameters (directly or through `.module`), else ""."""
    params = getattr(network, "parameters", None) or getattr(getattr(network, "module", None), "parameters", None)
    return f", {sum(p.numel() for p in params()):,} parameters" if callable(params) else ""


class OurNetwork:
    """The network the suite trains at `scale` on `data`, loaded on `device`."""

    spec = OURS
    #: checkpoints along a training run, its configuration and its training noise distribution are known
    has_history = True

    def __init__(self, scale: Scale, data: StudyData, device: torch.device) -> None:
        self.scale, self.data, self.device = scale, data, device

    def train_config(self):
        """The training configuration at this scale, on this dataset (`train_config.for_dataset`; MNIST's is the
        scale's preset)."""
        from lib.diffusion import train_config

        config = train_config.train_config(self.scale.name)
        data = self.data.training_data
        return config if data is None else train_config.for_dataset(config, data)

    def train(self) -> list[int]:
        """Train what is missing of the run (`training.ensure_checkpoints`); its checkpoint steps."""
        from lib.diffusion import training

        listed = training.ensure_checkpoints(self.train_config(), device=self.device, dataset=self.data.training_data)
        return [step for step, _ in listed]

    def checkpoint_steps(self) -> list[int]:
        """The steps of the run's checkpoints; a one-line error naming `python -m lib.train ...` if any is missing."""
        from lib.diffusion import checkpoints

        return checkpoints.trained_steps(self.train_config())

    def network(self, step: int | None = None) -> Denoiser:
        """The EMA weights at `step` (default: the last) as a denoiser in fp32."""
        from lib.diffusion import checkpoints

        config = self.train_config()
        checkpoints.trained_steps(config)
        return checkpoints.load_checkpoint(config, step, device=self.device)

    @property
    def final_step(self) -> int:
        return self.train_config().total_steps

    def tag(self) -> str:
        """What keys the caches of results computed with it: the run's checkpoint tag."""
        return self.train_config().tag

    def describe(self, network: Denoiser) -> str:
        config = self.train_config()
        return f"network: {config.tag}, step {config.total_steps}{parameter_count(network)}"

    def title(self) -> str:
        """What a figure calls its final network."""
        return f"Final checkpoint ({self.train_config().name} run, step {self.final_step})"


class FolderModel:
    """The network of a saved `diffusers` folder (`spec`: the folder, optionally `#sha256=<digest>`), for the images of
    `data`."""

    has_history = False
    final_step = -1  # no training step: the folder's weights are the only ones

    def __init__(self, spec: str, data: StudyData, device: torch.device) -> None:
        self.spec, self.data, self.device = spec, data, device

    def train(self) -> list[int]:
        """Nothing to train."""
        return []

    def checkpoint_steps(self) -> list[int]:
        return []

    def network(self, step: int | None = None) -> Denoiser:
        """The folder's network as a denoiser in fp32, checked to take this dataset's images."""
        if step is not None:
            raise ValueError(f"the model {self.spec} has no training checkpoints; call network() without a step")
        network = load_model(self.spec, device=self.device, below_range="lowest")
        if tuple(network.shape) != tuple(self.data.shape):
            raise ValueError(f"the model {self.spec} takes images {tuple(network.shape)} but {self.data.label} has "
                             f"{tuple(self.data.shape)}: pass a model trained on this dataset")
        return network

    def tag(self) -> str:
        """The folder's name and a digest of its files (a model saved again with other weights gets new caches)."""
        folder = Path(self.spec)
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return f"{slug(self.spec)}-{digest.hexdigest()[:12]}"

    def describe(self, network: Denoiser) -> str:
        return f"network: {self.spec} ({type(network).__name__}){parameter_count(network)}"

    def title(self) -> str:
        return f"{self.spec} on {self.data.label}"

    def train_config(self):
        raise ValueError(f"the model {self.spec} was not trained by the suite: it has no training configuration")


def study_model(spec: str, scale: Scale, data: StudyData, device: torch.device) -> OurNetwork | FolderModel:
    """The model of a study from its spec (checked first: `check_model_spec`)."""
    kind = check_model_spec(spec)
    return OurNetwork(scale, data, device) if kind == OURS and spec == OURS else FolderModel(spec, data, device)


def load_model(spec: str, device: torch.device | str = "cpu", below_range: str = "refuse") -> Denoiser:
    """A denoiser from a model spec: `ours` or `ours:<scale>` (the last EMA checkpoint of the network `lib.train`
    trains at that scale, default `$REPRO_SCALE`) or the folder of a saved diffusers model, optionally with the
    weights' digest, `folder#sha256=<64 hex digits>` (checked before loading). `below_range`: what a discrete model
    does with a sigma below its lowest training level (`lib.models.discrete_vp.DiscreteVPDenoiser`)."""
    if check_model_spec(spec) == OURS:
        from lib.diffusion import checkpoints, train_config

        scale = spec.partition(":")[2] or None
        return checkpoints.load_checkpoint(train_config.train_config(scale), device=device)
    from lib.models import discrete_vp

    return discrete_vp.load_diffusers_vp(spec, device=device, below_range=below_range)


def check_model_spec(spec: str) -> str:
    """"ours" or "folder" for a model spec `load_model` can load, without loading anything; else a one-line
    ValueError (so that a command refuses a bad `--model` before any expensive work)."""
    if spec == OURS or spec.startswith(f"{OURS}:"):
        return OURS
    from lib.models import model_files

    if model_files.split_spec(spec)[0].is_dir():
        return "folder"
    raise ValueError(f"model {spec!r}: use ours, ours:<scale> (smoke, default, paper) or the folder of a saved "
                     "diffusers model (optionally folder#sha256=<digest of its weights>)")
