"""Training: schedule, hashing, the loss falls, resume is bit-identical, clear checkpoint errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lib import train
from lib.core import cli
from lib.core.config import UnknownScaleError, get_scale
from lib.diffusion import checkpoints, train_config, training, training_data

# A network small enough that a dozen steps take about a second.
TINY = train_config.TrainConfig(
    name="tiny", channels=8, channel_mult=(1, 2), dropout=0.1, data_size=512, batch_size=32,
    total_steps=8, lr=2e-3, warmup_steps=4, checkpoint_every=4, checkpoint_early=(0, 2),
)


@pytest.fixture(scope="module")
def mnist_subset():
    from lib.data.mnist import load_mnist

    return load_mnist("train")[:512].clone()


@pytest.fixture(autouse=True)
def _small_data(monkeypatch, mnist_subset):
    """Train on a fixed MNIST subset without loading the full set every time."""
    monkeypatch.setattr(training, "load_training_data",
                        lambda config, device, dataset=None: mnist_subset[: config.data_size].to(device))


# --------------------------------------------------------------------------- configurations


def test_checkpoint_schedule_is_dense_early_and_sparse_late():
    default = train_config.checkpoint_schedule(train_config.TRAIN_CONFIGS["default"])
    assert default[:9] == [0, 50, 100, 200, 300, 500, 750, 1000, 1500]
    assert default[-1] == train_config.TRAIN_CONFIGS["default"].total_steps
    gaps = [b - a for a, b in zip(default, default[1:], strict=False)]
    assert gaps == sorted(gaps), "gaps between checkpoints never shrink"
    paper = train_config.checkpoint_schedule(train_config.TRAIN_CONFIGS["paper"])
    assert set(range(0, 25_001, 500)) <= set(paper) and paper[-1] == 25_000
    odd = dataclasses.replace(TINY, total_steps=11)
    assert train_config.checkpoint_schedule(odd) == [0, 2, 4, 8, 11], "the last step is always saved"


def test_paper_configuration_follows_the_authors():
    cfg = train_config.train_config("paper")
    assert (cfg.channels, cfg.channel_mult, cfg.num_blocks, cfg.attn_resolutions) == (16, (1, 2, 3, 4), 1, ())
    assert (cfg.dropout, cfg.lr, cfg.warmup_steps, cfg.batch_size, cfg.total_steps) == (0.13, 2e-4, 5000, 128,
                                                                                        25_000)
    assert (cfg.ema_halflife_kimg, cfg.ema_rampup, cfg.checkpoint_every) == (500.0, 0.05, 500)


def test_unknown_scale_lists_the_valid_ones():
    with pytest.raises(UnknownScaleError, match="smoke, default, paper"):
        train_config.train_config("huge")


def test_hash_covers_every_field():
    assert TINY.hash == dataclasses.replace(TINY).hash and len(TINY.hash) == 12
    assert TINY.tag == f"tiny-{TINY.hash}"
    changes = {"data_size": 256, "seed": 1, "dropout": 0.0, "lr": 1e-3, "channel_mult": (1,),
               "bf16_autocast": True, "ema_rampup": None}
    hashes = {dataclasses.replace(TINY, **{k: v}).hash for k, v in changes.items()}
    assert len(hashes) == len(changes) and TINY.hash not in hashes


def test_learning_rate_warm_up_and_ema_ramp_up():
    assert train_config.learning_rate(TINY, 0) == pytest.approx(TINY.lr / 4)
    assert train_config.learning_rate(TINY, 3) == train_config.learning_rate(TINY, 100) == TINY.lr
    assert train_config.ema_beta(TINY, 0) == 0.0, "the EMA starts as a copy of the network"
    betas = [train_config.ema_beta(TINY, s) for s in (1, 10, 100, 10**6)]
    assert betas == sorted(betas) and 0 < betas[0] < 1
    # beyond the ramp-up the half-life is ema_halflife_kimg: beta^(halflife / batch) = 1/2
    assert betas[-1] ** (TINY.ema_halflife_kimg * 1000 / TINY.batch_size) == pytest.approx(0.5)


# --------------------------------------------------------------------------- training


def test_loss_falls_on_a_tiny_run(tmp_path):
    cfg = dataclasses.replace(TINY, total_steps=40, checkpoint_every=40, dropout=0.0)
    training.ensure_checkpoints(cfg, root=tmp_path, device="cpu", progress=False)
    test_x = training_data.load_training_data(cfg, "cpu")[:64]
    sigmas = [0.1, 0.5, 2.0]
    before = training.loss_per_sigma(checkpoints.load_checkpoint(cfg, 0, ema=False, root=tmp_path), test_x, sigmas)
    after = training.loss_per_sigma(checkpoints.load_checkpoint(cfg, 40, ema=False, root=tmp_path), test_x, sigmas)
    assert (after["weighted"] < before["weighted"]).all(), (before, after)
    assert after["weighted"].mean() < 0.6 * before["weighted"].mean(), (before, after)
    history = checkpoints.load_history(cfg, root=tmp_path)
    assert len(history.losses) == 40 and history.skipped == 0
    assert history.losses[-10:].mean() < history.losses[:10].mean()


def _final_state(cfg, root):
    return torch.load(checkpoints.checkpoint_path(cfg, cfg.total_steps, root), weights_only=True)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    """N steps straight vs N/2, stop, resume, N/2: identical weights, EMA, optimizer and loss history."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    training.train(TINY, root=straight, device="cpu", progress=False)
    assert training.train(TINY, root=resumed, device="cpu", stop_at=4, progress=False) == [0, 2, 4]
    assert checkpoints.available_steps(TINY, resumed) == [0, 2, 4]
    assert training.train(TINY, root=resumed, device="cpu", progress=False) == [8]
    a, b = _final_state(TINY, straight), _final_state(TINY, resumed)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resuming"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert torch.equal(a["losses"], b["losses"]) and torch.equal(a["noise_generator"], b["noise_generator"])


