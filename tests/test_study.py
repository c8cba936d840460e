"""Studies (lib.study): a dataset and a model behind the notebooks, with MNIST and our network unchanged, and
notebook 03 run end to end on a tiny RGB dataset with a `diffusers` model (lib.notebooks)."""

from __future__ import annotations

import dataclasses
import json

import nbformat
import pytest
import torch

from lib import notebooks, runtime
from lib.core import config, paths
from lib.data import mnist, statistics
from lib.diffusion import train_config
from lib.diffusion.checkpoints import CheckpointError
from lib.study import Study, output_name


def test_mnist_with_our_network_is_what_the_notebooks_used_before(monkeypatch):
    monkeypatch.delenv("REPRO_DATASET", raising=False)
    monkeypatch.delenv("REPRO_MODEL", raising=False)
    ctx = runtime.setup("smoke", verbose=False)
    assert ctx.outputs == "smoke" and ctx.results == paths.results_dir("smoke")
    study = ctx.study
    assert study.model.has_history and study.data.items == "digits" and study.data.has_labels
    assert study.shape == (1, 32, 32) and study.label == "MNIST" and study.with_history() is study
    assert ctx.scale is study.scale and ctx.device == study.device  # one holder of scale and device
    assert study.data.originals().shape == (1, 28, 28) and study.data.originals().originals() is None
    assert torch.equal(study.images("test"), mnist.load_mnist("test", 32))
    assert study.stats("train").key == statistics.dataset_stats("train", 32).key
    assert study.paper_final == ("mnist_1m_final", "final MNIST network")
    assert study.data.paper_tables == {"final": "mnist_1m_final", "dynamics": "mnist_25k_dynamics"}
    with pytest.raises(ValueError, match="split must be one of"):
        study.images("validation")


