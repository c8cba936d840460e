"""Modules split by idea leave no debris: no section header with nothing under it, no private name reached into from
another module, and no test of which dataset or model a study has outside the dataset and model classes."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
MODULES = sorted(LIB.rglob("*.py"))
#: A section header: `# ----...---- title`.
HEADER = re.compile(r"^# -{20,}")


def empty_sections(text: str) -> list[int]:
    """Line numbers (1-based) of section headers followed only by comments and blank lines up to the next header or
    the end of the file."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if not HEADER.match(line):
            continue
        rest = lines[i + 1:]
        nxt = next((j for j, other in enumerate(rest) if HEADER.match(other)), len(rest))
        if all(not other.strip() or other.lstrip().startswith("#") for other in rest[:nxt]):
            found.append(i + 1)
    return found


def private_reaches(path: Path) -> list[str]:
    """`from lib.x import _name` and `module._name` where `module` was imported from lib, in one file."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    tree = ast.parse(path.read_text())
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lib":
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{where}:{node.lineno} imports {node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name.split(".")[-1] for alias in node.names
                        if alias.name.split(".")[0] == "lib"}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{where}:{node.lineno} reaches {node.value.id}.{node.attr}")
    return found


def test_no_empty_section_headers():
    offences = [f"{p.relative_to(ROOT)}:{n}" for p in MODULES for n in empty_sections(p.read_text())]
    assert not offences, "section headers with nothing under them:\n" + "\n".join(offences)


def test_the_header_check_can_fail():
    rule = "# " + "-" * 30
    assert empty_sections(f"x = 1\n{rule} a\n\n{rule} b\ny = 2\n{rule} c\n") == [2, 6]


def test_no_private_name_is_reached_across_modules():
    offences = [line for path in MODULES for line in private_reaches(path)]
    assert not offences, "\n".join(offences)


def test_the_private_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from lib.core import paths\nfrom lib.data.mnist import _check_request\npaths._root()\n")
    assert private_reaches(probe) == ["probe.py:2 imports lib.data.mnist._check_request",
                                      "probe.py:3 reaches paths._root"]


def test_only_the_dataset_and_model_classes_know_which_they_are():
    """The study asks its dataset and model (`lib.study_data`, `lib.study_model`) for what they can do; nothing in lib
    or the notebooks tests which dataset or model it has by name."""
    switch = re.compile(r"\bis_mnist\b|\bis_ours\b")
    places = [p for p in MODULES if p.name not in ("study_data.py", "study_model.py")]
    offences = [f"{p.relative_to(ROOT)}" for p in places if switch.search(p.read_text())]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        offences += [f"{notebook.name} cell {i}" for i, cell in enumerate(cells)
                     if switch.search("".join(cell["source"]))]
    assert not offences, "type switches outside the dataset and model classes: " + ", ".join(offences)
