"""The models' public doors (issue 30, deliverables 3 and 7): what they refuse, in one line, and what they never do.

- a model folder loads only what is on disk: configs must be JSON objects, no socket is opened, the weights are
  checked against a given sha256 (or a `<weights>.sha256` sidecar), NaN in the weights or the first output is an
  error naming the file;
- the adapters check their arguments (a torch module with forward(x, sigma), a shape of positive ints, at least
  two training levels);
- no silent NaN: a jump from a sigma_T below the dtype's range, empty input to the EV and loss tables.

Every refusal is a `ModelError` (a `ValueError` and a `ReproError`) or the plain one-line ValueError of the
analysis functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct

import pytest
import torch
from torch import nn

from lib.analysis import linearity, metrics
from lib.core.errors import ReproError
from lib.diffusion import training
from lib.models import adapters, discrete_vp
from lib.models.errors import ModelError, ModelFileError
from lib.models.gaussian import GaussianDenoiser
from lib.models.isotropic import IsotropicGaussianDenoiser

SHAPE = (2, 4, 4)
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    """The message, checked to be a ModelError (ValueError and ReproError) of one line."""
    assert isinstance(exc.value, ModelError) and isinstance(exc.value, ValueError | ReproError)
    assert isinstance(exc.value, ReproError) and "\n" not in str(exc.value)
    return str(exc.value)


# --------------------------------------------------------------------------- silent NaN closed (deliverable 7)


def _gaussian_with_zero_variance(dtype: torch.dtype = torch.float32) -> GaussianDenoiser:
    """A full-rank Gaussian on 2x4x4 whose last 8 directions have zero variance (as MNIST's constant border)."""
    gen = torch.Generator().manual_seed(0)
    eigvecs, _ = torch.linalg.qr(torch.randn(32, 32, generator=gen, dtype=torch.float64))
    eigvals = torch.cat([torch.logspace(1, -3, 24, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)])
    return GaussianDenoiser(torch.zeros(32, dtype=torch.float64), eigvals, eigvecs, SHAPE, dtype=dtype)


def test_a_jump_from_a_sigma_t_below_the_dtypes_range_is_refused_not_nan():
    model, x = _gaussian_with_zero_variance(), torch.randn(3, *SHAPE)
    for sigma_t in (1e-30, 1e-20):
        with pytest.raises(ModelError) as exc:
            model.jump(x, sigma_t, 1.0)
        assert "sigma_T" in _one_line(exc) and "float64" in str(exc.value)
    with pytest.raises(ModelError, match="sigma_T"):
        model.jump_operator(1e-30, 1.0)
    with pytest.raises(ModelError, match="sigma_T"):
        model.trajectory(x, 1e-30, [1.0, 0.0])
    with pytest.raises(ModelError, match="sigma_T must be finite and > 0"):
        model.jump(x, 0.0, 1.0)


def test_the_same_jump_in_float64_is_computed_and_an_ordinary_one_is_unchanged():
    x = torch.randn(3, *SHAPE, dtype=torch.float64)
    assert bool(torch.isfinite(_gaussian_with_zero_variance(torch.float64).jump(x, 1e-30, 1.0)).all())
    model = _gaussian_with_zero_variance()
    out = model.jump(x.float(), 80.0, 0.0)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, model.jump(x.float(), 80.0, 0.0, operator=model.jump_operator(80.0, 0.0)))


def test_the_isotropic_jump_refuses_the_same_sigma_t():
    model = IsotropicGaussianDenoiser(torch.zeros(32), 0.0, SHAPE)
    with pytest.raises(ModelError, match="sigma_T"):
        model.jump(torch.randn(2, *SHAPE), 1e-200, 1.0)


@pytest.mark.parametrize("abar", [torch.tensor([0.9]), torch.tensor(0.9), torch.tensor([1.0, 0.5]),
                                  torch.tensor([0.9, 0.0]), torch.tensor([0.9, float("nan")])])
def test_a_discrete_schedule_needs_two_levels_strictly_inside_zero_one(abar):
    with pytest.raises(ModelError) as exc:
        discrete_vp.DiscreteVPDenoiser(lambda x, t: x, abar, "epsilon", SHAPE)
    assert "alphas_cumprod" in _one_line(exc)


