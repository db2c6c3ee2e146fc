"""What training.py guarantees around training: refusals before it starts, snapshots that belong to their
model, a checkpoint that is never lost, and a one-line verdict."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_min.dataset import task as min_task
from shared import CheckpointError, load_checkpoint, load_snapshots, snapshots_path
from shared.tools.experiment import run_training, training_verdict

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(n=4, V=16, n_layers=1, n_heads=1, d_model=32, d_head=32, d_mlp=None, act_fn="relu",
            normalization_type=None, init_scale=1.0, batch_size=256, max_steps=300, lr=1e-2, weight_decay=0.0,
            warmup_steps=20, min_lr_frac=0.1, grad_clip=1.0, eval_every=50, eval_size=1024,
            target_accuracy=1.0, seed=0, device="cpu", snapshots=6)


@pytest.mark.parametrize("task, args, message", [
    ("find_median", ["--n=6"], "odd list length"),
    ("find_min", ["--V=4"], "--V=4"),
    ("find_median", ["--V=2"], "--V=2"),
])
def test_task_parameters_are_refused_before_training(task, args, message, tmp_path, monkeypatch):
    """training.py's main, in this process (the script's own exit is the next test's): one line, nothing written."""
    import importlib

    from shared.tools.experiment import main
    monkeypatch.setattr(sys, "argv", ["training.py", f"--out={tmp_path / 'm.pt'}", *args])
    with pytest.raises(SystemExit) as stopped:
        main(importlib.import_module(f"{task}.dataset").task, dict(vars(importlib.import_module(f"{task}.training"))))
    assert str(stopped.value).startswith("error: ") and message in str(stopped.value)
    assert "\n" not in str(stopped.value) and list(tmp_path.iterdir()) == []


def test_unwritable_output_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("")
    run = subprocess.run([sys.executable, str(ROOT / "find_min/training.py"), f"--out={tmp_path / 'a_file/m.pt'}"],
                         capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "cannot write there" in lines[0], run.stderr


def test_snapshots_belong_to_their_model(tmp_path, capsys):
    T, out = min_task(n=4, V=16), tmp_path / "model.pt"
    run_training(T, TINY, out, progress=False)
    first = load_checkpoint(out, task="find_min")
    assert len(load_snapshots(tmp_path / "model.snapshots.pt", run_id=first.metadata["run_id"])) >= 4
    # another run, also with snapshots: the first run's id no longer matches the file
    run_training(T, {**TINY, "seed": 1}, out, progress=False)
    with pytest.raises(CheckpointError, match=r"these snapshots are another run's \(run \w+, this model is run "
                       + first.metadata["run_id"] + r"\): retrain with --snapshots=N to replace them"):
        load_snapshots(tmp_path / "model.snapshots.pt", run_id=first.metadata["run_id"])
    # a run without snapshots removes the stale file
    run_training(T, {**TINY, "seed": 2, "snapshots": 0}, out, progress=False)
    assert not (tmp_path / "model.snapshots.pt").exists()
    with pytest.raises(CheckpointError, match="no snapshots for this model"):
        load_snapshots(tmp_path / "model.snapshots.pt", run_id=load_checkpoint(out).metadata["run_id"])
    # the same seed gives the same weights, hence the same run id
    run_training(T, {**TINY, "seed": 2, "snapshots": 0}, tmp_path / "again.pt", progress=False)
    assert load_checkpoint(tmp_path / "again.pt").metadata["run_id"] == load_checkpoint(out).metadata["run_id"]
    assert "target reached at step" in capsys.readouterr().out


def test_a_failed_save_keeps_the_model(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    model, _ = run_training(min_task(n=4, V=16), {**TINY, "snapshots": 0}, tmp_path / "a_file/m.pt", progress=False)
    err = capsys.readouterr().err
    saved = Path(err.split("saved to ")[1].split(" instead")[0])
    assert saved.is_file() and torch.equal(load_checkpoint(saved).W_E, model.W_E)


def test_checkpoint_of_another_task_is_refused(tmp_path):
    run_training(min_task(n=4, V=16), {**TINY, "snapshots": 0, "max_steps": 20}, tmp_path / "m.pt", progress=False)
    with pytest.raises(CheckpointError, match="a checkpoint of task 'find_min', expected 'find_median'"):
        load_checkpoint(tmp_path / "m.pt", task="find_median")


def test_verdict_says_the_measurement_and_the_target_apart(tmp_path, capsys):
    _, history = run_training(min_task(n=4, V=16), {**TINY, "snapshots": 0, "max_steps": 20}, tmp_path / "m.pt",
                              progress=False)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    held = history["eval_accuracy"][-1]
    assert line.startswith(f"target not reached by max_steps=20: held-out accuracy {held:.2%} (target 100.00%); "
                           "weakest family in the report: "), line


def test_a_run_stopped_before_its_first_evaluation_says_so():
    history = {"target_reached": None, "interrupted": True, "stopped_at": 3, "eval_accuracy": []}
    line = training_verdict(history, {"uniform": 0.25}, {"target_accuracy": 1.0})
    assert line.startswith("target not reached: interrupted at step 3: no held-out evaluation yet (target 100.00%)")
    assert "nan" not in line


@pytest.mark.parametrize("device", ["cuda"] if not torch.cuda.is_available() else [])
def test_an_unavailable_device_is_refused_in_one_line(device, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "find_min/training.py"), f"--device={device}",
                          f"--out={tmp_path / 'm.pt'}"], capture_output=True, text=True, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: --device={device}: not available")
    assert list(tmp_path.iterdir()) == []


def test_snapshots_go_beside_any_checkpoint_name(tmp_path):
    """The notebooks and training agree on the snapshots' file, whatever the folder or the suffix is called."""
    out = tmp_path / "x.pt.d" / "run.ckpt"
    run_training(min_task(n=4, V=16), {**TINY, "max_steps": 20}, out, progress=False)
    assert snapshots_path(out) == tmp_path / "x.pt.d" / "run.snapshots.pt"
    run_id = load_checkpoint(out).metadata["run_id"]
    assert len(load_snapshots(snapshots_path(out), run_id=run_id)) >= 2


def test_overwriting_a_committed_checkpoint_names_the_one_command_that_restores_it(tmp_path, capsys, monkeypatch):
    """Training onto a file git tracks (a committed checkpoint) says so, with the one command that brings back
    everything it rewrote (the model and its snapshots here): run from where training ran (in the repository, or
    outside it), it does; training elsewhere says nothing."""
    git = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, check=True)
    folder = tmp_path / "task/checkpoints"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"committed")
    (folder / "model.snapshots.pt").write_bytes(b"its snapshots")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a checkpoint")
    for cwd, command in ((tmp_path, "git checkout -- task/checkpoints"),
                         (ROOT, f"git -C {folder.resolve()} checkout -- .")):
        monkeypatch.chdir(cwd)
        run_training(min_task(n=4, V=16), {**TINY, "max_steps": 20}, folder / "model.pt", progress=False)
        said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
        assert said == [f"note: this replaced the committed model.pt; `{command}` brings back the committed folder "
                        "(the model, its snapshots, a saved program); --out=PATH writes elsewhere"]
        subprocess.run(command.split(), cwd=cwd, check=True)
        assert (folder / "model.pt").read_bytes() == b"committed"
        assert (folder / "model.snapshots.pt").read_bytes() == b"its snapshots"
    run_training(min_task(n=4, V=16), {**TINY, "max_steps": 20, "snapshots": 0}, tmp_path / "other.pt", progress=False)
    assert "note: " not in capsys.readouterr().out
