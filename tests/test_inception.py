"""The FID Inception network: torchvision/pytorch-fid names and shapes, a strict round trip through a file,
one-channel input, the FID pooling variants, and one-line refusals of missing, non-standard or mismatched weights.
No test has the real weights (nothing is downloaded): they use a network with random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.analysis import inception
from lib.analysis.inception import InceptionFeatures, InceptionWeightsError, load_inception
from lib.core import integrity

# Learnable parameters of the FID Inception (no AuxLogits, fc with 1008 outputs), derived from torchvision:
# Inception_V3_Weights.IMAGENET1K_V1 lists num_params = 27,161,264 (with AuxLogits, fc 2048 -> 1000).
# AuxLogits = conv0 768*128 + BN 2*128 + conv1 128*768*5*5 + BN 2*768 + fc 768*1000 + 1000 = 3,326,696,
# so 27,161,264 - 3,326,696 = 23,834,568; fc 1000 -> 1008 adds 8 * 2048 + 8 = 16,392: 23,850,960.
N_PARAMETERS = 23_850_960
# 94 conv + BN units (stem 5, A 3 x 7, B 4, C 4 x 10, D 6, E 2 x 9), each conv.weight + 5 BN entries
# (weight, bias, running_mean, running_var, num_batches_tracked), plus fc.weight and fc.bias.
N_STATE_ENTRIES = 94 * 6 + 2


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-normal convs and non-trivial BN statistics: activations stay O(1) (the default init shrinks them to
    denormals, slow and meaningless), and a round trip that dropped the BN buffers would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> InceptionFeatures:
    return _randomise(InceptionFeatures())


@pytest.fixture(scope="module")
def weights_file(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "random-weights.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def gray() -> torch.Tensor:
    return torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope="module")
def last_block() -> dict[str, torch.Tensor]:
    """Mixed_7c's output (B, 2048, 8, 8) in the computation of `gray_features`."""
    return {}


@pytest.fixture(scope="module")
def gray_features(model, gray, last_block) -> torch.Tensor:
    hook = model.Mixed_7c.register_forward_hook(lambda module, args, out: last_block.update(out=out))
    try:
        return model.features(gray)
    finally:
        hook.remove()


def test_state_dict_has_the_torchvision_names_and_shapes(model):
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_1a_3x3.bn.running_var"] == (32,)
    assert shapes["Conv2d_4a_3x3.conv.weight"] == (192, 80, 3, 3)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6b.branch7x7dbl_2.conv.weight"] == (128, 128, 7, 1)
    assert shapes["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
    assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048) and shapes["fc.bias"] == (1008,)
    assert not any(name.startswith("AuxLogits") or name.endswith("conv.bias") for name in shapes)
    assert len(shapes) == N_STATE_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == N_PARAMETERS
    assert all(m.eps == 0.001 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_features_shape_dtype_and_one_channel(model, gray, gray_features):
    colour = model.features(gray.repeat(1, 3, 1, 1))
    assert gray_features.shape == colour.shape == (2, inception.FEATURE_DIM)
    assert gray_features.dtype == colour.dtype == torch.float32
    assert gray_features.std() > 0.01 and not torch.allclose(gray_features[0], gray_features[1])
    torch.testing.assert_close(gray_features, colour, rtol=1e-6, atol=0.0)


def test_features_are_the_mean_of_the_last_block(gray_features, last_block):
    assert last_block["out"].shape == (2, 2048, 8, 8)
    torch.testing.assert_close(gray_features, last_block["out"].mean(dim=(2, 3)))


def test_weights_round_trip_strictly(model, weights_file, gray, gray_features):
    loaded = load_inception(weights_file, verify=False)
    assert not loaded.training and loaded.key == f"inception-{integrity.file_digest(weights_file)[:8]}"
    torch.testing.assert_close(loaded.features(gray), gray_features, rtol=1e-6, atol=0.0)


def test_network_input_is_pytorch_fid_resize(model):
    """Three channels at 299x299, bilinear with align_corners=False; [-1, 1] is kept (no [0, 1] -> [-1, 1] map)."""
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    resized = inception.network_input(x)
    assert resized.shape == (2, 3, 299, 299) and resized.dtype == torch.float32
    expected = F.interpolate(x.double(), size=(299, 299), mode="bilinear", align_corners=False).float()
    torch.testing.assert_close(resized, expected.expand(-1, 3, -1, -1))
    corners = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=True)
    assert (resized[:, :1] - corners).abs().max() > 1e-2
    torch.testing.assert_close(inception.network_input(-torch.ones(1, 3, 8, 8)), -torch.ones(1, 3, 299, 299))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        model.features(torch.zeros(1, 2, 8, 8))


