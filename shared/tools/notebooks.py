"""A task's notebook executed on a checkpoint by papermill (its `checkpoint` parameter set, from its own folder, on a
fresh python3 kernel, as Jupyter would), and the hypotheses record its summary cell displays (shared.hypotheses):

    record = run_notebook("find_min", "/tmp/seeds/seed3.pt", "/tmp/seeds/seed3.ipynb")
"""
import os
from pathlib import Path

from ..hypotheses import read
from ..published import ROOT


def run_notebook(task: str, checkpoint, output=None, threads: int = 1) -> dict:
    """The hypotheses record of <task>/analyze.ipynb executed on `checkpoint` (the executed copy written to `output`,
    default beside the checkpoint as <name>.ipynb), its kernel on `threads` torch threads."""
    return execute(ROOT / task / "analyze.ipynb", checkpoint, output, threads)


def execute(notebook, checkpoint, output=None, threads: int = 1) -> dict:
    """run_notebook for any notebook with a `checkpoint` parameter."""
    import papermill

    checkpoint = Path(checkpoint).resolve()
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it: torch reads it when imported
    os.environ.pop("MPLBACKEND", None)  # draw inline, as Jupyter does
    return read(papermill.execute_notebook(str(notebook), str(output or checkpoint.with_suffix(".ipynb")),
                                           parameters={"checkpoint": str(checkpoint)},
                                           # the kernel's own directory: papermill's cwd= would chdir this process,
                                           # which runs in other threads at once would see
                                           resources={"metadata": {"path": str(Path(notebook).parent.resolve())}},
                                           kernel_name="python3", progress_bar=False))
