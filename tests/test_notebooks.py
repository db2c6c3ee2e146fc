"""Every analyze.ipynb executes top to bottom (papermill, from its own folder, on a fresh kernel) on its committed
checkpoint and on retrained variants, and is committed executed. Its hypotheses are read from the JSON record its
summary cell displays (shared.hypotheses), never from rendered text: on the committed run every verdict is the
documented one; on any run each follows from its own value and threshold."""
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
from conftest import COMMITTED, ROOT, committed_run, documented, run_of, verdicts

from shared.hypotheses import NOT_MEASURED, disagreeing, read
from shared.published import class_count_table, published, task_names
from shared.tools.notebooks import run_notebook

NOTEBOOKS = {task: ROOT / task / "analyze.ipynb" for task in task_names()}
WORDS = {"find_min": 1500, "find_median": 3000}  # a learner's budget: minutes of reading, not hours
CELL_LINES = 15  # a section's computation fits on a screen


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_is_committed_executed(task):
    """Committed with outputs and no error, showing the run its checkpoint is (execution counts may be anything a
    Jupyter session leaves: a notebook run twice is still executed); documented verdicts on the committed run."""
    nb = nbformat.read(NOTEBOOKS[task], as_version=4)
    outputs = [o for cell in code_cells(nb) for o in cell.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"], "commit the notebook executed"
    record = read(nb)
    if record["run_id"] != run_of(task):
        pytest.skip(f"the notebook shows run {record['run_id']}, the checkpoint is run {run_of(task)} (retrained): "
                    f"re-execute it (cd {task} && jupyter execute --inplace analyze.ipynb)")
    assert not disagreeing(record)
    if committed_run(task):
        assert verdicts(record) == documented(task, record)
    shown = [o.data["text/markdown"] for cell in code_cells(nb) for o in cell.outputs
             if "class_count_table" in cell.source and "text/markdown" in o.get("data", {})]
    assert shown, "no across-seeds class table among the outputs"
    counts = lambda table: [line.split(" | ")[1:] for line in table.splitlines()]  # labels follow training.py edits
    assert counts(shown[0]) == counts(class_count_table(published(task))), "stale across-seeds table: re-execute it"


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_opening_the_notebook_does_not_modify_it(task):
    """JupyterLab writes the running kernel's kernelspec into a notebook it opens: one that differs (a display name
    "Python 3" beside ipykernel's "Python 3 (ipykernel)") marks the tab modified at once, and autosave rewrites it."""
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec("python3")
    saved = nbformat.read(NOTEBOOKS[task], as_version=4).metadata.kernelspec
    assert (saved.name, saved.display_name, saved.language) == ("python3", spec.display_name, spec.language)


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_reads_in_a_learners_time(task):
    nb = nbformat.read(NOTEBOOKS[task], as_version=4)
    words = sum(len(cell.source.split()) for cell in nb.cells if cell.cell_type == "markdown")
    assert words <= WORDS[task], f"{words} words of markdown"
    long = {i: len(c.source.splitlines()) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and len(c.source.splitlines()) > CELL_LINES}
    assert not long, f"code cells longer than {CELL_LINES} lines (cell: lines): {long}"


# Retrains with a tweak each notebook must also run on (README's loop: change a hyperparameter, train, re-run).
VARIANTS = {
    "find_min, two heads with LayerNorm": ("find_min", dict(n=6, V=24, n_heads=2, d_head=16, d_model=32,
                                                            normalization_type="LN", max_steps=150, eval_every=50)),
    "find_median, one layer": ("find_median", dict(n=5, V=16, n_layers=1, d_model=32, d_head=32, d_mlp=64,
                                                   max_steps=150, eval_every=50)),
}


HANDBUILT = "find_median, hand-built at n = 5, V = 8"


def save_handbuilt(out, n, V):
    from find_median.handbuilt import handbuilt_model, metadata
    from shared.checkpoint import save_checkpoint
    model = handbuilt_model(n, V)
    save_checkpoint(out, model, **metadata(model))
    return out


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
    """{task or variant: (the executed notebook, its record)}: the committed checkpoints, the hand-built model and each
    VARIANTS retrain (trained in its worker), two kernels at a time on one thread each, longest first."""
    folder = tmp_path_factory.mktemp("notebooks")
    runs = {task: (task, lambda task=task: ROOT / task / "checkpoints/model.pt") for task in NOTEBOOKS}
    runs[HANDBUILT] = ("find_median", lambda: save_handbuilt(folder / "handbuilt.pt", 5, 8))
    for i, (name, (task, overrides)) in enumerate(VARIANTS.items()):
        runs[name] = (task, lambda i=i, task=task, overrides=overrides: train_tiny(task, folder / f"variant{i}.pt",
                                                                                    **overrides))
    order = ["find_median", HANDBUILT, *[name for name in runs if name not in ("find_median", HANDBUILT)]]

    def run(name):
        output = folder / f"run{order.index(name)}.ipynb"
        task, checkpoint = runs[name]
        run_notebook(task, checkpoint(), output)
        return nbformat.read(output, as_version=4)

    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(order, pool.map(run, order)))
    return {name: (nb, read(nb)) for name, nb in done.items()}


@pytest.mark.parametrize("task", list(NOTEBOOKS))
def test_notebook_executes_and_its_verdicts_follow(task, executed):
    nb, record = executed[task]
    images = [o for cell in code_cells(nb) for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3 and len(record["hypotheses"]) >= 12 and not disagreeing(record)
    if committed_run(task):
        assert record["run_id"] == COMMITTED[task][0] and verdicts(record) == documented(task, record)


def test_find_min_notebook_on_two_heads_with_layernorm(executed):
    """The loop with a tweak: every verdict follows from its own value, the verifier cannot decide this model
    (not measured here), there are no snapshots, and a barely trained model FAILS hypotheses."""
    _, record = executed["find_min, two heads with LayerNorm"]
    found = verdicts(record)
    assert not disagreeing(record) and found["proved"] == NOT_MEASURED and found["formation"] == NOT_MEASURED
    assert "FAILS" in found.values()


def test_find_median_notebook_on_one_layer(executed):
    _, record = executed["find_median, one layer"]
    assert not disagreeing(record) and verdicts(record)["selects"] == NOT_MEASURED  # no later head: not refuted


def test_find_median_notebook_on_the_handbuilt_model(executed):
    """Every section on the model whose every weight is known: right on every family, MLP 0 reads as sharp
    steps next to the median, and no verdict contradicts its own value."""
    _, record = executed[HANDBUILT]
    found = verdicts(record)
    assert not disagreeing(record)
    assert all(found[key] == "holds" for key in ("accuracy", "weakest_family", "mlp0_steps", "mlp0_next_to_median"))


def test_a_checkpoint_path_that_does_not_exist_is_one_line(tmp_path, monkeypatch):
    """What a notebook shows for a checkpoint parameter naming no file: one line naming the path and where it looked
    (IPython renders a CheckpointError through _render_traceback_, instead of a traceback)."""
    from shared import CheckpointError, load_checkpoint
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint("no/such.pt", task="find_min")
    assert error.value._render_traceback_() == [f"CheckpointError: no/such.pt: no such checkpoint file (looked for it "
                                                f"from {tmp_path})"]
