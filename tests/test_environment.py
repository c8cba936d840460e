"""requirements.txt is the source of truth; environment.yml must mirror it exactly."""

from __future__ import annotations

import re

import yaml

from lib.core.paths import REPO_ROOT


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
            assert match, f"requirements.txt: {line!r} is not an exact pin (name==version)"
            pins[match[1].lower()] = match[2]
    return pins


def _environment_pip() -> dict[str, str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_sections = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    return {name.lower(): version for name, version in (item.split("==") for item in pip_sections[0])}


def test_requirements_are_exact_pins_with_torch_2_13():
    pins = _requirements()
    assert pins["torch"] == "2.13.0"
    for needed in ("jupyterlab", "papermill", "nbval", "ipykernel", "matplotlib", "seaborn", "numpy",
                   "scipy", "scikit-learn", "tqdm", "pytest"):
        assert needed in pins, f"{needed} missing from requirements.txt"
    assert "torchvision" not in pins, "torchvision fails to import beside torch 2.13 here"


def test_environment_yml_mirrors_requirements():
    assert _environment_pip() == _requirements()


def test_environment_yml_uses_conda_forge_python_311():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert "python=3.11" in env["dependencies"]
