"""python -m shared.tools.sweep: seeds in parallel, a summary recomputed from the checkpoints, resuming, refusals."""
import subprocess
import sys
from pathlib import Path

import pytest

from shared.published import class_counts, load_summary, representatives
from shared.tools.sweep import main, parse_seeds, publish, summary_row

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n=4", "--V=16", "--d_model=32", "--d_head=32", "--max_steps=300", "--batch_size=256", "--lr=1e-2",
        "--eval_every=50", "--eval_size=512"]


def sweep(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "shared.tools.sweep", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_two_seeds_two_jobs_then_resume(tmp_path, capsys):
    run = sweep("find_min", "--seeds=0-1", "--jobs=2", f"--folder={tmp_path}", *TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    assert {p.name for p in tmp_path.glob("seed*.pt")} == {"seed0.pt", "seed1.pt"}
    rows = load_summary(tmp_path / "summary.csv")
    assert [r["seed"] for r in rows] == [0, 1]
    for row in rows:  # every figure of the summary is recomputed from the checkpoint it describes
        again = summary_row("find_min", row["seed"], tmp_path / f"seed{row['seed']}.pt")
        assert again.keys() == row.keys()
        for key, value in again.items():
            assert row[key] == (pytest.approx(value) if isinstance(value, float) else value), key
        assert row["uniform (100,000)"] >= 0.98 and row["target reached"] in (True, False)
        assert row["mechanism"] == "one head selects in layer 0" and row["answer_attention"] >= 0.5
    assert "| seed | uniform (100,000) | weakest family |" in run.stdout
    assert "mechanisms: 2/2 one head selects in layer 0" in run.stdout
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("seed*.pt")}
    main(["find_min", "--seeds=0-1", "--jobs=2", f"--folder={tmp_path}", *TINY])  # the same command again, in-process
    assert "2 seed(s) already trained with this recipe" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("seed*.pt")} == before  # nothing retrained


@pytest.mark.parametrize("args, message", [
    (["find_min", "--seeds=5-2"], "empty range"),
    (["find_min", "--seeds="], "expected seeds like"),
    (["find_min", "--seeds=a-b"], "expected seeds like"),
    (["find_min"], "--seeds is required"),
    (["no_such_task", "--seeds=0"], "unknown task"),
    (["find_min", "--seeds=0", "--lr=abc"], "--lr=abc"),
    (["find_min", "--seeds=0", "--seed=3"], "set by the sweep"),
    (["find_min", "--seeds=0", "--jobs=0"], "--jobs=0"),
    (["find_median", "--seeds=0", "--n=4"], "odd list length"),
    (["find_min", "--seeds=0-100000"], "more than 1,000 seeds in one sweep"),
    (["find_min", "--seeds=0", "--name=.."], "--name=..: use letters, digits"),
])
def test_bad_input_is_refused_with_one_line(args, message, tmp_path):
    """Every refusal is one line, before anything runs (checked in-process: parse_args is all the command runs first;
    the command line itself is checked once, below)."""
    from shared.tools.sweep import parse_args
    with pytest.raises(SystemExit) as refused:
        parse_args([*args, f"--folder={tmp_path / 'out'}"])
    text = str(refused.value.code)
    assert message in text and "\n" not in text and not (tmp_path / "out").exists()


def test_the_command_line_refuses_in_one_line(tmp_path):
    run = sweep("find_min", "--seeds=5-2", f"--folder={tmp_path / 'out'}", timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and "empty range" in lines[0], run.stderr
    assert not (tmp_path / "out").exists()


def test_publish_copies_the_summary_and_the_lowest_seed_of_each_class(tmp_path):
    sweep_folder, out = tmp_path / "sweep", tmp_path / "across_seeds"
    sweep_folder.mkdir()
    rows = [{"seed": s, "mechanism": m} for s, m in [(3, "b"), (1, "a"), (2, "b"), (5, "a")]]
    for row in rows:
        (sweep_folder / f"seed{row['seed']}.pt").write_bytes(bytes([row["seed"]]))
    (sweep_folder / "summary.csv").write_text("seed,mechanism\n")
    (out).mkdir()
    (out / "recipe_seed9.pt").write_bytes(b"stale")
    written = publish(sweep_folder, rows, "recipe", out)
    assert representatives(rows) == {"a": 1, "b": 2} and class_counts(rows) == {"b": 2, "a": 2}
    assert sorted(p.name for p in out.iterdir()) == ["recipe.csv", "recipe_seed1.pt", "recipe_seed2.pt"]
    assert (out / "recipe_seed2.pt").read_bytes() == bytes([2]) and len(written) == 3


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("7") == [7] and parse_seeds("0,2,5-6") == [0, 2, 5, 6]
    with pytest.raises(ValueError):
        parse_seeds("3-1")


def test_a_named_recipe_sets_the_hyperparameters_and_the_name(tmp_path):
    from shared.tools.sweep import parse_args
    *_, params, _ = parse_args(["find_min", "--seeds=0-1", "--recipe=two_heads", "--lr=0.01", f"--folder={tmp_path}"])
    assert params["n_heads"] == 2 and params["lr"] == 0.01
    _, _, _, _, params, _ = parse_args(["find_median", "--seeds=0", "--recipe=averaging", f"--folder={tmp_path}"])
    assert params["uniform_attention"] is True and params["out"] == "checkpoints/model.pt"  # out is the sweep's
    with pytest.raises(SystemExit, match="--recipe=wide: no find_min/recipes/wide.py; known: two_heads"):
        parse_args(["find_min", "--seeds=0", "--recipe=wide"])
