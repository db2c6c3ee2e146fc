"""Nothing is lost, whatever stops a run: real signals sent to real training and sweep processes (Ctrl-C as a terminal
sends it, to the whole group), full and read-only filesystems (tmpfs mounts, skipped where mounting is not permitted),
two sweeps on one folder."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared import load_checkpoint
from shared.published import load_summary, write_csv

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n=4", "--V=16", "--d_model=16", "--d_head=16", "--batch_size=64", "--eval_size=256"]
ENDLESS = TINY + ["--max_steps=1000000", "--eval_every=1000000"]  # trains until stopped
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_training(*args, cwd):
    process = subprocess.Popen([sys.executable, str(ROOT / "find_min/training.py"), *args], cwd=cwd, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # "find_min: n=4, V=16, ... parameters" comes just before the first step
        if "parameters" in line:
            break
    time.sleep(0.5)
    return process


def finish(process, timeout=60):
    out, err = process.communicate(timeout=timeout)
    assert "Traceback" not in err, err[-3000:]
    return out, err


def leftovers(folder):
    return [p.name for p in Path(folder).rglob(".*.tmp")]


def test_sigterm_saves_like_ctrl_c(tmp_path):
    process = start_training(*ENDLESS, "--snapshots=4", f"--out={tmp_path / 'm.pt'}", cwd=tmp_path)
    process.send_signal(signal.SIGTERM)
    out, err = finish(process)
    assert process.returncode == 143 and "SIGTERM: stopping" in err  # a scheduler sees it
    assert not (tmp_path / "m.pt").exists() and load_checkpoint(tmp_path / "m.interrupted.pt").metadata["history"][
        "interrupted"]
    assert "interrupted after" in out and not leftovers(tmp_path)


def test_ctrl_c_again_and_again_keeps_the_model(tmp_path):
    process = start_training(*ENDLESS, "--snapshots=0", f"--out={tmp_path / 'm.pt'}", cwd=tmp_path)
    for _ in range(4):  # the later ones land in the accuracy table and in the save
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    out, err = finish(process)
    assert process.returncode == 130 and "already stopping, the model is being saved" in err
    assert load_checkpoint(tmp_path / "m.interrupted.pt", task="find_min") and not leftovers(tmp_path)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a folder on a tmpfs of that many bytes; skipped where this process may not mount."""
    mounted = []

    def mount(size, name="disk"):
        folder = tmp_path / name
        folder.mkdir()
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
        if run.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip() or 'mount failed'})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def saved_instead(err):
    """The fallback path from 'could not write X (reason); saved to Y instead'."""
    line = next(line for line in err.splitlines() if line.startswith("could not write "))
    return Path(line.split("; saved to ")[1].split(" instead")[0])


