from __future__ import annotations

import pytest

from lib.core import config, paths


def test_known_scales_resolve():
    for name in ("smoke", "default", "paper"):
        assert config.get_scale(name).name == name


def test_unknown_scale_lists_the_valid_ones():
    with pytest.raises(config.UnknownScaleError, match="smoke, default, paper"):
        config.get_scale("huge")


def test_scale_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(config.SCALE_ENV_VAR, "smoke")
    assert config.get_scale().name == "smoke"
    monkeypatch.delenv(config.SCALE_ENV_VAR)
    assert config.get_scale().name == "default"


def test_probe_sigmas_are_the_authors_sixteen_levels():
    assert len(config.PROBE_SIGMAS) == 16
    assert config.PROBE_SIGMAS[0] == 0.01 and config.PROBE_SIGMAS[-1] == 80.0
    assert list(config.PROBE_SIGMAS) == sorted(config.PROBE_SIGMAS)


def test_only_the_default_scale_writes_committed_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    assert paths.figures_dir("default") == paths.REPO_ROOT / "figures"
    assert paths.results_dir("default") == paths.REPO_ROOT / "data" / "results"
    assert paths.notebook_output_dir("default") == paths.REPO_ROOT / "notebooks"
    for scale in ("smoke", "paper"):
        for folder in (paths.figures_dir(scale), paths.results_dir(scale), paths.notebook_output_dir(scale)):
            assert folder.is_relative_to(tmp_path / "scales" / scale)
