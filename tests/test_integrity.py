"""Saved files are verified on every load: corrupt caches are recomputed, corrupt checkpoints reported in one
line; files older than digests are accepted once and get one; a resume with another thread count is recorded."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from lib import train
from lib.core import cli, integrity, paths
from lib.data import mnist, statistics
from lib.diffusion import checkpoints, train_config, training
from lib.models import gmm

TINY = train_config.TrainConfig(
    name="tiny", channels=8, channel_mult=(1, 2), dropout=0.1, data_size=512, batch_size=32,
    total_steps=8, lr=2e-3, warmup_steps=4, checkpoint_every=4, checkpoint_early=(0, 2),
)
IMAGES = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty data folder; "MNIST" is 300 random 4x4 images (statistics) or a fixed subset (training)."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mnist, "load_mnist", lambda split="train", size=32: IMAGES.clone())
    images = torch.rand(512, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    monkeypatch.setattr(training, "load_training_data",
                        lambda config, device, dataset=None: images[: config.data_size].to(device))
    return tmp_path


def _stats_cache() -> Path:
    return paths.cache_dir("stats") / f"mnist_train_32_{statistics._stats_key(IMAGES, 'train', 32)}.pt"


def _flip_tensor_byte(path: Path, member: str | None = None) -> None:
    """Flip one byte in the middle of the largest tensor (or `member`) of a torch zip file: a silent change."""
    blob = bytearray(path.read_bytes())
    infos = zipfile.ZipFile(path).infolist()
    info = next(i for i in infos if i.filename.endswith(member)) if member else max(infos, key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    blob[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(blob))


def _assert_same_stats(got: statistics.DatasetStats, want: statistics.DatasetStats) -> None:
    for name in integrity.STATS_KEYS[:4]:
        assert torch.equal(getattr(got, name), getattr(want, name)), f"{name} differs"


def test_a_flipped_byte_in_the_statistics_cache_is_reported_and_recomputed(isolated, capsys):
    reference = statistics.compute_stats(IMAGES)
    statistics.dataset_stats("train", 32)
    _flip_tensor_byte(_stats_cache())
    capsys.readouterr()
    _assert_same_stats(statistics.dataset_stats("train", 32), reference)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "rejected" in err and "sha256" in err and "recomputing" in err
    _assert_same_stats(statistics.dataset_stats("train", 32), reference)  # repaired: silent from now on
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage, message", [
    (lambda f: f | {"eigvals": 2 * f["eigvals"]}, "eigenvalues sum to"),
    (lambda f: f | {"mean": f["mean"][:10]}, "mean has shape (10,)"),
])
def test_a_valid_cache_with_wrong_contents_is_rejected_and_recomputed(isolated, capsys, damage, message):
    reference = statistics.compute_stats(IMAGES)
    fields = {k: getattr(reference, k) for k in integrity.STATS_KEYS}
    integrity.save(damage(fields), _stats_cache())  # a genuine digest: only the content check can catch it
    _assert_same_stats(statistics.dataset_stats("train", 32), reference)
    err = capsys.readouterr().err
    assert message in err and "recomputing" in err


def test_a_legacy_cache_without_digest_is_accepted_once_and_gets_one(isolated, monkeypatch):
    reference = statistics.compute_stats(IMAGES)
    cache = _stats_cache()
    torch.save({k: getattr(reference, k) for k in integrity.STATS_KEYS}, cache)  # as written before digests
    before = cache.read_bytes()
    monkeypatch.setattr(statistics, "compute_stats", lambda *a, **k: pytest.fail("a valid legacy cache was recomputed"))
    _assert_same_stats(statistics.dataset_stats("train", 32), reference)
    assert cache.read_bytes() == before, "the cache itself is never rewritten"
    assert integrity.recorded_digest(cache) == hashlib.sha256(before).hexdigest()
    _assert_same_stats(statistics.dataset_stats("train", 32), reference)


def test_a_legacy_file_with_a_flipped_byte_fails_its_zip_crc(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"x": torch.arange(1000.0)}, path)
    _flip_tensor_byte(path)
    with pytest.raises(integrity.IntegrityError, match="CRC mismatch"):
        integrity.load(path)
    assert integrity.recorded_digest(path) is None


def test_a_mixture_fit_with_inconsistent_K_is_refitted(isolated, capsys):
    x = torch.randn(60, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    first = gmm.fit_mixture(x, 1, data_key="abc", progress=False)
    (cache,) = paths.cache_dir("gmm").glob("abc_K1_*.pt")
    integrity.save({"means": first.means, "counts": first.counts, "eigvals": [],
                    "eigvecs": first.eigvecs, "shape": first.shape}, cache)
    again = gmm.fit_mixture(x, 1, data_key="abc", progress=False)
    assert "inconsistent K" in capsys.readouterr().err and len(again.eigvals) == 1
    torch.testing.assert_close(again.eigvals[0], first.eigvals[0], rtol=0, atol=0)


# --------------------------------------------------------------------------- checkpoints


def test_a_flipped_byte_in_a_checkpoint_is_a_one_line_error_naming_the_file(isolated):
    training.train(TINY, device="cpu", stop_at=2, progress=False)
    path = checkpoints.checkpoint_path(TINY, 2)
    _flip_tensor_byte(path, "data/0")
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(TINY, 2)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "sha256" in message and "delete it" in message


@pytest.fixture
def same_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_lib_train_does_not_report_success_with_an_unreadable_middle_checkpoint(isolated, monkeypatch, capsys,
                                                                               same_threads):
    monkeypatch.setattr(train, "train_config", lambda scale=None: TINY)
    argv = ["--device", "cpu", "--threads", str(torch.get_num_threads())]
    assert train.main(argv) == 0
    middle = checkpoints.checkpoint_path(TINY, 4)
    middle.write_bytes(middle.read_bytes()[:5000])
    capsys.readouterr()
    assert cli.run(train.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(middle) in err and "delete it" in err
    middle.unlink()
    assert train.main(argv) == 0, "deleting it retrains it from the checkpoint before"
    assert "warning" not in capsys.readouterr().err, "a resume with the same thread count is silent"
    assert checkpoints.load_history(TINY, 4).meta["thread_changes"] == []


def test_resuming_with_another_thread_count_warns_and_is_recorded(isolated, monkeypatch, capsys):
    ran_with = torch.get_num_threads()
    training.train(TINY, device="cpu", stop_at=4, progress=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: ran_with + 1)  # recorded, without using more cores
    capsys.readouterr()
    training.train(TINY, device="cpu", progress=False)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not bit-identical" in err and f"with {ran_with + 1} threads" in err
    meta = checkpoints.load_history(TINY).meta
    assert meta["thread_changes"] == [{"step": 4, "from": ran_with, "to": ran_with + 1}]


def test_load_verifies_the_sidecar_written_by_save(tmp_path):
    path = tmp_path / "x.pt"
    integrity.save({"x": torch.arange(5)}, path)
    assert integrity.sidecar(path).read_text().endswith(f"  {path.name}\n")
    assert torch.equal(integrity.load(path)["x"], torch.arange(5))
    integrity.sidecar(path).write_text("not a digest\n")
    with pytest.raises(integrity.IntegrityError, match="holds no sha256"):
        integrity.load(path)
