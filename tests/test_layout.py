"""The library's layout shows its architecture: each folder is a layer that imports only from the layers below it
(or its own), and no module grows past about 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
#: Bottom to top. A module at the top level of `lib/` (the study, the notebook runner, the commands, plotting) is
#: the application layer, above every folder.
LAYERS = ("core", "data", "models", "diffusion", "analysis", "verdicts", "experiments")
APPLICATION = len(LAYERS)
#: Folders of the application layer itself (not layers): the figures, one module per notebook.
APPLICATION_PACKAGES = ("plotting",)
MAX_LINES = 300


def layer_of(module: str) -> int:
    """The layer of a dotted module name under `lib` (e.g. `lib.models.gaussian` -> 2, `lib.study` -> top)."""
    parts = module.split(".")
    if parts[0] != "lib" or len(parts) < 2:
        raise ValueError(f"not a module of lib: {module}")
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else APPLICATION


def lib_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of `lib` in a file, those inside functions included; `from lib import x`
    counts as an import of `lib.x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lib":
            if node.module == "lib":
                found += [(node.lineno, f"lib.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "lib"]
    return found


def module_name(path: Path) -> str:
    relative = path.relative_to(LIB.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


MODULES = sorted(LIB.rglob("*.py"))


def upward_imports(path: Path, module: str | None = None) -> list[str]:
    """Each import of `path` (the module `module`, by default the one at that place in lib) that runs up a layer."""
    module = module or module_name(path)
    own = layer_of(module) if module != "lib" else APPLICATION
    where = path.relative_to(LIB.parent) if path.is_relative_to(LIB.parent) else path
    return [f"{where}:{line} imports {target} ({LAYERS[own] if own < APPLICATION else 'top'} "
            f"-> {LAYERS[layer_of(target)] if layer_of(target) < APPLICATION else 'top'})"
            for line, target in lib_imports(path) if layer_of(target) > own]


def test_every_folder_of_lib_is_a_known_layer():
    folders = {p.name for p in LIB.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == set(LAYERS) | set(APPLICATION_PACKAGES)


def test_no_import_runs_up_a_layer():
    offences = [line for path in MODULES for line in upward_imports(path)]
    assert not offences, "\n".join(offences)


def test_the_rule_sees_an_upward_import(tmp_path):
    """The check above can fail: a core module importing the verdicts is caught, also inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from lib.verdicts import common\n")
    assert upward_imports(probe, "lib.core.probe") == [f"{probe}:2 imports lib.verdicts (core -> verdicts)"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(LIB)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(LIB.parent)} has {lines} lines: split it by idea"
