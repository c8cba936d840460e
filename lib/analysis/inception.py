"""The FID Inception-v3 feature network, in plain torch: the standard "pool3" features (2048 dimensions).

FID as published (TTUR, Heusel et al. 2017) uses the TensorFlow graph `inception-2015-12-05`; pytorch-fid ports
its weights to torch as `pt_inception-2015-12-05-6726825d.pth`, a state dict for torchvision's `Inception3`
(1008 logits, no auxiliary head). This module rebuilds that network without torchvision, with the same module
and parameter names, so that the file loads with `load_state_dict(strict=True)`. The FID variants of the blocks:
- every conv has no bias and is followed by BatchNorm (eps 0.001) and ReLU: y = relu(gamma (Wx - mu) /
  sqrt(var + 0.001) + beta);
- the 3x3 average pools of the A, C and first E blocks (Mixed_5b-d, Mixed_6b-e, Mixed_7b) divide by the number
  of pixels inside the image (TensorFlow's SAME padding, `count_include_pad=False`), not by 9;
- the pool branch of the last E block (Mixed_7c) is a 3x3 max pool (a quirk of that graph, kept for FID);
- the E blocks split their 3x3 into parallel 1x3 and 3x1 convs whose outputs are concatenated.

Features: x in [-1, 1] (B, C, H, W), C = 1 (repeated to 3) or 3, resized bilinearly to 299x299
(align_corners=False, as pytorch-fid; its map [0, 1] -> [-1, 1] commutes with the resize, whose weights sum to
one), then the trunk to Mixed_7c (B, 2048, 8, 8) and the spatial mean: f = mean_{h,w} Mixed_7c(x) in R^2048.
`fc` is kept only so that the file loads strictly; it is never applied.

Nothing is ever downloaded: `load_inception` reads a local copy and checks, as torch.hub does, that the file's
sha256 starts with the 8 hex digits in its standard name. `$REPRO_INCEPTION` (or `make figures INCEPTION=...`)
names that copy for the notebooks (`lib.study`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lib.core import integrity
from lib.core.errors import ReproError

STANDARD_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
STANDARD_SHA256_PREFIX = "6726825d"
FEATURE_DIM = 2048
INPUT_SIDE = 299
N_LOGITS = 1008  # the TF graph's 1001 ImageNet classes padded to 1008


class InceptionWeightsError(ReproError, ValueError):
    """Inception weights that are missing, not the standard file, or not this network's state dict (one line)."""


class _ConvBN(nn.Module):
    """relu(BN(conv(x))): a conv without bias, BatchNorm with eps 0.001 (TensorFlow's), then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    """layers[-1](... layers[0](x))."""
    for layer in layers:
        x = layer(x)
    return x


def _same_avg_pool() -> nn.AvgPool2d:
    """3x3, stride 1, padding 1, averaging over the pixels inside the image only (TensorFlow's SAME pool)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35x35 block: 1x1 (64) | 1x1 -> 5x5 (64) | 1x1 -> 3x3 -> 3x3 (96) | avg pool -> 1x1 (pool_features)."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 64, 1)
        self.branch5x5_1 = _ConvBN(c_in, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.pool = _same_avg_pool()
        self.branch_pool = _ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), _chain(x, self.branch5x5_1, self.branch5x5_2),
                          _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          _chain(x, self.pool, self.branch_pool)], dim=1)


class _BlockB(nn.Module):
    """35 -> 17 reduction: 3x3/2 (384) | 1x1 -> 3x3 -> 3x3/2 (96) | max pool 3x3/2 (the input's channels)."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x),
                          _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class _BlockC(nn.Module):
    """17x17 block with factorised 7x7s (c7 inner channels): 1x1 | 1x7, 7x1 | 7x1, 1x7, 7x1, 1x7 | avg pool
    -> 1x1; 192 channels each."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        row, col = {"kernel": (1, 7), "padding": (0, 3)}, {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = _ConvBN(c_in, 192, 1)
        self.branch7x7_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, **row)
        self.branch7x7_3 = _ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row)
        self.pool = _same_avg_pool()
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                        self.branch7x7dbl_5)
        return torch.cat([self.branch1x1(x), _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                          double, _chain(x, self.pool, self.branch_pool)], dim=1)