@pytest.mark.parametrize(("dataset", "model", "expected"), [
    ("mnist", "ours", "default"), ("cifar10", "ours", "cifar10-default"),
    ("/data/ffhq64.npz", "/models/ddpm-ffhq/", "ffhq64-ddpm_ffhq-default"),
    ("mnist", "/m/my unet", "mnist-my_unet-default"),
])
def test_other_studies_write_under_their_own_folder(dataset, model, expected, tmp_path, monkeypatch):
    """Only MNIST with our network writes the committed folders; in a name, "-" separates dataset, model, scale."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    assert output_name("default", dataset, model) == expected
    assert expected == "default" or paths.results_dir(expected) == tmp_path / "scales" / expected / "results"


def test_a_study_of_a_dataset_file_with_a_diffusers_model(tiny_rgb_study, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    dataset, model = tiny_rgb_study
    study = Study(config.get_scale("smoke"), str(dataset), None, str(model))
    assert study.shape == (3, 16, 16) and study.name == "tiny_rgb" and study.paper_final is None
    assert study.data.paper_tables == {} and study.data.originals() is None and study.data.items == "images"
    assert not study.model.has_history and study.with_history().model.has_history
    assert study.images("train").shape == (48, 3, 16, 16) and study.images("test").shape == (40, 3, 16, 16)
    stats = study.stats("train")
    assert stats.dim == 768 and study.stats("train").key == stats.key  # the second from the cache
    assert len(list((tmp_path / "cache" / "stats").glob("tiny_rgb_*.pt"))) == 1
    network = study.network()
    x = study.images("test")[:4]
    out = network(x + 0.5 * torch.randn_like(x), 0.5)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert torch.isfinite(network(x, 0.002)).all()  # below the lowest DDPM level: evaluated at t = 0
    assert "parameters" in study.describe_network(network) and study.final_step == -1
    assert study.checkpoint_steps() == []
    assert study.model_tag().startswith("tiny_unet-") and study.model_tag() == study.model_tag()
    with pytest.raises(ValueError, match="no training checkpoints"):
        study.network(step=10)


def test_our_network_on_another_dataset_is_trained_on_it(tiny_rgb_study, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    short = dataclasses.replace(train_config.train_config("smoke"), total_steps=4, warmup_steps=2, checkpoint_every=2,
                                checkpoint_early=(0,))
    monkeypatch.setattr(train_config, "train_config", lambda scale=None: short)  # the smoke preset, 4 steps
    ours = Study(config.get_scale("smoke"), str(tiny_rgb_study[0]))
    cfg = ours.train_config()
    assert cfg.dataset == "tiny_rgb" and cfg.in_channels == 3 and cfg.name == "smoke-tiny_rgb"
    with pytest.raises(CheckpointError, match=r"not trained .*python -m lib.train --scale smoke --dataset tiny_rgb"):
        ours.network()  # never trained behind the caller's back
    assert ours.train() == [0, 2, 4]  # trained when asked, on the 48 images
    assert ours.checkpoint_steps() == [0, 2, 4]
    assert ours.network_title() == "Final checkpoint (smoke-tiny_rgb run, step 4)"
    x = ours.images("test")[:2]
    assert ours.network(step=2)(x, 1.0).shape == x.shape and ours.final_step == 4
    assert ours.model_tag() == cfg.tag and ours.classifier_key().endswith(ours.dataset.digest)


def test_a_model_for_other_images_is_refused(tiny_rgb_study):
    _, model = tiny_rgb_study
    with pytest.raises(ValueError, match=r"takes images \(3, 16, 16\) but MNIST has \(1, 32, 32\)"):
        Study(config.get_scale("smoke"), "mnist", None, str(model)).network()


def test_the_runner_resolves_paths_and_runs_only_the_notebooks_that_read_the_study(tmp_path, monkeypatch, capsys):
    assert notebooks.resolve_spec("cifar10", ("mnist", "cifar10")) == "cifar10"
    with pytest.raises(notebooks.NotebookError, match="does not exist"):
        notebooks.resolve_spec(str(tmp_path / "missing.npz"), ("mnist",))
    ran, trained = [], []
    monkeypatch.setattr(notebooks, "run_notebook", lambda nb, *args: ran.append((nb.name, args)) or nb)
    monkeypatch.setattr(notebooks, "train_first",
                        lambda s: trained.append((s.model_spec, ran[-1][0][:2] if ran else None)))
    (tmp_path / "d.npz").write_bytes(b"")
    assert notebooks.main(["--scale", "smoke", "--dataset", str(tmp_path / "d.npz")]) == 0
    assert [name[:2] for name, _ in ran] == list(notebooks.STUDY_NOTEBOOKS)
    assert ran[0][1] == ("smoke", str(tmp_path / "d.npz"), None, "ours", None)
    assert "not 01_" in capsys.readouterr().out
    assert trained == [("ours", "00")]  # our network on that dataset, once, after 00 and before 03
    ran.clear(), trained.clear()
    (tmp_path / "unet").mkdir()
    assert notebooks.main(["--scale", "smoke", "--model", str(tmp_path / "unet")]) == 0
    assert [name[:2] for name, _ in ran] == list(notebooks.STUDY_NOTEBOOKS)  # 04 and 05 too, without checkpoints
    assert ran[0][1] == ("smoke", "mnist", None, str(tmp_path / "unet"), None)
    assert "02_train_diffusion_model" in capsys.readouterr().out  # named among the skipped
    assert trained == [("ours", "03")]  # a folder's model: our run is trained only for 04's training dynamics
    ran.clear(), trained.clear()
    (tmp_path / "weights.pth").write_bytes(b"")
    assert notebooks.main(["--scale", "smoke", "--inception", str(tmp_path / "weights.pth")]) == 0
    weights = str(tmp_path / "weights.pth")
    assert ran == [(notebooks.list_notebooks("07")[0].name, ("smoke", "mnist", None, "ours", weights))]
    assert "do not measure sample quality" in capsys.readouterr().out
    assert trained == [("ours", None)]  # before 07, the first notebook run
    assert output_name("smoke", inception="w.pth") == "mnist-inception-smoke"


def test_notebook_03_runs_on_a_tiny_rgb_dataset_with_a_diffusers_model(tiny_rgb_study, tmp_path, monkeypatch):
    """The whole of notebook 03 at the smoke scale on another dataset and model: it writes its table and verdict
    under the study's own folder and never touches MNIST's."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    dataset, model = tiny_rgb_study
    notebook = notebooks.list_notebooks("03")[0]
    output = notebooks.run_notebook(notebook, "smoke", str(dataset), None, str(model))
    assert output == tmp_path / "scales" / "tiny_rgb-tiny_unet-smoke" / "notebooks" / notebook.name
    results = tmp_path / "scales" / "tiny_rgb-tiny_unet-smoke" / "results"
    assert (results / "score_linearity.csv").exists() and (results / "verdicts.csv").exists()
    text = "\n".join(out.get("text", "") for cell in nbformat.read(output, as_version=4).cells
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert "verdict: C2" in text and "the authors published no table for tiny_rgb" in text
    assert "dataset=" in text and json.loads(json.dumps(str(output)))


@pytest.mark.parametrize("kind", ["diffusers folder", "torch module"])
def test_every_model_kind_runs_through_the_code_of_notebooks_03_and_07(kind, tiny_rgb_study, tmp_path, monkeypatch):
    """A diffusers folder and any forward(x, sigma) -> D module (here one computing the data's Gaussian denoiser)
    are scored against the analytic models (notebook 03) and sampled with and without a jump (notebook 07)."""
    from torch import nn

    from lib.analysis import linearity, teleportation
    from lib.models.adapters import ModuleDenoiser
    from lib.models.gaussian import GaussianDenoiser

    class GaussianModule(nn.Module):
        def __init__(self, gauss: GaussianDenoiser) -> None:
            super().__init__()
            self.gauss = gauss

        def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.gauss(x, sigma)

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    dataset, folder = tiny_rgb_study
    study = Study(config.get_scale("smoke"), str(dataset), None, str(folder))
    gauss = GaussianDenoiser.from_stats(study.stats("train"))
    network = study.network() if kind == "diffusers folder" else ModuleDenoiser(GaussianModule(gauss), study.shape)
    bank = linearity.ProbeBank(study.images("test")[:8], (0.5, 5.0), "test", seed=0)
    bank.add_models({"gaussian": gauss}, progress=False)
    table = bank.score_network(network, step=study.final_step)
    assert len(table) == 2 and bool(table["St_EV"].notna().all()) and (table["step"] == -1).all()
    if kind == "torch module":  # the module is the Gaussian: it explains all of its own score
        assert table["St_EV"].to_numpy() == pytest.approx(1.0, abs=1e-5)
    for skip in (0, 2):
        run = teleportation.run_configuration(network, gauss, ("heun", 6, skip, 0, "gaussian"), n_samples=4,
                                              shape=study.shape, batch_size=4)
        assert run.samples.shape == (4, 3, 16, 16) and bool(torch.isfinite(run.samples).all())
