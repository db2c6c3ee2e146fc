"""python -m shared.tools.sweep: seeds as submitit jobs, a summary recomputed from the checkpoints, resuming,
refusals, the Slurm batch script a dry run prints. Interruptions and two sweeps at once: tests/test_interrupts.py."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.published import class_counts, hypothesis_rows, load_summary, publish, representatives, write_sweep
from shared.tools.sweep import main, parse_args, parse_seeds, seed_job

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n=4", "--V=16", "--d_model=32", "--d_head=32", "--max_steps=300", "--batch_size=256", "--lr=1e-2",
        "--eval_every=50", "--eval_size=512",
        # the architecture is pinned too: the user's edits at the top of training.py must not change this test's model
        "--n_layers=1", "--n_heads=1", "--d_mlp=None", "--normalization_type=None"]


def sweep(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "shared.tools.sweep", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_two_seeds_as_two_jobs_and_a_seed_already_there_is_kept(tmp_path):
    run = sweep("find_min", "--seeds=0-1", "--jobs=2", f"--folder={tmp_path}", *TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    assert {p.name for p in tmp_path.glob("seed*.pt")} == {"seed0.pt", "seed1.pt"} and "find_min sweep" in run.stderr
    assert len(list((tmp_path / "logs").glob("*_log.out"))) == 2  # submitit's log of each job
    rows = load_summary(tmp_path / "summary.csv")
    assert [r["seed"] for r in rows] == [0, 1] and all(r["mechanism"] == "one head selects in layer 0" for r in rows)
    assert "| seed | uniform (100,000) | weakest family |" in run.stdout
    assert "mechanisms: 2/2 one head selects in layer 0" in run.stdout
    # the same job again (as a rerun runs it): seed 0 is kept, and its row is recomputed from its checkpoint
    _, paths, params = parse_args(["find_min", "--seeds=0-1", f"--folder={tmp_path}", *TINY])
    before = paths[0].stat().st_mtime_ns
    previous = signal.getsignal(signal.SIGTERM)
    try:
        row, record = seed_job("find_min", 0, paths[0], params)
    finally:
        signal.signal(signal.SIGTERM, previous)  # the job's own handler, restored for the test process
    assert paths[0].stat().st_mtime_ns == before and record is None
    assert row.keys() == rows[0].keys() and row["uniform (100,000)"] >= 0.98
    for key, value in row.items():
        assert rows[0][key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_a_dry_run_lists_the_jobs_and_runs_none(tmp_path, capsys):
    """A readable checkpoint of the same recipe is kept; an unreadable one is trained again."""
    from find_min.dataset import task
    from shared.tools.experiment import run_training
    _, _, params = parse_args(["find_min", "--seeds=0", f"--folder={tmp_path}", *TINY, "--max_steps=20"])
    run_training(task(4, 16), params, tmp_path / "seed0.pt", progress=False)
    (tmp_path / "seed1.pt").write_bytes(b"unreadable: trained again")
    before = sorted(p.name for p in tmp_path.iterdir())
    main(["find_min", "--seeds=0-2", f"--folder={tmp_path}", "--hypotheses", "--dry-run", *TINY, "--max_steps=20"])
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "seed 0: kept (trained with this recipe), then its summary row and notebook"] + [
        f"seed {k}: train into {tmp_path / f'seed{k}.pt'}, then its summary row and notebook" for k in (1, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_slurm_batch_script_of_a_dry_run(tmp_path, capsys):
    """No Slurm here: the script is submitit's own (SlurmExecutor's batch file for one array job), printed, not
    submitted."""
    main(["find_median", "--seeds=0-19", "--jobs=4", "--cluster=slurm", "--partition=cpu", "--time=30", "--mem=2",
          f"--folder={tmp_path}", "--dry-run"])
    out = capsys.readouterr().out
    script = out.split("Slurm batch script:\n")[1]
    assert out.count("train into") == 20 and script.startswith("#!/bin/bash")
    for line in ["#SBATCH --array=0-19%4", "#SBATCH --partition=cpu", "#SBATCH --time=30", "#SBATCH --mem=2048MB",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --job-name=find_median-default",
                 f"#SBATCH --output={tmp_path}/logs/%A_%a_0_log.out"]:
        assert line in script.splitlines(), line
    command = script.strip().splitlines()[-1]
    assert command.startswith("srun --unbuffered") and command.endswith(f"-u -m submitit.core._submit {tmp_path}/logs")
    assert list(tmp_path.iterdir()) == []  # nothing submitted, nothing written


def test_on_slurm_without_jobs_the_array_is_not_run_one_at_a_time(tmp_path, capsys):
    main(["find_min", "--seeds=0-1999", "--cluster=slurm", f"--folder={tmp_path}", "--dry-run"])
    array = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#SBATCH --array=")]
    assert array == ["#SBATCH --array=0-1999%256"]  # submitit's own limit, not --jobs' local default of 1


@pytest.mark.parametrize("args, message", [
    (["find_min", "--seeds=5-2"], "--seeds=5-2: expected seeds like 0-19, 3 or 0,2,5-7 (no empty range)"),
    (["find_min", "--seeds="], "--seeds is required"),
    (["find_min", "--seeds=a-b"], "expected seeds like"),
    (["find_min"], "--seeds is required"),
    (["no_such_task", "--seeds=0"], "unknown task 'no_such_task'; known: find_median, find_min"),
    (["find_min", "--seeds=0", "--lr=abc"], "--lr=abc"),
    (["find_min", "--seeds=0", "--seed=3"], "set by the sweep"),
    (["find_min", "--seeds=0", "--jobs=0"], "--jobs=0: expected an integer >= 1"),
    (["find_min", "--seeds=0", "--cluster=pbs"], "--cluster=pbs: expected one of local, slurm"),
    (["find_median", "--seeds=0", "--n=4"], "odd list length"),
    (["find_min", "--seeds=0", "--name=.."], "--name=..: use letters, digits"),
    (["find_min", "--seeds=0", "--recipe=wide"], "find_min/recipes/wide.py: cannot read it (No such file"),
])
def test_bad_input_is_refused_with_one_line(args, message, tmp_path):
    """Every refusal is one line, before anything runs (checked in-process: parse_args is all the command runs first;
    the command line itself is checked once, below)."""
    with pytest.raises(SystemExit) as refused:
        parse_args([*args, f"--folder={tmp_path / 'out'}"])
    text = str(refused.value.code)
    assert message in text and "\n" not in text and not (tmp_path / "out").exists()


def test_the_command_line_refuses_in_one_line(tmp_path):
    run = sweep("find_min", "--seeds=5-2", f"--folder={tmp_path / 'out'}", timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "no empty range" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()


def test_a_named_recipe_sets_the_hyperparameters_and_the_name(tmp_path):
    opt, paths, params = parse_args(["find_min", "--seeds=0-1", "--recipe=two_heads", "--lr=0.01",
                                     f"--folder={tmp_path}"])
    assert params["n_heads"] == 2 and params["lr"] == 0.01 and opt.name == "two_heads"
    assert paths == {0: tmp_path / "seed0.pt", 1: tmp_path / "seed1.pt"}
    _, _, params = parse_args(["find_median", "--seeds=0", "--recipe=averaging", f"--folder={tmp_path}"])
    assert params["uniform_attention"] is True and params["max_steps"] == 3000


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("7") == [7] and parse_seeds("0,2,5-6") == [0, 2, 5, 6]
    with pytest.raises(ValueError):
        parse_seeds("3-1")


def record(seed):
    """A notebook's hypotheses record as shared.hypotheses writes it: one hypothesis that breaks on odd seeds."""
    return {"run_id": f"run{seed}", "measurements": [{"key": "width", "value": 2.0 * seed, "unit": ""}],
            "hypotheses": [{"key": "even", "value": seed % 2, "op": "<", "threshold": 1, "why": "even seeds",
                            "unit": "", "note": "", "verdict": "holds" if seed % 2 == 0 else "FAILS"}]}


