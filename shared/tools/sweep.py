"""Train one task over many seeds and summarise every seed in one table, here or on a Slurm cluster (submitit).

    python -m shared.tools.sweep TASK --seeds=0-19 --jobs=2                  # training.py's defaults, 2 at a time
    python -m shared.tools.sweep TASK --seeds=0-1999 --cluster=slurm --partition=cpu --time=30 --mem=4
    python -m shared.tools.sweep TASK --seeds=0-19 --recipe=NAME --hypotheses --publish --dry-run

Each seed is one job (a process here, a task of one array job on Slurm): it trains training.py's hyperparameters
(<task>/recipes/NAME.py, then any --name=value) at --seed=k into <folder>/seed<k>.pt (default
<task>/checkpoints/sweep/<name>/) unless that holds them already, then returns the seed's summary row and, with
--hypotheses, those of <task>/analyze.ipynb executed on it. Their outputs make summary.csv and hypotheses.csv
(--publish: also <task>/across_seeds/, with the lowest seed of each class); the jobs' logs are in <folder>/logs/.
A rerun resumes; another recipe's seeds in the folder are refused unless --replace; --dry-run prints the jobs (and
the Slurm batch script) and runs none. Ctrl-C or SIGTERM stops a local sweep: no queued seed starts, running ones
save seed<k>.interrupted.pt, exit 130 or 143.
"""
import importlib
import os
import re
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import submitit
from tqdm.auto import tqdm

from .. import published
from ..mechanisms import summary_row
from . import notebooks
from .cli import apply_overrides
from .experiment import CLI_LIMITS, check_writable, make_task, run_training

OPTIONS = dict(seeds="", jobs=None, recipe="", name="", folder="", hypotheses=False, publish=False, replace=False,
               dry_run=False, cluster="local", partition="", time=60, mem=0.0)  # --time: minutes, --mem: GB (Slurm)
# --jobs: seeds at once; unset, 1 here and on Slurm as many as submitit lets an array run (256)


def parse_seeds(text: str) -> list:
    """'0-19', '3', '0,2,5-7' -> sorted distinct seeds; anything else raises ValueError."""
    ranges = [re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part) for part in text.split(",")]
    if not all(ranges) or any(int(r[2] or r[1]) < int(r[1]) for r in ranges):
        raise ValueError(f"--seeds={text}: expected seeds like 0-19, 3 or 0,2,5-7 (no empty range)")
    return sorted({seed for r in ranges for seed in range(int(r[1]), int(r[2] or r[1]) + 1)})


