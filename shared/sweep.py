"""Train one task over many seeds, in parallel, and summarise every seed in one table.

    python -m shared.sweep find_min --seeds=0-19 --jobs=2             # the default recipe, 20 seeds
    python -m shared.sweep find_median --seeds=0-4 --n_layers=3 --name=three_layers
    python -m shared.sweep find_median --seeds=0-19 --jobs=2 --publish  # also copy what the repo commits

Any other `--name=value` is a hyperparameter override, checked as training.py checks it. Each seed trains in
its own process (torch threads split so that jobs x threads <= cores) and goes to
<task>/checkpoints/sweep/<name>/seed<k>.pt (or --folder=PATH/seed<k>.pt), with what it printed in seed<k>.log;
the summary goes to summary.csv beside them and is printed as a markdown table, with each seed's mechanism
class (shared.mechanisms and the task's MECHANISMS); --publish copies the summary and the lowest seed of each
class to <task>/across_seeds/, which the notebooks and tests read. A seed whose checkpoint is
already there with the same hyperparameters is not retrained, so an interrupted sweep resumes where it
stopped, and `--seeds=k` alone is one job of a cluster array. Only the hyperparameters are compared: after a
code change that alters training (the data mix, the initialisation), sweep under a new --name or delete the
folder.
"""
import contextlib
import csv
import importlib
import multiprocessing
import os
import re
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint
from .cli import apply_overrides, hyperparameters
from .experiment import CLI_LIMITS, check_writable, make_task
from .mechanisms import classify, measures_on
from .tasks import evaluation_suite, family_accuracies
from .verify import verify

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("find_min", "find_median")
SWEEP_OPTIONS = ("seeds", "jobs", "name", "folder")
PUBLISHED = "across_seeds"  # <task>/across_seeds/: the committed summaries and one checkpoint per class
NOT_OVERRIDABLE = ("seed", "out", "snapshots", "device")  # set by the sweep itself


def parse_seeds(text: str) -> list:
    """'0-19', '3', '0,2,5-7' -> sorted distinct seeds; anything else raises ValueError."""
    seeds = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"--seeds={text}: expected seeds like 0-19, 3 or 0,2,5-7")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ValueError(f"--seeds={text}: empty range {low}-{high}")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def parse_args(argv):
    """(task, seeds, jobs, folder, hyperparameters) from the command line; one-line SystemExit when bad."""
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__.strip() if argv else "usage: python -m shared.sweep TASK --seeds=0-19 "
                         "[--jobs=2] [--name=NAME] [--hyperparameter=value ...]")
    task, rest = argv[0], argv[1:]
    if task not in TASKS:
        raise SystemExit(f"error: unknown task {task!r}; known: {', '.join(TASKS)}")
    own, overrides = {}, []
    for arg in rest:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if arg == "--publish":
            own["publish"] = True
        elif name in SWEEP_OPTIONS and "=" in arg:
            own[name] = arg.split("=", 1)[1]
        elif name in NOT_OVERRIDABLE:
            raise SystemExit(f"error: --{name}: set by the sweep, not overridable here")
        else:
            overrides.append(arg)
    if "seeds" not in own:
        raise SystemExit("error: --seeds is required, e.g. --seeds=0-19")
    try:
        seeds = parse_seeds(own["seeds"])
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    jobs = own.get("jobs", "1")
    if not jobs.isdigit() or int(jobs) < 1:
        raise SystemExit(f"error: --jobs={jobs}: expected an integer >= 1")
    name = own.get("name") or ("default" if not overrides else
                               "_".join(a[2:].replace("=", "-") for a in overrides))
    if not re.fullmatch(r"[\w.+-]+", name):
        raise SystemExit(f"error: --name={name}: use letters, digits, '.', '_', '+' and '-'")
    module = importlib.import_module(f"{task}.training")
    g = dict(hyperparameters(vars(module)))
    params = apply_overrides(g, overrides, **CLI_LIMITS)
    make_task(importlib.import_module(f"{task}.dataset").task, params)  # bad n or V: refused now
    folder = Path(own["folder"]) if own.get("folder") else ROOT / task / "checkpoints" / "sweep" / name
    check_writable(folder / "summary.csv")
    if own.get("publish"):
        check_writable(ROOT / task / PUBLISHED / f"{name}.csv")
    return task, seeds, int(jobs), folder, params, name if own.get("publish") else None