def test_the_sweeps_files_hold_the_summary_and_every_hypothesis_on_every_seed(tmp_path):
    rows = {seed: {"seed": seed, "uniform (100,000)": 1.0, "weakest family": "uniform", "weakest accuracy": 1.0,
                   "mechanism": "a", "target reached": True, "steps": 100, "seconds to target": 1.0} for seed in (0, 1)}
    text = write_sweep(tmp_path, "recipe", {seed: (rows[seed], record(seed)) for seed in (0, 1)})
    assert [r["seed"] for r in load_summary(tmp_path / "summary.csv")] == [0, 1]
    table = load_summary(tmp_path / "hypotheses.csv")
    assert [(r["seed"], r["key"], r["verdict"]) for r in table] == [(0, "even", "holds"), (0, "width", "measured"),
                                                                     (1, "even", "FAILS"), (1, "width", "measured")]
    assert "1 of 2 seeds hold every hypothesis measured on them" in text and "| even | < 1 | 1/2 | seed 1 (1) |" in text
    assert "2/2 seeds reached the target; mechanisms: 2/2 a" in text


def test_publish_writes_the_tables_and_the_lowest_seed_of_each_class(tmp_path):
    sweep_folder, out = tmp_path / "sweep", tmp_path / "across_seeds"
    sweep_folder.mkdir()
    out.mkdir()
    rows = [{"seed": s, "mechanism": m} for s, m in [(3, "b"), (1, "a"), (2, "b"), (5, "a")]]
    for row in rows:
        (sweep_folder / f"seed{row['seed']}.pt").write_bytes(bytes([row["seed"]]))
    (out / "recipe_seed9.pt").write_bytes(b"stale")
    written = publish(sweep_folder, "recipe", rows, hypothesis_rows(1, record(1)), out)
    assert representatives(rows) == {"a": 1, "b": 2} and class_counts(rows) == {"b": 2, "a": 2}
    assert sorted(p.name for p in out.iterdir()) == ["hypotheses_recipe.csv", "recipe.csv", "recipe_seed1.pt",
                                                     "recipe_seed2.pt"]
    assert (out / "recipe_seed2.pt").read_bytes() == bytes([2]) and len(written) == 4
    assert load_summary(out / "hypotheses_recipe.csv")[0]["verdict"] == "FAILS"
