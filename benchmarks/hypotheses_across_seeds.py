"""On how many seeds of a recipe does each of the notebook's hypotheses hold, and which seeds break it? papermill
executes the task's analyze.ipynb on each checkpoint of a folder (its `checkpoint` parameter), two at a time, and
the table is built from the executed notebooks' records; the time is given as a ratio to the reference workload.

    python -m shared.tools.sweep find_median --seeds=0-19 --jobs=2 --folder=/tmp/median   # or training.py --out=...
    python benchmarks/hypotheses_across_seeds.py find_median /tmp/median                 # target: 20 seeds in 8 min
    python benchmarks/hypotheses_across_seeds.py find_min /tmp/min --seeds=0-19 --publish  # -> find_min/across_seeds/

The jobs are the sweep's (shared.tools.sweep.seed_job, on submitit's local executor), without training: the sweep's
`--hypotheses` runs the same on the seeds it trains (and on a folder of trained seeds, a rerun trains none). Each
executed notebook is kept beside its checkpoint (seed<k>.ipynb). A hypothesis that breaks on some seeds is a finding
about the recipe, not a threshold to lower. --publish writes every seed's rows to <task>/across_seeds/
hypotheses_<recipe>.csv (--recipe=NAME, default "default"), which the notebook's "Across seeds" section reads.
"""
import argparse
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import reference_seconds  # noqa: E402
from shared.published import (hypotheses_path, hypotheses_table, hypothesis_rows,  # noqa: E402
                              measurements_table_across, task_names, write_csv)
from shared.tools.sweep import executor_for, parse_seeds, run_jobs  # noqa: E402


def checkpoints(folder: Path, seeds=None) -> dict:
    """{seed: path} of the folder's seed<k>.pt files (only `seeds`, each required, when given)."""
    found = {int(m[1]): p for p in folder.glob("seed*.pt") if (m := re.fullmatch(r"seed(\d+)\.pt", p.name))}
    missing = [s for s in seeds or [] if s not in found]
    if missing:
        raise SystemExit(f"error: no seed<k>.pt in {folder} for seed(s) {', '.join(map(str, missing))}")
    return {s: found[s] for s in (seeds or sorted(found))}


def across(task: str, paths: dict, jobs: int = 2, notebook=None) -> list:
    """Every seed's hypotheses rows (shared.published.hypothesis_rows) from `notebook` (default the task's
    analyze.ipynb) executed on each checkpoint, `jobs` at a time; a seed whose notebook failed is named and left out."""
    notebook = Path(notebook or ROOT / task / "analyze.ipynb").resolve()
    calls = {seed: (task, seed, path.resolve(), None, False, notebook) for seed, path in paths.items()}
    with tqdm(total=len(calls), desc=f"{task} notebooks", unit="seed") as bar:
        results, stopped = run_jobs(executor_for(argparse.Namespace(cluster="local"), next(iter(paths.values()))
                                                 .parent.resolve()), calls, jobs, bar)
    if stopped:
        raise SystemExit(f"interrupted by {stopped}")
    return [row for seed, result in sorted(results.items()) if isinstance(result, tuple)
            for row in hypothesis_rows(seed, result[1])]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=task_names())
    parser.add_argument("folder", type=Path, help="a folder of seed<k>.pt checkpoints (a sweep's, or training.py's)")
    parser.add_argument("--seeds", help="only these seeds, e.g. 0-19 or 0,2,5-7 (default: every seed<k>.pt there)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    parser.add_argument("--notebook", type=Path, help="another notebook with a `checkpoint` parameter")
    parser.add_argument("--publish", action="store_true", help="write <task>/across_seeds/hypotheses_<recipe>.csv")
    parser.add_argument("--recipe", default="default", help="the recipe the seeds were trained with (for --publish)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder} is not a folder")
    try:
        paths = checkpoints(args.folder, parse_seeds(args.seeds) if args.seeds else None)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if not paths:
        raise SystemExit(f"error: no seed<k>.pt in {args.folder}")
    reference = reference_seconds()
    start = time.perf_counter()
    rows = across(args.task, paths, args.jobs, args.notebook)
    seconds = time.perf_counter() - start
    print(hypotheses_table(rows) + "\n\n" + measurements_table_across(rows))
    print(f"\n{len({r['seed'] for r in rows})} of {len(paths)} notebooks executed in {seconds:.0f} s, {args.jobs} at a "
          f"time: {seconds / reference:.1f}x the reference workload ({reference:.1f} s: bench.reference_seconds)")
    if args.publish and rows:
        write_csv(hypotheses_path(args.task, args.recipe), rows)
        print(f"published {hypotheses_path(args.task, args.recipe)}")


if __name__ == "__main__":
    main()