def parse_args(argv) -> tuple:
    """(options, {seed: checkpoint path}, hyperparameters) of a command line; each refusal one line, before any job."""
    if not argv or {"-h", "--help"} & set(argv):
        raise SystemExit(print(f"{__doc__}\ntasks: {', '.join(published.task_names())}") or 0)
    if argv[0] not in published.task_names():
        raise SystemExit(f"error: unknown task {argv[0]!r}; known: {', '.join(published.task_names())}")
    names = {arg: arg[2:].split("=")[0].replace("-", "_") for arg in argv[1:]}
    if set(names.values()) & set(published.NOT_RECIPE):
        raise SystemExit(f"error: --{'/--'.join(published.NOT_RECIPE)} are set by the sweep, not overridable here")
    own = [f"--{name}=" + (arg.split("=", 1) + ["true"])[1] for arg, name in names.items() if name in OPTIONS]
    opt = SimpleNamespace(task=argv[0], **apply_overrides(dict(OPTIONS), own, zero_ok=["mem"], types={"jobs": int},
                                                          choices={"cluster": ["local", "slurm"]}))
    overrides = [arg for arg, name in names.items() if name not in OPTIONS]
    try:
        seeds = parse_seeds(opt.seeds or "-")
    except ValueError as e:
        raise SystemExit(f"error: {e if opt.seeds else '--seeds is required, e.g. --seeds=0-19'}") from None
    recipe = [str(published.ROOT / opt.task / "recipes" / f"{opt.recipe}.py")] if opt.recipe else []
    opt.name = opt.name or opt.recipe or "_".join(a[2:].replace("=", "-") for a in overrides) or "default"
    if not re.fullmatch(r"[\w+-][\w.+-]*", opt.name):  # a leading '.' could name the folder itself ('..') or hide it
        raise SystemExit(f"error: --name={opt.name}: use letters, digits, '.', '_', '+' and '-', not starting with '.'")
    params = {**apply_overrides(published.defaults(opt.task), recipe + overrides +
                                [f"--seed={seeds[-1]}"], **CLI_LIMITS), "snapshots": 0, "device": "cpu"}
    make_task(importlib.import_module(f"{opt.task}.dataset").task, params)  # a bad n or V: refused now
    folder = Path(opt.folder or published.ROOT / opt.task / "checkpoints" / "sweep" / opt.name).resolve()
    check_writable(folder / "summary.csv")
    for path in [] if opt.replace else sorted(folder.glob("seed*[0-9].pt")):
        if changes := published.trained_otherwise(path, params):
            raise SystemExit(f"error: {folder} holds seeds of another recipe ({path.name}: " + ", ".join(
                f"{k}={a!r} there, {b!r} here" for k, (a, b) in list(changes.items())[:3]) + "); sweep under another "
                "--name, or add --replace to retrain them with this one")
    return opt, {seed: folder / f"seed{seed}.pt" for seed in seeds}, params


def seed_job(task: str, seed: int, path: Path, params=None, summary=True, notebook=None):
    """One seed's job: train it into `path` unless that holds `params`' model (params None: never train), then return
    (its summary row or None, the hypotheses of `notebook` executed on it or None); or the name of a signal that
    stopped its training. Outside training a SIGTERM ends the job at once: nothing of it is left to save."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if params is not None and published.trained_otherwise(path, params) != {}:
        dataset = importlib.import_module(f"{task}.dataset")
        _, history = run_training(dataset.task(params["n"], params["V"]), {**params, "seed": seed, "out": str(path)},
                                    path, False)
        if history["signal"]:
            return history["signal"]
    return (summary_row(task, seed, path) if summary else None,
            notebooks.execute(notebook, path, path.with_suffix(".ipynb")) if notebook else None)


def executor_for(opt, folder: Path, planned: bool = False):
    """submitit's executor: local processes, or Slurm (planned: one that only writes its batch script, Slurm or not)."""
    if opt.cluster == "local":
        executor = submitit.LocalExecutor(folder / "logs")
        executor.update_parameters(timeout_min=10 ** 6)  # a seed takes as long as it takes; Ctrl-C stops it
        return executor
    executor = (type("Planned", (submitit.SlurmExecutor,), {"affinity": classmethod(lambda cls: 1)}) if planned
                else submitit.SlurmExecutor)(folder / "logs")
    executor.update_parameters(job_name=f"{opt.task}-{opt.name}", time=opt.time, cpus_per_task=1,
                               **{"array_parallelism": opt.jobs} if opt.jobs else {},
                               **{"partition": opt.partition} if opt.partition else {},
                               **{"mem": f"{round(opt.mem * 1024)}MB"} if opt.mem else {})
    return executor


