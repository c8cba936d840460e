"""Data-parallel training over N processes: `torchrun --nproc_per_node N -m lib.train ...`
(DistributedDataParallel; NCCL on GPUs, one per process at cuda:LOCAL_RANK, gloo on CPUs).

Equivalence to one process. Let B be the configuration's batch size (the global batch, `config.batch_size`),
N the world size, b = B / N (B % N == 0 is required) and r the rank. At step t every rank builds the global
batch x_1..x_B that one process would use (the same epoch permutation and flips), draws the noise levels
sigma_1..sigma_B and the noise n_1..n_B of the *whole* batch from the dedicated generator (so the generator's
state stays identical on every rank, and equal to the one-process run's), and keeps its slice
S_r = [r b, (r + 1) b). Its loss is the slice mean L_r = (1/b) sum_{i in S_r} l_i, and DDP averages the
gradients over the ranks:

    (1/N) sum_r grad L_r = (1/N) sum_r (1/b) sum_{i in S_r} grad l_i = (1/B) sum_i grad l_i = grad L,

the one-process gradient up to float rounding (sums taken in another order, convolutions on b images instead of
B). The loss recorded is the all-reduced (1/N) sum_r L_r = L. Every rank then holds the same gradient and the same
loss, so the non-finite guard (loss and gradient norm), the Adam step and the EMA update take the same decision
and give the same weights on every rank. The learning-rate, EMA and checkpoint schedules count optimizer steps and
use B, so they mean the same whatever N is.

Dropout: the masks cannot be those of one process (each rank runs the network on its own slice). With N > 1 each
rank reseeds the global torch RNG before every step from (seed, rank, step): masks independent across ranks, and a
pure function of the step, so a resumed run draws the same ones. With dropout > 0 a run on N processes is therefore
another (equally valid) run than one process's; without dropout it is the same run up to float rounding.

Checkpoints: rank 0 alone writes (atomically, `lib.core.integrity`) while the others wait at a barrier; every rank
resumes from the same last checkpoint. The world size is recorded in the checkpoint's meta, and a resume with
another world size is refused in one line: it would not continue the same run bit for bit (float rounding, the
dropout masks, the per-process thread count).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from lib.core import devices
from lib.diffusion.checkpoints import CheckpointError
from lib.diffusion.train_config import TrainConfig
from lib.models import edm


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank `rank` of `size` (1: training alone, as without
    torchrun), `local_rank` on its machine (its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the checkpoints, prints and reports; the others only train."""
        return self.rank == 0

    def local_batch_size(self, global_batch: int) -> int:
        """b = B / N, or a one-line ValueError when the global batch B does not split evenly."""
        if global_batch % self.size:
            raise ValueError(f"the global batch of {global_batch} images does not split evenly over {self.size} "
                             f"processes: run a number of processes that divides {global_batch}")
        return global_batch // self.size

    def local_slice(self, batch: torch.Tensor) -> torch.Tensor:
        """Rows [r b, (r + 1) b) of the global batch (or of anything drawn per image of it)."""
        b = self.local_batch_size(batch.shape[0])
        return batch[self.rank * b:(self.rank + 1) * b]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def from_writer(self, value: object) -> object:
        """Rank 0's `value`, on every rank (a picklable object)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """(1/N) sum_r value_r, the same on every rank (`value` itself when alone)."""
        if self.size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.size

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module | None:
        """DDP(net), which averages the gradients of every rank during the backward pass (the parameters stay
        `net`'s); None when alone."""
        if self.size == 1:
            return None
        one_gpu = device.type == "cuda" and device.index is not None
        return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if one_gpu else None)

    def seed_dropout(self, seed: int, step: int) -> None:
        """With N > 1, seed the global torch RNG (dropout) from (seed, rank, step); alone, leave it alone."""
        if self.size > 1:
            digest = hashlib.sha256(f"dropout/{seed}/{self.rank}/{step}".encode()).digest()
            torch.manual_seed(int.from_bytes(digest[:7], "little"))


ALONE = World()  # one process, as without torchrun


def current_world() -> World:
    """The world of the initialised process group, else one process alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return ALONE
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def environment_world(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in WORLD_SIZE, RANK and LOCAL_RANK, with its rendezvous in MASTER_ADDR and
    MASTER_PORT (no WORLD_SIZE: one process alone); a one-line ValueError when they make no sense."""
    env = os.environ if environ is None else environ
    size = devices.positive_int(env.get("WORLD_SIZE", "1"), "WORLD_SIZE", "the number of training processes")
    if size == 1:
        return ALONE
    ranks = []
    for name in ("RANK", "LOCAL_RANK"):
        text = env.get(name, "").strip()
        if not text.isdigit():
            raise ValueError(f"WORLD_SIZE is {size} but {name} is {text!r}: start the processes with torchrun")
        ranks.append(int(text))
    if ranks[0] >= size:
        raise ValueError(f"RANK {ranks[0]} is not below WORLD_SIZE {size}: start the processes with torchrun")
    unset = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name, "").strip()]
    if unset:
        raise ValueError(f"WORLD_SIZE is {size} but {' and '.join(unset)} unset: start the processes with torchrun")
    return World(ranks[0], size, ranks[1])


def process_device(world: World, device: torch.device) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK when training on GPUs with N > 1, else `device`."""
    if world.size == 1 or device.type != "cuda":
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {world.local_rank} has no GPU ({torch.cuda.device_count()} here): run at most "
                         "one process per GPU")
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group of `world` for the block (NCCL on `device` when it is a GPU, gloo otherwise), destroyed
    at the end; nothing when alone. The rendezvous is torchrun's (MASTER_ADDR, MASTER_PORT)."""
    if world.size == 1:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_edm_loss(
    denoiser: nn.Module, local_batch: torch.Tensor, generator: torch.Generator, config: TrainConfig, world: World,
) -> torch.Tensor:
    """Per-sample EDM loss (b,) of this rank's slice of the global batch, with the slice of the noise levels and
    noise drawn for the whole batch (B = b N): `edm.edm_loss` when alone, whose draws (sigma, then n) it repeats."""
    if world.size == 1:
        return edm.edm_loss(denoiser, local_batch, generator, config.p_mean, config.p_std, config.sigma_data)
    device, n_global = local_batch.device, local_batch.shape[0] * world.size
    sigma = edm.sample_training_sigmas(n_global, generator, device, config.p_mean, config.p_std)
    noise = torch.randn((n_global, *local_batch.shape[1:]), generator=generator, device=generator.device)
    return edm.denoising_loss(denoiser, local_batch, world.local_slice(sigma), world.local_slice(noise).to(device),
                              config.sigma_data)


def check_same_world(meta: dict, world: World, step: int, folder: Path) -> None:
    """A one-line CheckpointError when the checkpoint at `step` was written by a run on another number of
    processes (checkpoints without the record come from one process)."""
    before = int(meta.get("world_size", 1))
    if before != world.size:
        how = "python -m lib.train" if before == 1 else f"torchrun --nproc_per_node {before} -m lib.train"
        raise CheckpointError(f"the checkpoint at step {step} in {folder} was trained on {before} process(es), this "
                              f"run has {world.size}: resume it with `{how} ...`, or delete {folder} to start over")