def test_a_longer_run_starts_from_the_shorter_one_and_gives_it_its_checkpoints(tmp_path):
    """The first steps of a longer run are the shorter run's (only total_steps differs): training either one
    takes the other's checkpoints instead of training them again, and ends bit-identical to training it alone."""
    longer = dataclasses.replace(TINY, total_steps=12)
    alone = tmp_path / "alone"
    training.train(longer, root=alone, device="cpu", progress=False)
    shared = tmp_path / "shared"
    training.train(TINY, root=shared, device="cpu", progress=False)
    assert training.train(longer, root=shared, device="cpu", progress=False) == [12], "steps 0-8 are adopted"
    a, b = _final_state(longer, alone), _final_state(longer, shared)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["losses"], b["losses"])
    checkpoints.verify_checkpoints(longer, shared)
    back = tmp_path / "back"
    training.train(longer, root=back, device="cpu", progress=False)
    assert training.train(TINY, root=back, device="cpu", progress=False) == [], "the shorter run trains nothing"
    checkpoints.verify_checkpoints(TINY, back)
    c, d = _final_state(TINY, back), _final_state(TINY, shared)
    assert all(torch.equal(c["model"][k], d["model"][k]) for k in c["model"]) and c["meta"]["adopted_from"]
    other = dataclasses.replace(TINY, lr=1e-3)
    assert not checkpoints.same_run(TINY, other)
    with pytest.raises(ValueError, match="differ in more than total_steps"):
        checkpoints.adopt_checkpoints(TINY, other, back)


def test_a_deleted_checkpoint_is_rewritten_from_the_one_before(tmp_path):
    training.train(TINY, root=tmp_path, device="cpu", progress=False)
    reference = _final_state(TINY, tmp_path)["model"]
    checkpoints.checkpoint_path(TINY, 4, tmp_path).unlink()
    (checkpoints.run_dir(TINY, tmp_path) / ".step_0000004.pt.abc.tmp").write_bytes(b"half-written by a killed run")
    assert training.train(TINY, root=tmp_path, device="cpu", progress=False) == [4]
    assert checkpoints.available_steps(TINY, tmp_path) == [0, 2, 4, 8]
    assert not list(checkpoints.run_dir(TINY, tmp_path).glob(".*.tmp")), "stale temporaries are cleaned"
    final = _final_state(TINY, tmp_path)["model"]
    assert all(torch.equal(reference[k], final[k]) for k in reference)


def test_ensure_checkpoints_trains_only_when_something_is_missing(tmp_path, monkeypatch):
    listed = training.ensure_checkpoints(TINY, root=tmp_path, device="cpu", progress=False)
    assert [s for s, _ in listed] == [0, 2, 4, 8] and all(p.exists() for _, p in listed)

    def refuse(*args, **kwargs):
        raise AssertionError("must not train again")

    monkeypatch.setattr(training, "train", refuse)
    assert training.ensure_checkpoints(TINY, root=tmp_path, progress=False) == listed
    model = checkpoints.load_checkpoint(TINY, root=tmp_path)
    assert not model.training and all(p.dtype == torch.float32 and not p.requires_grad
                                      for p in model.parameters())
    x = torch.randn(2, 1, 32, 32)
    assert model(x, 1.0).shape == x.shape


