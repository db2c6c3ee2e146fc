"""Train one task over many seeds, in parallel, and summarise every seed in one table.

    python -m shared.tools.sweep TASK --seeds=0-19 --jobs=2                  # training.py's defaults, 20 seeds
    python -m shared.tools.sweep TASK --seeds=0-19 --jobs=2 --recipe=NAME    # with TASK/recipes/NAME.py applied
    python -m shared.tools.sweep TASK --seeds=0-4 --n_layers=3 --name=three_layers
    python -m shared.tools.sweep TASK --seeds=0-19 --jobs=2 --publish        # also copy what the repo commits

Any other `--name=value` is a hyperparameter override, checked as training.py checks it. Each seed trains in
its own process (torch threads split so that jobs x threads <= cores) and goes to
<task>/checkpoints/sweep/<name>/seed<k>.pt (or --folder=PATH/seed<k>.pt), with what it printed in seed<k>.log;
the summary goes to summary.csv beside them and is printed as a markdown table, with each seed's mechanism
class (shared.mechanisms and <task>/mechanisms.py); --publish copies the summary and the lowest seed of each
class to <task>/across_seeds/, which the notebooks and tests read. A seed whose checkpoint is
already there with the same hyperparameters is not retrained, so an interrupted sweep resumes where it
stopped, and `--seeds=k` alone is one job of a cluster array. A folder holding seeds of other hyperparameters
is refused unless --replace is given. Only the hyperparameters are compared: after a code change that alters
training (the data mix, the initialisation), sweep under a new --name or delete the folder.

Ctrl-C or SIGTERM stops the sweep within seconds: queued seeds are cancelled, running ones save the model they
reached as seed<k>.interrupted.pt, the workers exit, and the exit status is 130 or 143. Each seed is claimed
with a lock file (seed<k>.lock, holding the sweep's pid), so two sweeps on one folder never train the same seed:
the second skips it and waits for it before its summary.
"""
import contextlib
import csv
import importlib
import io
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, atomic_write, load_checkpoint
from ..mechanisms import classify, measures_on
from ..published import NOT_RECIPE, PUBLISHED, ROOT, class_count_text, defaults, representatives, task_names
from ..tables import markdown_table, pct
from ..tasks import evaluation_suite, family_accuracies
from ..verify import verify
from .cli import apply_overrides, recipe_overrides
from .experiment import CLI_LIMITS, SEED_MAX, StopSignals, check_writable, make_task

SWEEP_OPTIONS = ("seeds", "jobs", "name", "folder", "recipe")
NOT_OVERRIDABLE = NOT_RECIPE  # set by the sweep itself


def recipe_path(task: str, name: str) -> Path:
    """<task>/recipes/<name>.py: a named variant of the task's training.py (a file of plain assignments)."""
    return ROOT / task / "recipes" / f"{name}.py"


MAX_SEEDS = 1000  # in one sweep; a larger study runs one sweep per seed as a cluster array


def parse_seeds(text: str) -> list:
    """'0-19', '3', '0,2,5-7' -> sorted distinct seeds; anything else (or more than MAX_SEEDS seeds, or a seed
    above SEED_MAX) raises ValueError."""
    seeds = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"--seeds={text}: expected seeds like 0-19, 3 or 0,2,5-7")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ValueError(f"--seeds={text}: empty range {low}-{high}")
        if high > SEED_MAX:
            raise ValueError(f"--seeds={text}: a seed above {SEED_MAX}")
        if high - low + 1 > MAX_SEEDS or len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ValueError(f"--seeds={text}: more than {MAX_SEEDS:,} seeds in one sweep; split the range, or run one "
                             "sweep per seed (a cluster array)")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def split_args(argv) -> tuple:
    """(task, the sweep's own options {name: value}, hyperparameter overrides) of the command line."""
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__.strip() if argv else "usage: python -m shared.tools.sweep TASK --seeds=0-19 "
                         "[--jobs=2] [--recipe=NAME] [--name=NAME] [--hyperparameter=value ...]")
    task, own, overrides = argv[0], {}, []
    if task not in task_names():
        raise SystemExit(f"error: unknown task {task!r}; known: {', '.join(task_names())}")
    for arg in argv[1:]:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if arg in ("--publish", "--replace"):
            own[arg[2:]] = True
        elif name in SWEEP_OPTIONS and "=" in arg:
            own[name] = arg.split("=", 1)[1]
        elif name in NOT_OVERRIDABLE:
            raise SystemExit(f"error: --{name}: set by the sweep, not overridable here")
        else:
            overrides.append(arg)
    if "seeds" not in own:
        raise SystemExit("error: --seeds is required, e.g. --seeds=0-19")
    return task, own, overrides


