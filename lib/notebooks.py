"""Run the notebooks in order through papermill: `python -m lib.notebooks --scale default`.

At the default scale each notebook is executed in place (the committed, executed copies); at any other
scale the executed copy goes to `data/scales/<scale>/notebooks/`. Another dataset or model (`--dataset`,
`--data-dir`, `--model`; `lib.study`) writes under `data/scales/<dataset>[-<model>]-<scale>/` instead, and runs
only the notebooks that read them (`STUDY_NOTEBOOKS`). A notebook runs into a temporary file that replaces the
executed copy only when every cell succeeded: a failing run leaves the previous copy (with its outputs)
untouched and keeps what ran, with the error, in `data/failed/<scale>/`. The scale reaches the notebooks
through `$REPRO_SCALE` (the study through `$REPRO_DATASET`, `$REPRO_DATASET_DIR` and `$REPRO_MODEL`), read by
their `parameters` cell and `lib.runtime.setup`, so no parameter cell is injected and the committed notebooks
stay runnable by nbval at the smoke scale. The first failing notebook stops the run and is named. The runner holds a
lock on the temporary copy while the notebook runs, so that the next run removes only the partial copies of runs that
were killed (`remove_stale_partials`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lib import study
from lib.core import cli, paths
from lib.core.config import SCALE_ENV_VAR, SCALES, get_scale, scale_from_command_line, scale_name_from_environment
from lib.core.errors import ReproError

NOTEBOOK_DIR = paths.REPO_ROOT / "notebooks"
#: The notebooks that read their dataset and model from the study (`ctx.study`); with another dataset or model
#: only these run (the others study MNIST and our own training run only).
STUDY_NOTEBOOKS = ("00", "03", "04", "05", "06", "07")
#: The notebooks that read our trained network: before the first of them the runner trains what is missing of it
#: (`network_to_train`), so that a notebook never trains behind the reader's back (02 trains it in view, in order).
NETWORK_NOTEBOOKS = ("03", "04", "05", "06", "07")
#: Of those, the ones that follow our network's training run even when the study's model is a folder's (C3).
HISTORY_NOTEBOOKS = ("04",)
#: The notebooks that measure sample quality: with `--inception`, only these run (in Inception features).
QUALITY_NOTEBOOKS = ("07",)
#: The temporary copy a run writes next to the executed one (`paths.atomic_path(output, suffix=".ipynb")`).
PARTIAL_PATTERN = ".[0-9][0-9]_*.ipynb.*.ipynb"
#: A partial copy younger than this is left alone (a run that just created it, before it could lock it).
STALE_AFTER_S = 60.0


class NotebookError(ReproError, ValueError):
    """A bad notebook selection or dataset/model path on the command line, in one line."""


def resolve_spec(spec: str | None, names: tuple[str, ...]) -> str | None:
    """A dataset or model spec for the kernel, which runs in `notebooks/`: a name in `names` as it is, a path made
    absolute (it must exist)."""
    if spec is None or spec in names:
        return spec
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise NotebookError(f"{spec} does not exist (from {Path.cwd()}): pass an existing file or folder")
    return str(path)


def list_notebooks(only: str | None = None) -> list[Path]:
    """The ordered notebooks `NN_topic.ipynb`; `only` keeps those whose name starts with it."""
    notebooks = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(only)]
        if not notebooks:
            raise NotebookError(f"no notebook starts with {only!r} in {NOTEBOOK_DIR}")
    return notebooks


def run_notebook(notebook: Path, scale: str, dataset: str = study.DEFAULT_DATASET, data_dir: str | None = None,
                 model: str = study.DEFAULT_MODEL, inception: str | None = None) -> Path:
    """Execute one notebook at `scale` (on `dataset` with `model`, sample quality in Inception features when
    `inception` names its weights) with papermill; return where the copy went."""
    import papermill as pm

    name = study.output_name(scale, dataset, model, inception)
    output = paths.notebook_output_dir(name) / notebook.name
    settings = {SCALE_ENV_VAR: scale, study.DATASET_ENV_VAR: dataset, study.DATASET_DIR_ENV_VAR: data_dir,
                study.MODEL_ENV_VAR: model, study.INCEPTION_ENV_VAR: inception}
    # A failing run leaves the previous executed copy as it was.
    with _in_environment(settings), paths.atomic_path(output, suffix=".ipynb") as executing, _held(executing):
        partial = paths.data_dir() / "failed" / name / notebook.name
        try:
            pm.execute_notebook(
                str(notebook), str(executing), cwd=str(notebook.parent), kernel_name="python3",
                progress_bar=False, log_output=False, request_save_on_cell_execute=True,
            )
        except BaseException:
            if executing.exists():
                partial.parent.mkdir(parents=True, exist_ok=True)
                executing.replace(partial)  # what ran, with the error, for the reader to inspect
            raise
        partial.unlink(missing_ok=True)
        collapse_progress_output(executing)
        _record_paths(executing, notebook, output)
    return output


def network_to_train(notebook: Path, the_study: study.Study) -> study.Study | None:
    """The study whose network `notebook` reads and the runner trains first (`Study.train`), or None: our network
    for the notebooks of `NETWORK_NOTEBOOKS` when the study's model is ours, and for those of `HISTORY_NOTEBOOKS`
    whatever the model (their training run is ours)."""
    number = notebook.name[:2]
    if number in HISTORY_NOTEBOOKS or (number in NETWORK_NOTEBOOKS and the_study.model.has_history):
        return the_study.with_history()
    return None


def train_first(the_study: study.Study) -> None:
    """Train what is missing of the study's network, in this process, with the notebooks' threads."""
    import torch

    from lib.core.devices import default_threads

    torch.set_num_threads(default_threads())
    steps = the_study.train()
    print(f"[figures] network {the_study.model_tag()}: {len(steps)} checkpoints on disk", flush=True)


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    """An exclusive lock on the file `path` for the block: the partial copy of a notebook that is running (the OS
    drops the lock when its holder dies, which is how the next run tells a killed run's copy)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_partials(folder: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove from `folder` the partial notebooks (`.NN_*.ipynb.<random>.ipynb`) that killed runs left: older than
    `older_than_s` and locked by no running notebook (`_held`). Says so in one line; returns what it removed."""
    removed = [tmp for tmp in sorted(Path(folder).glob(PARTIAL_PATTERN)) if _remove_if_stale(tmp, older_than_s)]
    if removed:
        print(f"[figures] removed {len(removed)} partial notebook(s) left in {folder} by killed runs: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    return removed


def _remove_if_stale(tmp: Path, older_than_s: float) -> bool:
    """Remove `tmp` if it is older than `older_than_s` and no process holds its lock; whether it was removed."""
    try:
        if time.time() - tmp.stat().st_mtime < older_than_s:
            return False
        fd = os.open(tmp, os.O_RDWR)
    except OSError:  # gone meanwhile, or a folder we cannot write: nothing to tidy from here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tmp.unlink()
        return True
    except OSError:  # held by a running notebook, or not ours to remove
        return False
    finally:
        os.close(fd)


def _set_environment(settings: dict[str, str | None]) -> None:
    for key, value in settings.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def _in_environment(settings: dict[str, str | None]) -> Iterator[None]:
    """The environment variables `settings` (None: unset) for the kernel papermill starts, restored afterwards:
    the caller's process (a test runner starting other kernels, for one) keeps its own scale and study."""
    before = {key: os.environ.get(key) for key in settings}
    try:
        _set_environment(settings)
        yield
    finally:
        _set_environment(before)


def _record_paths(executed: Path, notebook: Path, output: Path) -> None:
    """papermill records the input and output paths in the notebook's metadata: store them relative to the
    repository (not the temporary file, nor this machine's absolute paths)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key, path in (("input_path", notebook), ("output_path", output)):
        meta[key] = str(path.relative_to(paths.REPO_ROOT)) if path.is_relative_to(paths.REPO_ROOT) else path.name
    nbformat.write(nb, executed)


def _rendered(text: str) -> str:
    """What a terminal shows for `text`: each line keeps only what follows its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def collapse_progress_output(path: Path) -> None:
    """Merge each cell's consecutive stream outputs and keep the final state of every progress bar.

    papermill saves every tqdm refresh as its own output; a notebook that trains or samples would commit
    hundreds of them. The merged text is what Jupyter itself displays."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        merged = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                    and merged[-1].get("name") == out.get("name"):
                merged[-1]["text"] += out["text"]
            else:
                merged.append(out)
        for out in merged:
            if out.get("output_type") == "stream":
                out["text"] = _rendered(out["text"])
        if "outputs" in cell:
            cell["outputs"] = merged
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=scale_name_from_environment(),
                        help=f"one of {', '.join(SCALES)} (default: $REPRO_SCALE, else default)")
    parser.add_argument("--only", default=None, help="run only notebooks whose name starts with this")
    parser.add_argument("--dataset", default=study.DEFAULT_DATASET,
                        help="mnist (default), cifar10 (with --data-dir), or the path of an .npz file or image folder")
    parser.add_argument("--data-dir", default=None, help="where cifar10 is: the official archive or its folder")
    parser.add_argument("--model", default=study.DEFAULT_MODEL,
                        help="ours (default: the network lib.train trains) or the folder of a saved diffusers model")
    parser.add_argument("--inception", default=None,
                        help="a local copy of the FID Inception weights (pt_inception-2015-12-05-6726825d.pth): "
                             "sample quality as Inception FID and KID (nothing is downloaded)")
    args = parser.parse_args(argv)
    scale = scale_from_command_line(args.scale)
    if scale is None:
        return 2
    dataset = resolve_spec(args.dataset or study.DEFAULT_DATASET, tuple(study.LABELS))
    data_dir = resolve_spec(args.data_dir or None, ())
    model = resolve_spec(args.model or study.DEFAULT_MODEL, (study.DEFAULT_MODEL,))
    inception = resolve_spec(args.inception or None, ())
    notebooks = list_notebooks(args.only)
    if (dataset, model, inception) != (study.DEFAULT_DATASET, study.DEFAULT_MODEL, None):
        runs = [nb for nb in notebooks if nb.name.startswith(QUALITY_NOTEBOOKS if inception else STUDY_NOTEBOOKS)]
        skipped = [nb.name for nb in notebooks if nb not in runs]
        notebooks = runs
        if skipped:
            why = "they do not measure sample quality" if inception else "they study MNIST and our own training run"
            print(f"[figures] with dataset {args.dataset} and model {args.model}"
                  f"{' in Inception features' if inception else ''}: running "
                  f"{', '.join(nb.name for nb in notebooks) or 'nothing'}; not {', '.join(skipped)} ({why})")
    remove_stale_partials(paths.notebook_output_dir(study.output_name(scale, dataset, model, inception)))
    from lib.core.devices import pick_device  # imports torch: only once the command line is read

    the_study, trained = study.Study(get_scale(scale), dataset, data_dir, model, pick_device(), inception), set()
    for notebook in notebooks:
        needed = network_to_train(notebook, the_study)
        if needed is not None and needed.model_spec not in trained:
            train_first(needed)
            trained.add(needed.model_spec)
        start = time.perf_counter()
        print(f"[figures] {notebook.name} at scale {scale} ...", flush=True)
        try:
            output = run_notebook(notebook, scale, dataset, data_dir, model, inception)
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            summary = str(exc).strip().splitlines()
            detail = next((line for line in reversed(summary) if line.strip()), type(exc).__name__)
            print(f"[figures] FAILED: notebooks/{notebook.name}: {detail}", file=sys.stderr)
            return 1
        print(f"[figures] {notebook.name} done in {time.perf_counter() - start:.0f} s -> "
              f"{output.relative_to(paths.REPO_ROOT) if output.is_relative_to(paths.REPO_ROOT) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