def _avg_same(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


@pytest.mark.parametrize(("block", "channels", "pooled"), [
    ("Mixed_5b", 192, _avg_same), ("Mixed_6b", 768, _avg_same), ("Mixed_7b", 1280, _avg_same),
    ("Mixed_7c", 2048, _max_same),
])
def test_pool_branches_use_the_fid_pooling(model, block, channels, pooled):
    """The pool branch (the last channels of the block's output) is branch_pool(pool(x)) with TensorFlow's
    pooling: averages over the pixels inside the image (not /9 at the borders), a max in Mixed_7c."""
    module = getattr(model, block)
    x = torch.rand(1, channels, 5, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, expected = module(x), module.branch_pool(pooled(x))
        counting_pad = module.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
    branch = out[:, -expected.shape[1]:]
    torch.testing.assert_close(branch, expected)
    assert (branch - counting_pad).abs().max() > 1e-3  # the test tells the two poolings apart


def test_missing_file_is_refused_without_download(tmp_path):
    with pytest.raises(InceptionWeightsError, match="nothing is downloaded.*pt_inception-2015-12-05-6726825d"):
        load_inception(tmp_path / "absent.pth")


def test_non_standard_file_needs_verify_false(weights_file):
    found = integrity.file_digest(weights_file)[:8]
    assert not found.startswith(inception.STANDARD_SHA256_PREFIX)
    with pytest.raises(InceptionWeightsError, match=f"starts with {found}.*verify=False"):
        load_inception(weights_file)
    assert isinstance(load_inception(weights_file, verify=False), InceptionFeatures)


def test_mismatched_state_dict_names_the_key(model, tmp_path):
    state = dict(model.state_dict())
    state["Mixed_6c.branch7x7_2.conv.kernel"] = state.pop("Mixed_6c.branch7x7_2.conv.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(InceptionWeightsError, match=r"1 missing keys \(first: Mixed_6c\.branch7x7_2\.conv\.weight\)"
                       r".*1 unexpected keys \(first: Mixed_6c\.branch7x7_2\.conv\.kernel\)"):
        load_inception(tmp_path / "renamed.pth", verify=False)
    del state["Mixed_6c.branch7x7_2.conv.kernel"]
    state["fc.weight"] = state["fc.weight"][:1000]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(InceptionWeightsError, match=r"1 missing keys.*1 keys with wrong shapes \(first: fc\.weight"):
        load_inception(tmp_path / "short.pth", verify=False)


def test_files_without_batchnorm_counters_load(model, tmp_path):
    """Files saved before torch 0.4.1 have no `num_batches_tracked`; they still load strictly."""
    state = model.state_dict()  # keeps its version metadata: torch itself fills no counter in
    for name in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[name]
    torch.save(state, tmp_path / "old.pth")
    loaded = load_inception(tmp_path / "old.pth", verify=False)
    assert all(m.num_batches_tracked == 0 for m in loaded.modules() if isinstance(m, nn.BatchNorm2d))


def test_a_study_measures_sample_quality_in_inception_features(monkeypatch, weights_file):
    """With the weights named, the study's feature network is the Inception network (verified), its key names the
    caches and the outputs go to their own folder; without, the suite's classifier as before."""
    from lib.core.config import get_scale
    from lib.study import Study

    with pytest.raises(InceptionWeightsError, match="verify=False"):  # a study's weights are verified
        Study(get_scale("smoke"), inception=str(weights_file)).classifier()
    monkeypatch.setattr(inception, "STANDARD_SHA256_PREFIX", integrity.file_digest(weights_file)[:8])
    study = Study(get_scale("smoke"), inception=str(weights_file))
    network = study.classifier()
    assert isinstance(network, InceptionFeatures) and not network.training and study.classifier() is network
    assert study.classifier_key() == network.key == f"inception-{integrity.file_digest(weights_file)[:8]}"
    assert "Inception" in study.features_label and study.outputs == "mnist-inception-smoke"
    from lib.analysis.features import extract_features  # what notebook 07 scores samples with

    assert extract_features(network, torch.rand(2, 1, 32, 32) * 2 - 1).shape == (2, 2048)
    assert Study(get_scale("smoke")).features_label == "classifier features"


def test_mixed_blocks_concatenate_in_torchvision_order(model):
    """Channels of Mixed_6a (B) and Mixed_7b (E) in torchvision's order, the E splits as [1x3, 3x1]."""
    x = torch.rand(1, 288, 7, 7, generator=torch.Generator().manual_seed(3))
    b = model.Mixed_6a
    y = torch.rand(1, 1280, 3, 3, generator=torch.Generator().manual_seed(4))
    e = model.Mixed_7b
    with torch.no_grad():
        dbl = e.branch3x3dbl_2(e.branch3x3dbl_1(y))
        expected = {
            "B": [b.branch3x3(x), b.branch3x3dbl_3(b.branch3x3dbl_2(b.branch3x3dbl_1(x))), F.max_pool2d(x, 3, 2)],
            "E": [e.branch1x1(y), e.branch3x3_2a(e.branch3x3_1(y)), e.branch3x3_2b(e.branch3x3_1(y)),
                  e.branch3x3dbl_3a(dbl), e.branch3x3dbl_3b(dbl), e.branch_pool(_avg_same(y))],
        }
        torch.testing.assert_close(b(x), torch.cat(expected["B"], dim=1))
        torch.testing.assert_close(e(y), torch.cat(expected["E"], dim=1))