def recipe_args(task: str, name) -> list:
    """--recipe=NAME's overrides (its seed, out, snapshots and device are the sweep's own); [] for no recipe."""
    if not name:
        return []
    path = recipe_path(task, name)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py"))
        raise SystemExit(f"error: --recipe={name}: no {path.relative_to(ROOT)}; known: {', '.join(known) or 'none'}")
    return [a for a in recipe_overrides(path) if a[2:].split("=", 1)[0] not in NOT_OVERRIDABLE]


def parse_args(argv):
    """(task, seeds, jobs, folder, hyperparameters, published name) from the command line; one-line SystemExit
    when bad. --recipe=NAME applies <task>/recipes/NAME.py before the other overrides and names the sweep NAME
    unless --name says otherwise."""
    task, own, overrides = split_args(argv)
    try:
        seeds = parse_seeds(own["seeds"])
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    jobs = own.get("jobs", "1")
    if not jobs.isdigit() or int(jobs) < 1:
        raise SystemExit(f"error: --jobs={jobs}: expected an integer >= 1")
    recipe = recipe_args(task, own.get("recipe"))
    name = own.get("name") or own.get("recipe") or ("default" if not overrides else
                                                    "_".join(a[2:].replace("=", "-") for a in overrides))
    if not re.fullmatch(r"[\w+-][\w.+-]*", name):  # a leading '.' could name the folder itself ('..') or hide it
        raise SystemExit(f"error: --name={name}: use letters, digits, '.', '_', '+' and '-', not starting with '.'")
    params = apply_overrides(defaults(task), recipe + overrides, **CLI_LIMITS)
    make_task(importlib.import_module(f"{task}.dataset").task, params)  # bad n or V: refused now
    folder = Path(own["folder"]) if own.get("folder") else ROOT / task / "checkpoints" / "sweep" / name
    check_writable(folder / "summary.csv")
    if own.get("publish"):
        check_writable(ROOT / task / PUBLISHED / f"{name}.csv")
    other = None if own.get("replace") else other_recipe(folder, params)
    if other:
        raise SystemExit(f"error: {folder} holds seeds of another recipe ({other}); sweep under another --name, or "
                         "add --replace to retrain them with this one")
    return task, seeds, int(jobs), folder, params, name if own.get("publish") else None


def _same_recipe(path: Path, params: dict) -> bool:
    """A finished seed: its checkpoint loads and was trained with these hyperparameters."""
    try:
        saved = load_checkpoint(path).metadata.get("hyperparameters", {})
    except CheckpointError:
        return False
    return all(saved.get(k) == v for k, v in params.items() if k not in NOT_OVERRIDABLE)


def other_recipe(folder: Path, params: dict):
    """The first finished seed in `folder` trained with other hyperparameters than `params`, as a short
    description ('seed3.pt: lr=0.003 there, 0.01 here'), or None."""
    for path in sorted(Path(folder).glob("seed*.pt")):
        if path.name.endswith(".interrupted.pt"):
            continue
        try:
            saved = load_checkpoint(path).metadata.get("hyperparameters", {})
        except CheckpointError:
            continue  # unreadable: retrained like any missing seed
        differ = [f"{k}={saved.get(k)!r} there, {v!r} here" for k, v in params.items()
                  if k not in NOT_OVERRIDABLE and saved.get(k) != v]
        if differ:
            return f"{path.name}: " + ", ".join(differ[:3])
    return None


# ------------------------------------------------------------------------------------------------ the workers
_WORKER_SIGNALS = None  # a worker's StopSignals: SIGINT and SIGTERM stop its seed's training, which then saves


