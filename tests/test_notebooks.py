"""Every analyze.ipynb executes top to bottom on a fresh python3 kernel, from its own folder, is committed executed,
and shows the verdicts its committed checkpoint has: each one following from its own value and threshold, on any
model, and the ones tests/conftest.py documents on the committed run."""
from pathlib import Path

import nbformat
import pytest
from conftest import COMMITTED, committed_run, consistent, execute, text_of, verdict_rows

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


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_executes_and_shows_its_verdicts(task, executed):
    outputs = executed(task)
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


def train_tiny(task_name, tmp_path, **overrides):
    import importlib

    from shared.tools.cli import hyperparameters
    from shared.tools.experiment import run_training
    p = {**hyperparameters(vars(importlib.import_module(f"{task_name}.training"))), "snapshots": 0,
         "device": "cpu", **overrides}
    task = importlib.import_module(f"{task_name}.dataset").task(p["n"], p["V"])
    run_training(task, p, tmp_path / "tweaked.pt", progress=False)
    return tmp_path / "tweaked.pt"


def test_find_min_notebook_on_two_heads_with_layernorm(tmp_path):
    """The design card's loop with a tweak: the notebook measures every head, says which readings are only
    approximate, refuses the committed run's snapshots, and its verdicts follow the model: the verifier cannot
    decide it (not measured here), and the hypotheses a barely trained model breaks FAIL."""
    checkpoint = train_tiny("find_min", tmp_path, n=6, V=24, n_heads=2, d_head=16, d_model=32,
                            normalization_type="LN", max_steps=150, eval_every=50)
    text = text_of(execute(NOTEBOOKS["find_min"], {"FIND_MIN_CHECKPOINT": checkpoint}))
    assert "2 head(s), attention-only, LayerNorm" in text and "n = 6, V = 24" in text
    assert "L0H0 " in text and "L0H1 " in text  # every head measured
    assert "approximate: the weights alone are exact only for 1 layer, 1 head" in text  # and said so
    assert "LayerNorm linearised at its measured scale" in text
    assert "no snapshots for this model: train with --snapshots=N" in text
    rows = verdict_rows(text)
    assert not consistent(rows) and rows["proved"][3] == "not measured here" and rows["formation"][3] == "not measured here"
    assert "FAILS" in text and "**Verdict: the hypothesis FAILS on this model**; failing: " in text


def test_find_median_notebook_on_one_layer(tmp_path):
    checkpoint = train_tiny("find_median", tmp_path, n=5, V=16, n_layers=1, d_model=32, d_head=32, d_mlp=64,
                            max_steps=150, eval_every=50)
    text = text_of(execute(NOTEBOOKS["find_median"], {"FIND_MEDIAN_CHECKPOINT": checkpoint}))
    assert "1 layer(s) x 1 head(s)" in text and "selecting head none (one layer)" in text
    assert "no averaging model of this task shape beside it" in text
    rows = verdict_rows(text)
    assert not consistent(rows) and rows["selects"][3] == "not measured here"  # no later head: not refuted
    assert rows["mlp0_steps"][3] == "not measured here"


def test_a_checkpoint_path_that_does_not_exist_is_one_line(tmp_path):
    from nbclient.exceptions import CellExecutionError
    with pytest.raises(CellExecutionError) as error:
        execute(NOTEBOOKS["find_min"], {"FIND_MIN_CHECKPOINT": "no/such.pt"})
    assert "no/such.pt: no such checkpoint file (looked for it from " in str(error.value)