def run_jobs(executor, calls: dict, jobs: int, bar) -> tuple:
    """({seed: what its seed_job returned, None if it failed, said with its log}, the signal that stopped the sweep or
    None): on Slurm one array job, here `jobs` processes at a time; a signal here starts no more seeds and stops the
    running ones."""
    pending, running, results, stop = dict(calls), {}, {}, []
    if isinstance(executor, submitit.SlurmExecutor):
        running, pending = dict(zip(pending, executor.map_array(seed_job, *zip(*pending.values())))), {}
        print(f"submitted Slurm array job {next(iter(running.values())).job_id.split('_')[0]}: {len(running)} seeds")
    stopper = lambda signum, frame: stop.append(signal.Signals(signum).name)
    handlers = {sig: signal.signal(sig, stopper) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (pending or running) and not stop:
            while pending and len(running) < jobs:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: Ctrl-C reaches a job through the sweep only
                seed = next(iter(pending))
                running[seed] = executor.submit(seed_job, *pending.pop(seed))
                signal.signal(signal.SIGINT, stopper)
            for seed, job in [(seed, job) for seed, job in running.items() if job.done()]:
                try:
                    results[seed] = running.pop(seed).result()
                    stop += [results[seed]] if isinstance(results[seed], str) else []  # stopped alone: all stop
                except Exception:  # the job's exception, or a job that left no result
                    print(f"seed {seed} failed: its log is {job.paths.stderr}", file=sys.stderr)
                    results[seed] = None
                job.paths.result_pickle.unlink(missing_ok=True)  # a later job of the same process id must not read it
                bar.update()
            time.sleep(0.2)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    for attempt in range(250 if stop and isinstance(executor, submitit.LocalExecutor) else 0):  # 25 s at most
        alive = [job for job in running.values() if not job.done()]
        if not alive:
            break
        for job in alive if attempt % 20 == 0 else []:  # again every 2 s: the first may beat training's handler
            os.kill(int(job.job_id), signal.SIGTERM)  # to the job's controller, which passes it on
        time.sleep(0.1)
    return results, (stop or [None])[0]


def main(argv=None):
    opt, paths, params = parse_args(sys.argv[1:] if argv is None else argv)
    opt.jobs = opt.jobs or (1 if opt.cluster == "local" else 0)
    folder = next(iter(paths.values())).parent
    notebook = published.ROOT / opt.task / "analyze.ipynb" if opt.hypotheses else None
    calls = {seed: (opt.task, seed, path, params, True, notebook) for seed, path in paths.items()}
    if opt.dry_run:
        for seed, path in paths.items():
            kept = published.trained_otherwise(path, params) == {}
            print(f"seed {seed}: {'kept (trained with this recipe)' if kept else f'train into {path}'}, then its "
                  "summary row" + " and notebook" * opt.hypotheses)
        if opt.cluster == "slurm":  # the script submitit would submit: one array job of len(calls) tasks
            executor = executor_for(opt, folder, planned=True)
            executor.parameters["map_count"] = len(calls)
            print("\nSlurm batch script:\n" + executor._make_submission_file_text(executor._submitit_command_str, ""))
        return
    # the jobs inherit these: the task folders importable, and torch's threads (the cores shared among the jobs here)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(published.ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // opt.jobs) if opt.cluster == "local" else 1)
    with tqdm(total=len(calls), desc=f"{opt.task} sweep {opt.name}", unit="seed") as bar:
        results, stopped = run_jobs(executor_for(opt, folder), calls, opt.jobs, bar)
    if stopped:
        finished = sum(isinstance(result, tuple) for result in results.values())
        left = "the array job runs on (scancel stops it)" if opt.cluster == "slurm" else "running ones saved " \
            "seed<k>.interrupted.pt"
        print(f"interrupted by {stopped}: {finished} of {len(calls)} seed(s) finished, {left}; run the same command "
              f"again to {'collect' if opt.cluster == 'slurm' else 'train'} the rest", file=sys.stderr)
        raise SystemExit(128 + signal.Signals[stopped].value)
    done = {seed: result for seed, result in sorted(results.items()) if isinstance(result, tuple)}
    if not done:
        raise SystemExit("error: no seed finished: nothing to summarise")
    print(published.write_sweep(folder, opt.name, done, opt.task if opt.publish else None))
    if len(done) < len(calls):
        raise SystemExit(1)  # a seed failed: said above

if __name__ == "__main__":
    main()