def _init_worker(threads, parent):
    """A worker takes SIGINT and SIGTERM as requests to stop (its sweep decides the rest), and ends itself if its
    sweep dies without telling it, rather than training or idling on as an orphan."""
    global _WORKER_SIGNALS
    torch.set_num_threads(threads)
    _WORKER_SIGNALS = StopSignals(quiet=True).__enter__()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # a seed in training stops and saves what it reached
        time.sleep(10)  # time to save; then end even if the result cannot reach the dead sweep
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _train_seed(task_name, params, path):
    """One seed in a worker process; what training prints goes to seed<k>.log beside its checkpoint. Returns the
    signal that stopped it, or None (a worker already asked to stop trains nothing)."""
    from .experiment import run_training
    if _WORKER_SIGNALS is not None and _WORKER_SIGNALS.received:
        return _WORKER_SIGNALS.received
    task = importlib.import_module(f"{task_name}.dataset").task(params["n"], params["V"])
    with open(Path(path).with_suffix(".log"), "w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        _, history = run_training(task, params, path, progress=False)
    return history["signal"]


# ------------------------------------------------------------------------------------------- claiming seeds
def _holder(lock: Path):
    """The pid of the live process that holds a seed's lock file, or None (no lock, or its process is gone)."""
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def claim(path: Path) -> bool:
    """Claim a seed for this process: create seed<k>.lock holding its pid, atomically (O_EXCL). False when a
    live process holds it; a lock left by a dead one is taken over."""
    lock = path.with_suffix(".lock")
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _holder(lock) is not None:
                return False
            with contextlib.suppress(OSError):
                lock.unlink()  # stale: the sweep that held it is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(path: Path):
    lock = path.with_suffix(".lock")
    if _holder(lock) == os.getpid():
        with contextlib.suppress(OSError):
            lock.unlink()


def training_figures(meta: dict) -> dict:
    """When a checkpoint's run reached its target, in steps and seconds, from its recorded history."""
    history = meta["history"]
    reached = history.get("target_reached")
    seconds = history["seconds"][history["step"].index(reached)] if reached is not None else None
    return {"held-out": history["eval_accuracy"][-1], "target reached": reached is not None,
            "steps": history["stopped_at"], "seconds to target": seconds, "train seconds": meta["train_seconds"]}


def summary_row(task_name: str, seed: int, path: Path) -> dict:
    """The sweep's figures for one seed, recomputed from its checkpoint: accuracy on the evaluation suite
    (100,000 uniform lists and every family), the weakest family, when training reached its target, the
    mechanism measures (shared.mechanisms.measures_on), the class the task's MECHANISMS give them, the task's own
    measures (TASK_MEASURES in <task>/mechanisms.py: model, suite -> {name: value}, if it has them), and
    shared.verify's verdict on every input (with its worst-case margin, where computed)."""
    model = load_checkpoint(path, task=task_name)
    task = importlib.import_module(f"{task_name}.dataset").task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
    suite = evaluation_suite(task)
    accuracies = family_accuracies(model, suite)
    weakest = min(accuracies, key=accuracies.get)
    measures = measures_on(model, suite)
    mechanisms = importlib.import_module(f"{task_name}.mechanisms")
    row = {"seed": seed, **accuracies, "weakest family": weakest, "weakest accuracy": accuracies[weakest],
           **training_figures(model.metadata), **measures, "mechanism": classify(measures, mechanisms.MECHANISMS)}
    row.update(getattr(mechanisms, "TASK_MEASURES", lambda model, suite: {})(model, suite))
    verdict = verify(model, task)
    row.update({"verified": verdict.status, "worst-case margin": verdict.margin,
                "float32 margin": verdict.float32_margin})
    return row


def write_csv(path: Path, rows: list):
    """The rows as a CSV file, written atomically (shared.checkpoint.atomic_write)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def publish(folder: Path, rows: list, name: str, out: Path) -> list:
    """Copy the sweep's summary to out/<name>.csv and the lowest seed of each class to out/<name>_seed<k>.pt
    (what the repository commits, in <task>/across_seeds/: the notebooks and tests read these); an earlier
    publication of the same name is replaced. Returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{name}_seed*.pt"):
        old.unlink()
    written = [out / f"{name}.csv"]
    shutil.copyfile(folder / "summary.csv", written[0])
    for seed in representatives(rows).values():
        written.append(out / f"{name}_seed{seed}.pt")
        shutil.copyfile(folder / f"seed{seed}.pt", written[-1])
    return written


def markdown(rows: list) -> str:
    """Per seed: uniform accuracy, the weakest family, steps and seconds to the target."""
    uniform = next(k for k in rows[0] if k.startswith("uniform ("))  # the suite's fresh uniform sample
    seconds = lambda r: "-" if r["seconds to target"] is None else f"{r['seconds to target']:.1f}"
    return markdown_table(["seed", uniform, "weakest family", "weakest accuracy", "target reached", "steps",
                           "seconds to target"],
                          [[r["seed"], pct(r[uniform], 3), r["weakest family"], pct(r["weakest accuracy"]),
                            "yes" if r["target reached"] else "no", r["steps"], seconds(r)] for r in rows], "rrlrlrr")


class SweepInterrupted(Exception):
    """The sweep stopped on a signal; args: (signal name, seeds finished, seeds in the sweep)."""


def run_sweep(task: str, seeds, jobs: int, folder: Path, params: dict, progress: bool = True) -> list:
    """Train every seed not already done (jobs at a time), then summarise all of them; returns the rows.

    Each seed is claimed with a lock file first, so a second sweep on the same folder skips the seeds this one
    trains (and waits for them before its summary). SIGINT or SIGTERM stops the sweep: queued seeds are
    cancelled, running ones stop and save the model they reached (seed<k>.interrupted.pt), the workers exit,
    and SweepInterrupted is raised."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {seed: folder / f"seed{seed}.pt" for seed in seeds}
    todo = [seed for seed in seeds if not _same_recipe(paths[seed], params)]
    if len(todo) < len(seeds):
        print(f"{len(seeds) - len(todo)} seed(s) already trained with this recipe in {folder}: kept")
    mine = [seed for seed in todo if claim(paths[seed])]
    elsewhere = [seed for seed in todo if seed not in mine]
    if elsewhere:
        print(f"seed(s) {', '.join(map(str, elsewhere))} are being trained by another sweep on {folder}: skipped "
              "here (this sweep waits for them before its summary)")
    try:
        _train_seeds(task, mine, jobs, paths, params, progress)
        _wait_for(elsewhere, paths)
    finally:
        for seed in mine:
            release(paths[seed])
    done = [seed for seed in seeds if _same_recipe(paths[seed], params)]
    if len(done) < len(seeds):
        print(f"seed(s) {', '.join(str(s) for s in seeds if s not in done)} have no finished checkpoint "
              "(stopped in another sweep?): left out of the summary")
    rows = [summary_row(task, seed, paths[seed]) for seed in done]
    if rows:
        write_csv(folder / "summary.csv", rows)
    return rows


def _train_seeds(task, todo, jobs, paths, params, progress):
    cores = os.cpu_count() or 1
    jobs = min(jobs, cores, max(1, len(todo)))  # more processes than cores would only share them
    threads = max(1, cores // jobs)
    bar = tqdm(total=len(todo), desc=f"{task} sweep {paths[todo[0]].parent.name if todo else ''}",
               disable=not progress or not todo)
    stop = {"signal": None}

    def handle(signum, frame):
        if stop["signal"] is None:
            stop["signal"] = signal.Signals(signum).name
            raise SweepInterrupted()
        print(f"{signal.Signals(signum).name}: already stopping", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    finished = 0
    # spawn, not fork: a forked child can hang on the parent's OpenMP thread pool
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    futures = {}
    try:
        futures = {pool.submit(_train_seed, task, {**params, "seed": seed, "snapshots": 0, "device": "cpu"},
                               paths[seed]): seed for seed in todo}
        for future in as_completed(futures):
            stopped_by = future.result()
            if stopped_by:  # a worker was signalled on its own: the sweep stops too
                stop["signal"] = stopped_by
                raise SweepInterrupted()
            finished += 1
            bar.update()
    except SweepInterrupted:
        # the pool marks one queued call beyond its workers as running; only the workers' seeds train
        running = min(sum(f.running() for f in futures), jobs)
        for future in futures:
            future.cancel()
        print(f"\n{stop['signal']}: stopping the sweep: {running} running seed(s) save the model they reached as "
              "seed<k>.interrupted.pt; queued seeds cancelled", file=sys.stderr, flush=True)
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.Signals[stop["signal"]])
        raise SweepInterrupted(stop["signal"], finished, len(todo)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finished


def _wait_for(seeds, paths):
    """Wait until no live process holds these seeds' locks (another sweep training them)."""
    waiting = [seed for seed in seeds if _holder(paths[seed].with_suffix(".lock")) is not None]
    if waiting:
        print(f"waiting for seed(s) {', '.join(map(str, waiting))}, which another sweep is training", flush=True)
    while any(_holder(paths[seed].with_suffix(".lock")) is not None for seed in waiting):
        time.sleep(0.5)


def main(argv=None):
    task, seeds, jobs, folder, params, published = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows = run_sweep(task, seeds, jobs, folder, params)
    except KeyboardInterrupt:  # Ctrl-C outside training (the summary): every finished seed is already saved
        raise SystemExit("interrupted: every finished seed is saved; run the same command again for the summary")
    except SweepInterrupted as stopped:
        name, finished, total = stopped.args
        print(f"interrupted by {name}: {finished} of {total} seed(s) finished and saved; run the same command again "
              "to train the rest", file=sys.stderr)
        raise SystemExit(128 + signal.Signals[name].value) from None
    if not rows:
        raise SystemExit("error: no seed finished: nothing to summarise")
    print(markdown(rows))
    reached = sum(r["target reached"] for r in rows)
    print(f"{reached}/{len(rows)} seeds reached the target; summary: {folder / 'summary.csv'}")
    print("mechanisms: " + class_count_text(rows))
    if published:
        for path in publish(folder, rows, published, ROOT / task / PUBLISHED):
            print(f"published {path}")


if __name__ == "__main__":
    main()
