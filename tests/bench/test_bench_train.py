"""Training speed of each scale's network: steps per second in fp32 and with bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from lib import train
from lib.core import devices
from lib.diffusion import train_config
from lib.models.unet import count_parameters

STEPS = 10


@pytest.mark.parametrize("scale", list(train_config.TRAIN_CONFIGS))
def test_bench_training_steps_per_second(scale: str) -> None:
    config = train_config.train_config(scale)
    device = devices.pick_device()
    speeds = train.measure_speed(config, steps=STEPS, device=device)
    n_params = count_parameters(train_config.build_network(config))
    print(f"\n[bench] train {scale}: {n_params:,} parameters, batch {config.batch_size}, 1x32x32, {device}, "
          f"{torch.get_num_threads()} threads, {STEPS} steps: "
          + ", ".join(f"{k} {v:.2f} steps/s" for k, v in speeds.items()))
