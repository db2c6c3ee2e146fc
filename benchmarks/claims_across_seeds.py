"""On how many seeds of a recipe does each of the notebook's hypotheses hold, and which seeds break it?

    python -m shared.tools.sweep find_median --seeds=0-19 --folder=/tmp/median    # or training.py --out=.../seed<k>.pt
    python benchmarks/claims_across_seeds.py find_median /tmp/median
    python benchmarks/claims_across_seeds.py find_min /tmp/min --seeds=0-19 --publish   # -> find_min/across_seeds/

Reads every seed<k>.pt in the folder (or the seeds named), measures the task's hypotheses on each exactly as its
notebook does (`<task>/analysis.py`, on the same evaluation suite; snapshots left out), and prints, per hypothesis,
its threshold, on how many seeds it holds, and each seed that breaks it with its value. A hypothesis that breaks
on some seeds is a finding about the recipe, not a threshold to lower. --publish writes every seed's verdicts to
<task>/across_seeds/claims_<recipe>.csv (--recipe=NAME, default "default"), which the notebook's "Across seeds"
section reads.
"""
import argparse
import importlib
import re
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import CheckpointError, load_checkpoint  # noqa: E402
from shared.published import MEASURED, claims_path, hypotheses_table, measurements_table_across, task_names  # noqa: E402
from shared.tasks import evaluation_suite  # noqa: E402
from shared.tools.sweep import parse_seeds, write_csv  # noqa: E402


def checkpoints(folder: Path, seeds=None) -> dict:
    """{seed: path} of the folder's seed<k>.pt files (only `seeds`, each required, when given)."""
    found = {int(m[1]): p for p in folder.glob("seed*.pt") if (m := re.fullmatch(r"seed(\d+)\.pt", p.name))}
    if seeds is None:
        return dict(sorted(found.items()))
    missing = [s for s in seeds if s not in found]
    if missing:
        raise SystemExit(f"error: no seed<k>.pt in {folder} for seed(s) {', '.join(map(str, missing))}")
    return {s: found[s] for s in seeds}


def across(task_name: str, paths: dict, progress: bool = True, size: int = 2000, uniform_size: int = 100_000) -> dict:
    """{seed: ([Claim, ...], [Measurement, ...])} for each checkpoint, by the task's checkpoint_record on one
    evaluation suite per shape (size and uniform_size: the notebook's, by default)."""
    module = importlib.import_module(f"{task_name}.analysis")
    dataset = importlib.import_module(f"{task_name}.dataset")
    suites, found = {}, {}
    for seed, path in tqdm(paths.items(), desc=f"{task_name} claims", disable=not progress):
        try:
            model = load_checkpoint(path, task=task_name)
        except CheckpointError as error:
            raise SystemExit(f"error: {error}") from None
        shape = (model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
        if shape not in suites:
            suites[shape] = evaluation_suite(dataset.task(*shape), size, uniform_size)
        found[seed] = module.checkpoint_record(model, suites[shape])
    return found


def rows(found: dict) -> list:
    """One row per (seed, hypothesis or measurement): what --publish writes."""
    out = []
    for seed, (claims, measured) in found.items():
        out += [{"seed": seed, "key": c.key, "value": c.value, "op": c.op, "threshold": c.threshold, "unit": c.unit,
                 "verdict": c.verdict} for c in claims]
        out += [{"seed": seed, "key": m.key, "value": m.value, "op": "", "threshold": None, "unit": m.unit,
                 "verdict": MEASURED} for m in measured if isinstance(m.value, (int, float))]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=task_names())
    parser.add_argument("folder", type=Path, help="a folder of seed<k>.pt checkpoints (a sweep's, or training.py's)")
    parser.add_argument("--seeds", help="only these seeds, e.g. 0-19 or 0,2,5-7 (default: every seed<k>.pt there)")
    parser.add_argument("--publish", action="store_true", help="write <task>/across_seeds/claims_<recipe>.csv")
    parser.add_argument("--recipe", default="default", help="the recipe the seeds were trained with (for --publish)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder} is not a folder")
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    paths = checkpoints(args.folder, seeds)
    if not paths:
        raise SystemExit(f"error: no seed<k>.pt in {args.folder}")
    found_rows = rows(across(args.task, paths))
    print(hypotheses_table(found_rows) + "\n\n" + measurements_table_across(found_rows))
    if args.publish:
        write_csv(claims_path(args.task, args.recipe), found_rows)
        print(f"published {claims_path(args.task, args.recipe)}")


if __name__ == "__main__":
    main()