def _same_recipe(path: Path, params: dict) -> bool:
    """A finished seed: its checkpoint loads and was trained with these hyperparameters."""
    try:
        saved = load_checkpoint(path).metadata.get("hyperparameters", {})
    except CheckpointError:
        return False
    return all(saved.get(k) == v for k, v in params.items() if k not in NOT_OVERRIDABLE)


def _init_worker(threads):
    torch.set_num_threads(threads)


def _train_seed(task_name, params, path):
    """One seed in a worker process; what training prints goes to seed<k>.log beside its checkpoint."""
    from .experiment import run_training
    task = importlib.import_module(f"{task_name}.dataset").task(params["n"], params["V"])
    with open(Path(path).with_suffix(".log"), "w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        run_training(task, params, path, progress=False)
    return str(path)


def summary_row(task_name: str, seed: int, path: Path) -> dict:
    """The sweep's figures for one seed, recomputed from its checkpoint: accuracy on the evaluation suite
    (100,000 uniform lists and every family), the weakest family, when training reached its target, the
    mechanism measures (shared.mechanisms.measures_on), the class the task's MECHANISMS give them, and
    shared.verify's verdict on every input (with its worst-case margin, where computed)."""
    model = load_checkpoint(path, task=task_name)
    meta = model.metadata
    dataset = importlib.import_module(f"{task_name}.dataset")
    task = dataset.task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
    suite = evaluation_suite(task)
    accuracies = family_accuracies(model, suite)
    weakest = min(accuracies, key=accuracies.get)
    measures = measures_on(model, suite)
    history = meta["history"]
    reached = history.get("target_reached")
    seconds = history["seconds"][history["step"].index(reached)] if reached is not None else None
    row = {"seed": seed, "held-out": history["eval_accuracy"][-1], **accuracies, "weakest family": weakest,
           "weakest accuracy": accuracies[weakest], "target reached": reached is not None,
           "steps": history["stopped_at"], "seconds to target": seconds, "train seconds": meta["train_seconds"],
           **measures, "mechanism": classify(measures, dataset.MECHANISMS)}
    verdict = verify(model, task)
    row.update({"verified": verdict.status, "worst-case margin": verdict.margin,
                "float32 margin": verdict.float32_margin})
    return row


def write_csv(path: Path, rows: list):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _typed(text: str):
    if text in ("", "None"):
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_summary(path) -> list:
    """A sweep's summary.csv as rows of numbers, booleans, None and strings (as summary_row made them)."""
    return [{k: _typed(v) for k, v in row.items()} for row in read_csv(Path(path))]


def representatives(rows: list) -> dict:
    """{mechanism: the lowest seed of that class} over a summary's rows."""
    lowest = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        lowest.setdefault(row["mechanism"], row["seed"])
    return lowest


def class_counts(rows: list) -> dict:
    """{mechanism: how many seeds}, the most common first."""
    return dict(Counter(row["mechanism"] for row in rows).most_common())


def published(task: str) -> dict:
    """What <task>/across_seeds/ holds: {recipe name: {"rows": the summary's rows, "changes": the
    hyperparameters that differ from training.py's defaults (read from a representative checkpoint),
    "representatives": {class: checkpoint path}}}, the default recipe first."""
    folder = ROOT / task / PUBLISHED
    defaults = hyperparameters(vars(importlib.import_module(f"{task}.training")))
    found = {}
    for path in sorted(folder.glob("*.csv"), key=lambda p: (p.stem != "default", p.stem)):
        rows = load_summary(path)
        reps = {name: folder / f"{path.stem}_seed{seed}.pt" for name, seed in representatives(rows).items()}
        saved = load_checkpoint(next(iter(reps.values()))).metadata["hyperparameters"]
        changes = {k: v for k, v in saved.items() if k not in NOT_OVERRIDABLE and defaults.get(k) != v}
        found[path.stem] = {"rows": rows, "changes": changes, "representatives": reps}
    return found


def recipe_label(name: str, changes: dict) -> str:
    return f"{name}: " + (" ".join(f"`--{k}={v}`" for k, v in changes.items()) or "training.py's defaults")


def class_count_text(rows: list) -> str:
    """'12/20 selects in layer 1, 7/20 ...': the classes of a summary's rows, the most common first."""
    return ", ".join(f"{count}/{len(rows)} {name}" for name, count in class_counts(rows).items())


def counts_sentence(recipes: dict) -> str:
    """'default: 20/20 ...; two_heads: ...' over the published recipes."""
    return "; ".join(f"{name}: {class_count_text(recipe['rows'])}" for name, recipe in recipes.items())


def verified_text(rows: list) -> str:
    """'18/20 proved, 2/20 refuted': shared.verify's verdicts over a summary's rows ('-' for a summary written
    before the sweep recorded them)."""
    if any("verified" not in row for row in rows):
        return "-"
    return ", ".join(f"{count}/{len(rows)} {status}" for status, count in
                     Counter(row["verified"] for row in rows).most_common())


def class_count_table(recipes: dict) -> str:
    """Markdown, one row per published recipe: seeds, how many of them fall in each mechanism class, the
    weakest-family accuracy over seeds (lowest and median), and how many are proved right on every input."""
    lines = ["| recipe | seeds | mechanism classes | weakest family, lowest seed | weakest family, median seed | "
             "right on every input (shared.verify) |", "|---|---:|---|---:|---:|---|"]
    for name, recipe in recipes.items():
        rows = recipe["rows"]
        weakest = sorted(r["weakest accuracy"] for r in rows)
        lines.append(f"| {recipe_label(name, recipe['changes'])} | {len(rows)} | {class_count_text(rows)} | "
                     f"{weakest[0]:.2%} | {weakest[len(weakest) // 2]:.2%} | {verified_text(rows)} |")
    return "\n".join(lines)


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
    uniform = next(k for k in rows[0] if k.startswith("uniform ("))
    lines = [f"| seed | {uniform} | weakest family | weakest accuracy | target reached | steps | seconds to target |",
             "|---:|---:|---|---:|---|---:|---:|"]
    for r in rows:
        seconds = "-" if r["seconds to target"] is None else f"{r['seconds to target']:.1f}"
        lines.append(f"| {r['seed']} | {r[uniform]:.3%} | {r['weakest family']} | {r['weakest accuracy']:.2%} | "
                     f"{'yes' if r['target reached'] else 'no'} | {r['steps']} | {seconds} |")
    return "\n".join(lines)


def run_sweep(task: str, seeds, jobs: int, folder: Path, params: dict, progress: bool = True) -> list:
    """Train every seed not already done (jobs at a time), then summarise all of them; returns the rows."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {seed: folder / f"seed{seed}.pt" for seed in seeds}
    todo = [seed for seed in seeds if not _same_recipe(paths[seed], params)]
    if len(todo) < len(seeds):
        print(f"{len(seeds) - len(todo)} seed(s) already trained with this recipe in {folder}: kept")
    cores = os.cpu_count() or 1
    jobs = min(jobs, cores, max(1, len(todo)))  # more processes than cores would only share them
    threads = max(1, cores // jobs)
    bar = tqdm(total=len(todo), desc=f"{task} sweep {folder.name}", disable=not progress)
    try:
        # spawn, not fork: a forked child can hang on the parent's OpenMP thread pool
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_train_seed, task, {**params, "seed": seed, "snapshots": 0, "device": "cpu"},
                                   paths[seed]): seed for seed in todo}
            for future in as_completed(futures):
                future.result()
                bar.update()
    finally:
        bar.close()
    rows = [summary_row(task, seed, paths[seed]) for seed in seeds]
    write_csv(folder / "summary.csv", rows)
    return rows


def main(argv=None):
    task, seeds, jobs, folder, params, published = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows = run_sweep(task, seeds, jobs, folder, params)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: finished seeds are saved; run the same command again to train the rest")
    print(markdown(rows))
    reached = sum(r["target reached"] for r in rows)
    print(f"{reached}/{len(rows)} seeds reached the target; summary: {folder / 'summary.csv'}")
    print("mechanisms: " + class_count_text(rows))
    if published:
        for path in publish(folder, rows, published, ROOT / task / PUBLISHED):
            print(f"published {path}")


if __name__ == "__main__":
    main()