def test_a_full_disk_sends_the_model_to_the_temporary_folder(tmpfs, tmp_path):
    disk = tmpfs("64k")  # the checkpoint (~30 KB of weights plus torch's zip) does not fit
    run = subprocess.run([sys.executable, str(ROOT / "find_min/training.py"), *TINY, "--d_model=64", "--d_head=64",
                          "--max_steps=60", "--eval_every=20", "--snapshots=0", f"--out={disk / 'm.pt'}"],
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 1 and "(No space left on device)" in run.stderr
    fallback = saved_instead(run.stderr)
    assert load_checkpoint(fallback, task="find_min") and not leftovers(disk) and not (disk / "m.pt").exists()


def test_snapshots_that_do_not_fit_still_leave_the_model_and_the_verdict(tmpfs):
    disk = tmpfs("300k")  # room for the checkpoint, not for 24 snapshots
    run = subprocess.run([sys.executable, str(ROOT / "find_min/training.py"), *TINY, "--d_model=64", "--d_head=64",
                          "--max_steps=200", "--eval_every=100", "--snapshots=24", f"--out={disk / 'm.pt'}"],
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0 and "could not write the snapshots to" in run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("target ")  # the verdict line
    assert load_checkpoint(disk / "m.pt", task="find_min") and not leftovers(disk)


def test_a_folder_that_stops_being_writable(tmpfs):
    disk = tmpfs("10m")
    process = start_training(*ENDLESS, "--snapshots=0", f"--out={disk / 'm.pt'}", cwd=disk.parent)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    process.send_signal(signal.SIGINT)
    out, err = finish(process)
    assert process.returncode == 130 and "(Read-only file system)" in err
    assert load_checkpoint(saved_instead(err)).metadata["history"]["interrupted"]


# ----------------------------------------------------------------------------------------------------- sweeps
def sweep(*args, folder):
    """A sweep in a session of its own, as a terminal runs it: Ctrl-C there is SIGINT to the whole group."""
    return subprocess.Popen([sys.executable, "-m", "shared.tools.sweep", "find_min", *args, f"--folder={folder}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def session(sid):
    """The live processes of a session (a sweep's: it, submitit's job controllers and the seeds' processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("sig, group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
                         ids=["Ctrl-C in its terminal", "SIGTERM to the sweep"])
def test_a_signal_stops_the_sweep_and_every_process_of_it(sig, group, code, tmp_path):
    """Ctrl-C reaches every process of the terminal's group, SIGTERM (what a scheduler sends) the sweep alone: either
    way the queued seeds never start, the running ones save what they reached, and no process is left."""
    process = sweep("--seeds=0-3", "--jobs=2", *ENDLESS, folder=tmp_path)
    deadline = time.time() + 60
    while sum("parameters" in log.read_text() for log in tmp_path.glob("logs/*_log.out")) < 2:
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.2)
    time.sleep(0.5)
    assert len(session(process.pid)) == 5  # the sweep, and a controller and a process per running seed
    start = time.time()
    (os.killpg if group else os.kill)(process.pid, sig)
    out, err = finish(process, timeout=60)
    assert time.time() - start < 30 and process.returncode == code, err[-2000:]
    assert f"interrupted by {sig.name}: 0 of 4 seed(s) finished" in err and "run the same command again" in err
    assert {p.name for p in tmp_path.glob("*.pt")} == {"seed0.interrupted.pt", "seed1.interrupted.pt"}
    assert session(process.pid) == []


def test_two_sweeps_at_once_on_one_folder(tmp_path):
    """Both finish, neither corrupts a file the other writes (every write is atomic), one summary row per seed."""
    recipe = TINY + ["--max_steps=50", "--eval_every=50"]
    first, second = (sweep("--seeds=0-1", "--jobs=2", *recipe, folder=tmp_path) for _ in range(2))
    (_, err1), (_, err2) = finish(first, 120), finish(second, 120)
    assert first.returncode == 0 and second.returncode == 0, err1[-2000:] + err2[-2000:]
    assert [row["seed"] for row in load_summary(tmp_path / "summary.csv")] == [0, 1]
    assert all(load_checkpoint(tmp_path / f"seed{k}.pt", task="find_min") for k in (0, 1)) and not leftovers(tmp_path)


def test_another_recipe_in_the_folder_is_refused_unless_replaced(tmp_path):
    from find_min import training
    from find_min.dataset import task
    from shared.tools.cli import apply_overrides, hyperparameters
    from shared.tools.experiment import CLI_LIMITS, run_training
    from shared.tools.sweep import parse_args
    params = apply_overrides(hyperparameters(vars(training)), TINY + ["--max_steps=50"], **CLI_LIMITS)
    run_training(task(4, 16), {**params, "snapshots": 0, "device": "cpu"}, tmp_path / "seed0.pt", progress=False)
    with pytest.raises(SystemExit, match=r"holds seeds of another recipe \(seed0.pt: lr=0.003 there, 0.01 here\)"):
        parse_args(["find_min", "--seeds=0", *TINY, "--max_steps=50", "--lr=0.01", f"--folder={tmp_path}"])
    assert parse_args(["find_min", "--seeds=0", *TINY, "--max_steps=50", "--lr=0.01", "--replace",
                       f"--folder={tmp_path}"])[1] == {0: tmp_path / "seed0.pt"}


def test_the_summary_is_written_atomically_by_concurrent_writers(tmp_path):
    path, errors = tmp_path / "summary.csv", []
    rows = [{"seed": k, "value": "x" * 2000} for k in range(50)]

    def write():
        try:
            for _ in range(20):
                write_csv(path, rows)
        except Exception as e:  # a fixed temporary name: FileNotFoundError
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(load_summary(path)) == 50 and not leftovers(tmp_path)