def test_non_finite_loss_skips_the_step(tmp_path):
    state = training.new_training_state(TINY, torch.device("cpu"))
    before = {k: v.clone() for k, v in state.net.state_dict().items()}
    batch = torch.zeros(4, 1, 32, 32)
    batch[0, 0, 0, 0] = float("nan")
    training.train_step(state, batch)
    assert state.skipped == 1 and state.step == 1
    assert all(torch.equal(before[k], v) for k, v in state.net.state_dict().items())
    training.train_step(state, torch.zeros(4, 1, 32, 32))
    assert state.skipped == 1 and not all(torch.equal(before[k], v) for k, v in state.net.state_dict().items())


# --------------------------------------------------------------------------- errors


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_checkpoint_names_the_available_steps_and_the_command(tmp_path):
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(train_config.TRAIN_CONFIGS["default"], 700, root=tmp_path)
    message = _one_line(err)
    assert "no checkpoint at step 700" in message and "available steps are none" in message
    assert "python -m lib.train --scale default" in message
    training.train(TINY, root=tmp_path, device="cpu", stop_at=2, progress=False)
    with pytest.raises(checkpoints.CheckpointError, match=r"available steps are 0, 2; call"):
        checkpoints.load_checkpoint(TINY, 8, root=tmp_path)


def test_corrupt_checkpoint_says_to_delete_it(tmp_path):
    training.train(TINY, root=tmp_path, device="cpu", stop_at=2, progress=False)
    path = checkpoints.checkpoint_path(TINY, 2, tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(TINY, 2, root=tmp_path)
    assert "is unreadable" in _one_line(err) and "delete it" in str(err.value)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    training.train(TINY, root=tmp_path, device="cpu", stop_at=2, progress=False)
    other = dataclasses.replace(TINY, seed=1)
    checkpoints.run_dir(other, tmp_path)
    checkpoints.checkpoint_path(TINY, 2, tmp_path).rename(checkpoints.checkpoint_path(other, 2, tmp_path))
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(other, 2, root=tmp_path)
    assert "does not match" in _one_line(err) and "seed" in str(err.value)


def test_command_line_rejects_an_unknown_scale(capsys):
    assert cli.run(train.main, ["--scale", "huge"]) == 2
    assert "unknown scale 'huge'" in capsys.readouterr().err


def test_every_command_line_takes_its_scale_from_REPRO_SCALE_when_none_is_given(monkeypatch, capsys):
    from lib import notebooks, prepare
    from lib.verdicts import scorecard

    monkeypatch.setenv("REPRO_SCALE", "smoke")
    assert train.main(["--list"]) == 0
    assert f"[train] {train_config.train_config('smoke').tag} " in capsys.readouterr().out
    monkeypatch.setenv("REPRO_SCALE", "huge")
    for module in (train, notebooks, prepare, scorecard):  # the same reading of the scale everywhere
        assert cli.run(module.main, []) == 2
        assert "unknown scale 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize("scale", list(train_config.TRAIN_CONFIGS))
def test_each_scale_compares_an_early_checkpoint_before_the_final_one(scale):
    """Notebook 05 sets an early checkpoint against the final one: it must exist and come first."""
    config = train_config.train_config(scale)
    assert get_scale(scale).early_step in train_config.checkpoint_schedule(config)
    assert get_scale(scale).early_step < config.total_steps


# --------------------------------------------------------------------------- bad settings (issue 14, item 7)


def _one_line_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--threads", "-1"], "--threads must be a positive integer"),
    (["--threads", "abc"], "--threads must be a positive integer"),
    (["--bench", "-5"], "--bench must be a positive integer"),
    (["--device", "cuda"], "CUDA is not available here"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_command_line_settings_are_one_line_errors(argv, expected, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.run(train.main, ["--scale", "smoke", "--list", *argv]) == 2
    assert expected in _one_line_error(capsys)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_bad_repro_threads_is_a_one_line_error(value, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_THREADS", value)
    assert cli.run(train.main, ["--scale", "smoke", "--list"]) == 2
    assert "REPRO_THREADS must be a positive integer" in _one_line_error(capsys)


def test_measure_speed_refuses_a_non_positive_step_count():
    with pytest.raises(ValueError, match="positive integer"):
        train.measure_speed(TINY, steps=-5, device="cpu")


def test_a_read_only_data_folder_names_the_path_that_must_be_writable(read_only_data_dir, capsys):
    assert cli.run(train.main, ["--scale", "smoke", "--threads", "1"]) == 1
    line = _one_line_error(capsys)
    assert "Permission denied" in line and "writable" in line and str(read_only_data_dir.parent) in line