def test_empty_input_to_the_tables_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="no values"):
        metrics.mean_and_std(torch.empty(0))
    empty = torch.empty(0, *SHAPE)
    with pytest.raises(ValueError, match="at least one probe"):
        linearity.ev_row(empty, empty, empty, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        linearity.ev_row(torch.ones(1, *SHAPE), torch.ones(1, *SHAPE), torch.zeros(1, *SHAPE), 0.0)
    with pytest.raises(ValueError, match="at least one image"):
        training.loss_per_sigma(nn.Identity(), empty, [0.5, 1.0])
    assert metrics.mean_and_std(torch.tensor([1.0, 3.0])) == (2.0, 1.0)


# --------------------------------------------------------------------------- the adapters check their arguments


class _TwoArguments(nn.Module):
    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)


class _OneArgument(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("module, shape, says", [
    (None, SHAPE, "torch.nn.Module"),
    (lambda x, s: x, SHAPE, "torch.nn.Module"),
    (_OneArgument(), SHAPE, "forward(x, sigma)"),
    (_TwoArguments(), 16, "tuple of positive ints"),
    (_TwoArguments(), (2, 0, 4), "tuple of positive ints"),
    (_TwoArguments(), (2.0, 4, 4), "tuple of positive ints"),
])
def test_the_module_adapter_refuses_what_it_cannot_use(module, shape, says):
    with pytest.raises(ModelError) as exc:
        adapters.ModuleDenoiser(module, shape)
    assert says in _one_line(exc)


def test_the_module_adapter_takes_a_two_argument_module_and_a_list_shape():
    model = adapters.ModuleDenoiser(_TwoArguments(), [2, 4, 4])
    assert model.shape == SHAPE
    torch.testing.assert_close(model(torch.ones(2, *SHAPE), 1.0), torch.full((2, *SHAPE), 0.5))


def test_a_discrete_denoiser_checks_its_network_and_shape():
    abar = torch.tensor([0.9, 0.5, 0.1])
    with pytest.raises(ModelError, match="callable"):
        discrete_vp.DiscreteVPDenoiser(None, abar, "epsilon", SHAPE)
    with pytest.raises(ModelError, match="tuple of positive ints"):
        discrete_vp.DiscreteVPDenoiser(lambda x, t: x, abar, "epsilon", 4)


def test_a_first_output_with_nan_is_an_error_naming_the_source():
    abar = torch.tensor([0.9, 0.5, 0.1])
    model = discrete_vp.DiscreteVPDenoiser(lambda x, t: x * float("nan"), abar, "epsilon", SHAPE,
                                           source="weights.safetensors")
    with pytest.raises(ModelError) as exc:
        model(torch.ones(1, *SHAPE), 1.0)
    assert "weights.safetensors" in _one_line(exc) and "NaN" in str(exc.value)


# --------------------------------------------------------------------------- model folders: local files only


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connect raises (and is recorded): a load that reaches for the network fails and is seen."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"test: no network (connect to {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return attempts


@pytest.fixture
def unet_folder(tmp_path):
    """A tiny saved diffusers UNet2DModel and DDPM scheduler (model layout) in tmp_path."""
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)
    unet.save_pretrained(tmp_path)
    DDPMScheduler(num_train_timesteps=100).save_pretrained(tmp_path)
    return tmp_path


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_bit(path, tensor: str, bit: int = 30) -> None:
    """Flip one bit of the first float32 of `tensor` in a safetensors file (bit 30: the exponent's top bit)."""
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    start = 8 + size + json.loads(raw[8:8 + size])[tensor]["data_offsets"][0]
    (bits,) = struct.unpack("<I", raw[start:start + 4])
    raw[start:start + 4] = struct.pack("<I", bits ^ (1 << bit))
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("content", ['"google/ddpm-cifar10-32"', '["google/ddpm-cifar10-32"]'])
def test_a_config_that_names_a_model_is_refused_without_opening_a_socket(unet_folder, no_network, content):
    (unet_folder / "scheduler_config.json").write_text(content)
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert "scheduler_config.json" in _one_line(exc) and "not an object" in str(exc.value)
    assert no_network == []


def test_a_good_folder_loads_without_opening_a_socket(unet_folder, no_network):
    model = discrete_vp.load_diffusers_vp(unet_folder)
    out = model(torch.randn(2, 3, 8, 8), float(model.sigmas[40]))
    assert bool(torch.isfinite(out).all()) and no_network == []
    assert model.source.endswith(WEIGHTS)


@pytest.mark.parametrize("name", ["scheduler_config.json", "config.json"])
def test_a_config_that_is_not_json_is_refused_naming_the_file(unet_folder, name):
    (unet_folder / name).write_text("{not json")
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert name in _one_line(exc) and "JSON" in str(exc.value)


@pytest.mark.parametrize(("setting", "says"), [({"beta_schedule": "cubic"}, "cubic"),
                                               ({"prediction_type": "x0"}, "'x0'")])
def test_an_unknown_schedule_setting_is_refused_naming_the_file(unet_folder, setting, says):
    path = unet_folder / "scheduler_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | setting))
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert "scheduler_config.json" in _one_line(exc) and says in str(exc.value)


def test_a_one_level_schedule_in_a_folder_is_refused(unet_folder):
    path = unet_folder / "scheduler_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"num_train_timesteps": 1}))
    with pytest.raises(ModelError, match="at least two training levels"):
        discrete_vp.load_diffusers_vp(unet_folder)


def test_missing_weights_are_a_one_line_file_error(unet_folder):
    (unet_folder / WEIGHTS).unlink()
    with pytest.raises(ModelFileError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert isinstance(exc.value, FileNotFoundError) and "no weights" in _one_line(exc)


def test_a_bit_flipped_weight_is_an_error_naming_the_file(unet_folder):
    _flip_bit(unet_folder / WEIGHTS, "conv_in.weight")
    model = discrete_vp.load_diffusers_vp(unet_folder)  # no digest to check against: the first output tells
    with pytest.raises(ModelError) as exc:
        model(torch.randn(2, 3, 8, 8), float(model.sigmas[40]))
    assert WEIGHTS in _one_line(exc)


def test_a_nan_weight_is_refused_at_load_naming_the_file(unet_folder):
    raw = (unet_folder / WEIGHTS).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    start = 8 + size + json.loads(raw[8:8 + size])["conv_out.bias"]["data_offsets"][0]
    (unet_folder / WEIGHTS).write_bytes(raw[:start] + struct.pack("<f", math.nan) + raw[start + 4:])
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert WEIGHTS in _one_line(exc) and "conv_out.bias" in str(exc.value)


def test_the_weights_are_checked_against_a_given_sha256(unet_folder):
    digest = _sha256(unet_folder / WEIGHTS)
    assert discrete_vp.load_diffusers_vp(f"{unet_folder}#sha256={digest}").shape == (3, 8, 8)
    assert discrete_vp.load_diffusers_vp(unet_folder, sha256=digest.upper()).shape == (3, 8, 8)
    _flip_bit(unet_folder / WEIGHTS, "conv_out.weight")  # a finite change: only the digest can see it
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(f"{unet_folder}#sha256={digest}")
    assert WEIGHTS in _one_line(exc) and "sha256" in str(exc.value)
    with pytest.raises(ModelError, match="not a sha256"):
        discrete_vp.load_diffusers_vp(f"{unet_folder}#sha256=abc")


def test_the_weights_are_checked_against_a_sidecar(unet_folder):
    weights = unet_folder / WEIGHTS
    (unet_folder / f"{WEIGHTS}.sha256").write_text(f"{_sha256(weights)}  {WEIGHTS}\n")
    assert discrete_vp.load_diffusers_vp(unet_folder).shape == (3, 8, 8)
    _flip_bit(weights, "conv_out.weight")
    with pytest.raises(ModelError) as exc:
        discrete_vp.load_diffusers_vp(unet_folder)
    assert WEIGHTS in _one_line(exc) and ".sha256" in str(exc.value)


def test_the_study_passes_a_model_spec_with_its_sha256_to_the_loader(unet_folder):
    """`MODEL=folder#sha256=...` on the command line reaches the check (the study tells a folder by its path part)."""
    from lib import study

    digest = _sha256(unet_folder / WEIGHTS)
    assert study.load_model(f"{unet_folder}#sha256={digest}").shape == (3, 8, 8)
    with pytest.raises(ModelError, match="sha256"):
        study.load_model(f"{unet_folder}#sha256={'0' * 64}")


def test_a_study_refuses_a_bad_model_spec_before_loading_anything(tmp_path, monkeypatch):
    """`--model` that is neither ours nor a folder is refused when the study is made, before a classifier is trained
    or data is fetched (the sweep used to train a feature classifier first)."""
    from lib import study
    from lib.core.config import SCALES

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="use ours, ours:<scale>"):
        study.Study(SCALES["smoke"], model_spec=str(tmp_path / "missing"))
    assert not any(tmp_path.iterdir())
    assert study.check_model_spec("ours:smoke") == "ours"