class _BlockD(nn.Module):
    """17 -> 8 reduction: 1x1 -> 3x3/2 (320) | 1x1 -> 1x7 -> 7x1 -> 3x3/2 (192) | max pool 3x3/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(c_in, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = _chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4)
        return torch.cat([_chain(x, self.branch3x3_1, self.branch3x3_2), seven,
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class _BlockE(nn.Module):
    """8x8 block, 2048 channels out: 1x1 (320) | 1x1 -> [1x3, 3x1] (2 x 384) | 1x1 -> 3x3 -> [1x3, 3x1]
    (2 x 384) | pool -> 1x1 (192); the pool is `pool` (SAME average in Mixed_7b, max in Mixed_7c)."""

    def __init__(self, c_in: int, pool: nn.Module) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, 320, 1)
        self.branch3x3_1 = _ConvBN(c_in, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.pool = pool
        self.branch_pool = _ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
                          _chain(x, self.pool, self.branch_pool)], dim=1)


class InceptionFeatures(nn.Module):
    """FID Inception-v3 up to the final average pool: images in [-1, 1] -> (B, 2048) float32 "pool3" features.

    `key` names the weights for cache keys: `inception-<first 8 hex digits of the file's sha256>` once loaded
    by `load_inception`; a freshly built network (random weights) is `inception-untrained`."""

    def __init__(self, key: str = "inception-untrained") -> None:
        super().__init__()
        self.key = key
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, c7=128)
        self.Mixed_6c = _BlockC(768, c7=160)
        self.Mixed_6d = _BlockC(768, c7=160)
        self.Mixed_6e = _BlockC(768, c7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, pool=_same_avg_pool())
        self.Mixed_7c = _BlockE(2048, pool=nn.MaxPool2d(3, stride=1, padding=1))
        self.fc = nn.Linear(FEATURE_DIM, N_LOGITS)  # loaded, never applied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pool3 features of `x` (B, C, H, W) in [-1, 1], C in {1, 3}; differentiable."""
        x = network_input(x.to(self.fc.weight.device))
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                   self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2)
        x = _chain(x, self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                   self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c)
        return x.mean(dim=(2, 3))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` without gradients: (B, 2048) float32."""
        return self(x)


def network_input(x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1], C in {1, 3}, as the network takes them: float32, three channels (a single
    one repeated), resized to 299x299 by bilinear interpolation with align_corners=False (pytorch-fid's)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Inception features need images (B, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    x = x.to(torch.float32).expand(-1, 3, -1, -1)
    return F.interpolate(x, size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear", align_corners=False)


def load_inception(path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> InceptionFeatures:
    """The FID Inception network with the weights at `path` (a local `pt_inception-2015-12-05-6726825d.pth`), in
    eval mode on `device`. `verify`: refuse a file whose sha256 does not start with `STANDARD_SHA256_PREFIX`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InceptionWeightsError(
            f"Inception weights not found at {path}: nothing is downloaded; point to a local copy of "
            f"{STANDARD_FILE_NAME} (the weights pytorch-fid uses), e.g. with make figures INCEPTION=<path>")
    digest = integrity.file_digest(path)
    if verify and not digest.startswith(STANDARD_SHA256_PREFIX):
        raise InceptionWeightsError(
            f"{path}: sha256 starts with {digest[:8]}, not {STANDARD_SHA256_PREFIX} ({STANDARD_FILE_NAME}, the "
            "standard FID weights); verify=False accepts other weights, at your own risk of non-standard FIDs")
    model = InceptionFeatures(key=f"inception-{digest[:8]}")
    model.load_state_dict(_matching_state_dict(_read_state_dict(path), model, path), strict=True)
    return model.to(device).eval()


def _read_state_dict(path: Path) -> Mapping[str, object]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, a pickled module, a truncated file...
        raise InceptionWeightsError(f"{path}: not a readable torch state dict ({type(exc).__name__}); expected "
                                    f"{STANDARD_FILE_NAME}") from None
    if not isinstance(state, Mapping):
        raise InceptionWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _matching_state_dict(state: Mapping[str, object], model: nn.Module, path: Path) -> dict[str, object]:
    """`state`, checked against `model`'s names and shapes, with BatchNorm's `num_batches_tracked` counters
    (absent from files saved before torch 0.4.1, unused in eval mode) added as 0 where missing."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    optional = {name for name in expected if name.endswith(".num_batches_tracked")}
    missing = [name for name in expected if name not in state and name not in optional]
    unexpected = [name for name in state if name not in expected]
    misshapen = [name for name in state if name in expected
                 and (not isinstance(state[name], torch.Tensor) or tuple(state[name].shape) != expected[name])]
    problems = [f"{len(found)} {what} (first: {found[0]})" for found, what in
                ((missing, "missing keys"), (unexpected, "unexpected keys"), (misshapen, "keys with wrong shapes"))
                if found]
    if problems:
        raise InceptionWeightsError(f"{path}: not the FID Inception state dict: {', '.join(problems)}")
    counters = {name: torch.zeros((), dtype=torch.long) for name in optional if name not in state}
    return {**state, **counters}
