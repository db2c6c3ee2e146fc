"""Run a task's notebook on a checkpoint with papermill and read back the hypotheses it measured.

    record = run_notebook("find_min", "/tmp/seeds/seed3.pt", "/tmp/seeds/seed3.ipynb")

The notebook executes from its own folder on a fresh python3 kernel, as Jupyter would, with its `checkpoint`
parameter set (the cell tagged "parameters"); its summary cell displays every hypothesis as JSON
(shared.hypotheses), which is what this returns.
"""
import os
from pathlib import Path

from ..hypotheses import read
from ..published import ROOT


def run_notebook(task: str, checkpoint, output=None, threads: int = 1) -> dict:
    """The hypotheses record of <task>/analyze.ipynb executed on `checkpoint` (the executed copy written to
    `output`, default beside the checkpoint as <name>.ipynb), its kernel on `threads` torch threads."""
    import papermill

    checkpoint = Path(checkpoint).resolve()
    output = Path(output) if output else checkpoint.with_suffix(".ipynb")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it: torch reads it when imported
    os.environ.pop("MPLBACKEND", None)  # draw inline, as Jupyter does
    notebook = papermill.execute_notebook(str(ROOT / task / "analyze.ipynb"), str(output),
                                          parameters={"checkpoint": str(checkpoint)}, cwd=str(ROOT / task),
                                          kernel_name="python3", progress_bar=False)
    return read(notebook)
