"""Every analyze.ipynb executes top to bottom on a fresh python3 kernel, from its own folder, is committed executed,
and shows the verdicts its committed checkpoint has: each one following from its own value and threshold, on any
model, and the ones tests/conftest.py documents on the committed run."""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from conftest import COMMITTED, committed_run, consistent, text_of, verdict_rows
from nbclient import NotebookClient

from shared.claims import HOLDS
from shared.published import class_count_table, published, task_names

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {task: ROOT / task / "analyze.ipynb" for task in task_names()}


def expected_verdicts(task, rows):
    """{key: verdict} the committed run must show: every row holds but those COMMITTED lists."""
    return {key: COMMITTED[task][1].get(key, HOLDS) for key in rows}


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_is_committed_executed(task):
    nb = nbformat.read(NOTEBOOKS[task], as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "commit the notebook executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "execute it top to bottom"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    rows = verdict_rows(text_of(outputs))
    assert len(rows) >= 12 and not consistent(rows)
    if task in COMMITTED and committed_run(task):  # committed with the checkpoint it documents
        assert {k: v[3] for k, v in rows.items()} == expected_verdicts(task, rows)
    prose = "".join(cell.source for cell in code)
    assert "say(" not in prose, "a section's prose lives in its markdown; the code cell shows the verdict"


# Retrains with a tweak each notebook must also run on (README's loop: change a hyperparameter, train, re-run).
VARIANTS = {
    "find_min, two heads with LayerNorm": ("find_min", dict(n=6, V=24, n_heads=2, d_head=16, d_model=32,
                                                            normalization_type="LN", max_steps=150, eval_every=50)),
    "find_median, one layer": ("find_median", dict(n=5, V=16, n_layers=1, d_model=32, d_head=32, d_mlp=64,
                                                   max_steps=150, eval_every=50)),
}


def execute(path, env):
    """Execute a fresh copy of a notebook from its own folder on a python3 kernel, as Jupyter would, with `env`
    added to the kernel's environment; return its code cells' outputs."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    kernel_env = {name: value for name, value in os.environ.items() if name != "MPLBACKEND"}  # draw inline
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute(env={**kernel_env, **{name: str(value) for name, value in env.items()}})
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def train_tiny(task_name, out, **overrides):
    import importlib

    from shared.tools.cli import hyperparameters
    from shared.tools.experiment import run_training
    p = {**hyperparameters(vars(importlib.import_module(f"{task_name}.training"))), "snapshots": 0,
         "device": "cpu", **overrides}
    run_training(importlib.import_module(f"{task_name}.dataset").task(p["n"], p["V"]), p, out, progress=False)
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """{task or variant: its outputs}: one fresh execution of each committed notebook and of each VARIANTS retrain,
    two kernels at a time, longest first, each on one thread (two kernels on two cores: a second thread each would
    only contend)."""
    folder, runs = tmp_path_factory.mktemp("variants"), {task: (path, {}) for task, path in NOTEBOOKS.items()}
    for i, (name, (task, overrides)) in enumerate(VARIANTS.items()):
        checkpoint = train_tiny(task, folder / f"variant{i}.pt", **overrides)
        runs[name] = (NOTEBOOKS[task], {f"{task.upper()}_CHECKPOINT": checkpoint})
    order = sorted(runs, key=lambda name: (name not in NOTEBOOKS, name != "find_median"))  # longest first
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(execute, runs[name][0], {**runs[name][1], "OMP_NUM_THREADS": 1}) for name in order}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_executes_and_shows_its_verdicts(task, executed):
    outputs = executed[task]
    text = text_of(outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    rows = verdict_rows(text)
    assert rows and not consistent(rows), consistent(rows)
    if task in COMMITTED and committed_run(task):
        assert {k: v[3] for k, v in rows.items()} == expected_verdicts(task, rows)
    assert class_count_table(published(task)) in text  # "Across seeds" counts the committed summaries
    assert "hypotheses measured on this model hold" in text
    assert "is the model's answer" in text  # the panel's static view of its default list


def test_every_task_has_a_notebook():
    assert len(NOTEBOOKS) >= 2 and all(path.is_file() for path in NOTEBOOKS.values())


def test_find_min_notebook_on_two_heads_with_layernorm(executed):
    """The design card's loop with a tweak: the notebook measures every head, says which readings are only
    approximate, refuses the committed run's snapshots, and its verdicts follow the model: the verifier cannot
    decide it (not measured here), and the hypotheses a barely trained model breaks FAIL."""
    text = text_of(executed["find_min, two heads with LayerNorm"])
    assert "2 head(s), attention-only, LayerNorm" in text and "n = 6, V = 24" in text
    assert "L0H0 " in text and "L0H1 " in text  # every head measured
    assert "approximate: the weights alone are exact only for 1 layer, 1 head" in text  # and said so
    assert "LayerNorm linearised at its measured scale" in text
    assert "no snapshots for this model: train with --snapshots=N" in text
    rows = verdict_rows(text)
    assert not consistent(rows) and rows["proved"][3] == "not measured here" and rows["formation"][3] == "not measured here"
    assert "FAILS" in text and "**Verdict: the hypothesis FAILS on this model**; failing: " in text


def test_find_median_notebook_on_one_layer(executed):
    text = text_of(executed["find_median, one layer"])
    assert "1 layer(s) x 1 head(s)" in text and "selecting head none (one layer)" in text
    assert "no averaging model of this task shape beside it" in text
    rows = verdict_rows(text)
    assert not consistent(rows) and rows["selects"][3] == "not measured here"  # no later head: not refuted
    assert rows["mlp0_steps"][3] == "not measured here"


def test_a_checkpoint_path_that_does_not_exist_is_one_line(tmp_path, monkeypatch):
    """What a notebook shows for FIND_MIN_CHECKPOINT=no/such.pt: one line naming the path and where it looked (IPython
    renders a CheckpointError through _render_traceback_, instead of a traceback)."""
    from shared import CheckpointError, load_checkpoint
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint("no/such.pt", task="find_min")
    assert error.value._render_traceback_() == [f"CheckpointError: no/such.pt: no such checkpoint file (looked for it "
                                                f"from {tmp_path})"]
