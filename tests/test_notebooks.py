"""The notebooks follow the conventions nbval and papermill rely on; the runner names the first failure."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from lib import notebooks
from lib.core import paths

NOTEBOOKS = notebooks.list_notebooks()
FIGURE_LIMIT_BYTES = 500_000


def test_there_are_notebooks_to_run():
    assert NOTEBOOKS, "no notebooks/NN_topic.ipynb found: nbval would collect nothing"
    assert NOTEBOOKS[0].name.startswith("00_")


def _code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_parameters_cell_reading_the_scale(path):
    first = _code_cells(path)[0]
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
    assert 'scale = os.environ.get("REPRO_SCALE", "default")' in first.source
    assert "runtime.setup(scale" in _code_cells(path)[1].source, "second cell: seeds, threads, device, folders"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_executed_at_the_default_scale_without_errors(path):
    cells = _code_cells(path)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells), \
        "an injected parameters cell would override $REPRO_SCALE under nbval"
    assert all(c.execution_count is not None for c in cells), f"{path.name} is not fully executed"
    outputs = [o for c in cells for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    setup_text = "".join(o.get("text", "") for o in cells[1].outputs)
    assert "scale=default" in setup_text, f"{path.name} was not executed at the default scale"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_checked_cell(path):
    assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in _code_cells(path)), \
        f"{path.name} has no cell checked by nbval"


#: A notebook cell tells one step of the story: longer code (a figure, a computation) belongs in lib.
MAX_CELL_LINES = 30


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_code_cell_is_longer_than_a_step_of_the_story(path):
    long = {i: len(c.source.splitlines()) for i, c in enumerate(_code_cells(path))
            if len(c.source.splitlines()) > MAX_CELL_LINES}
    assert not long, f"{path.name}: code cells over {MAX_CELL_LINES} lines (index among code cells: lines): {long}"


def test_committed_figures_are_small_pngs():
    figures = list((paths.REPO_ROOT / "figures").glob("*"))
    assert figures, "figures/ is empty: run `make figures`"
    for fig in figures:
        assert fig.suffix in {".png", ".pdf"}, fig.name
        assert fig.stat().st_size <= FIGURE_LIMIT_BYTES, f"{fig.name} is over 500 KB"


def _write_notebook(path, source):
    nb = new_notebook(cells=[new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runner_stops_at_the_first_failing_notebook_and_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write_notebook(folder / "00_fine.ipynb", "import os\nprint(os.environ['REPRO_SCALE'])")
    _write_notebook(folder / "01_broken.ipynb", "raise ValueError('deliberate failure')")
    _write_notebook(folder / "02_never.ipynb", "print('must not run')")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", folder)

    assert notebooks.main(["--scale", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: notebooks/01_broken.ipynb" in err and "deliberate failure" in err
    out_dir = tmp_path / "data" / "scales" / "smoke" / "notebooks"
    executed = json.loads((out_dir / "00_fine.ipynb").read_text())
    assert "smoke" in "".join(executed["cells"][0]["outputs"][0]["text"])
    assert not (out_dir / "02_never.ipynb").exists()
    assert not (folder / "00_fine.ipynb").read_text().count("smoke"), "non-default scales never write in place"


def test_a_failing_notebook_leaves_the_committed_executed_copy_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    committed = folder / "00_breaks_now.ipynb"
    nb = new_notebook(cells=[new_code_cell("print(1)"), new_code_cell("raise ValueError('broken since')")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="committed output\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, committed)
    before = committed.read_bytes()
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", folder)
    monkeypatch.setattr(notebooks.paths, "notebook_output_dir", lambda scale: folder)

    monkeypatch.setenv("REPRO_SCALE", "smoke")  # as under make test: the runner must not change it
    assert notebooks.main(["--scale", "default"]) == 1
    assert os.environ["REPRO_SCALE"] == "smoke", "the scale of the calling process is restored"
    assert "broken since" in capsys.readouterr().err
    assert committed.read_bytes() == before, "the executed copy with its outputs must survive a failing run"
    assert [p.name for p in folder.iterdir()] == [committed.name], "no temporary file is left behind"
    failed = (tmp_path / "data" / "failed" / "default" / committed.name).read_text()
    assert '"ename": "ValueError"' in failed, "what ran is kept, with its error, for the reader"


def test_runner_rejects_an_unknown_scale_in_one_line(capsys):
    assert notebooks.main(["--scale", "huge"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown scale 'huge': choose one of smoke, default, paper"


def test_progress_bar_refreshes_collapse_to_their_final_state(tmp_path):
    """papermill saves every tqdm refresh of a training loop as an output; the runner keeps one line each."""
    refreshes = [nbformat.v4.new_output("stream", name="stderr", text=f"\rtrain: {i}/4000 loss 0.1")
                 for i in range(4001)]
    note = nbformat.v4.new_output("stream", name="stdout", text="[train] checkpoint at step 4000\n")
    cell = new_code_cell("train()", outputs=[*refreshes[:2000], note, *refreshes[2000:]])
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[cell]), path)
    before = path.stat().st_size
    notebooks.collapse_progress_output(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.text for o in outputs] == ["train: 1999/4000 loss 0.1", "[train] checkpoint at step 4000\n",
                                         "train: 4000/4000 loss 0.1"]
    assert path.stat().st_size < before / 100
