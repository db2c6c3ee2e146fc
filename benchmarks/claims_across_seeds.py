"""Do the notebook's claims hold on every seed of a recipe, or only on the committed model?

    python -m shared.sweep find_median --seeds=0-19 --folder=/tmp/median   # or training.py --out=.../seed<k>.pt
    python benchmarks/claims_across_seeds.py find_median /tmp/median
    python benchmarks/claims_across_seeds.py find_min /tmp/min --seeds=0-9

Reads every seed<k>.pt in the folder (or the seeds named), computes the task's claims on each exactly as its
notebook does (`<task>/claims.py`, on the same evaluation suite), and prints, per seed, the claims that fail, then
per claim its threshold and the lowest and highest value over the seeds. A claim whose threshold sits close to the
lowest seed's value is one that a retrain (another seed, or another machine's floats) may turn to FAILS.
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
from shared.sweep import parse_seeds, task_names  # noqa: E402
from shared.tasks import evaluation_suite  # noqa: E402


def checkpoints(folder: Path, seeds=None) -> dict:
    """{seed: path} of the folder's seed<k>.pt files (only `seeds`, each required, when given)."""
    found = {int(m[1]): p for p in folder.glob("seed*.pt") if (m := re.fullmatch(r"seed(\d+)\.pt", p.name))}
    if seeds is None:
        return dict(sorted(found.items()))
    missing = [s for s in seeds if s not in found]
    if missing:
        raise SystemExit(f"error: no seed<k>.pt in {folder} for seed(s) {', '.join(map(str, missing))}")
    return {s: found[s] for s in seeds}


def across(task_name: str, paths: dict, progress: bool = True) -> dict:
    """{seed: [Claim, ...]} for each checkpoint, by the task's checkpoint_claims on one evaluation suite per shape."""
    module = importlib.import_module(f"{task_name}.claims")
    dataset = importlib.import_module(f"{task_name}.dataset")
    suites, found = {}, {}
    for seed, path in tqdm(paths.items(), desc=f"{task_name} claims", disable=not progress):
        try:
            model = load_checkpoint(path, task=task_name)
        except CheckpointError as error:
            raise SystemExit(f"error: {error}") from None
        shape = (model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
        if shape not in suites:
            suites[shape] = evaluation_suite(dataset.task(*shape))
        found[seed] = module.checkpoint_claims(model, suites[shape])
    return found


def report(found: dict) -> str:
    """Markdown: the failing claims per seed, then each claim's range over the seeds against its threshold."""
    lines = [f"{sum(all(c.holds for c in claims) for claims in found.values())} of {len(found)} seeds hold every "
             "claim", "", "| seed | claims holding | failing |", "|---:|---:|---|"]
    for seed, claims in found.items():
        failing = [c.key for c in claims if not c.holds]
        lines.append(f"| {seed} | {len(claims) - len(failing)}/{len(claims)} | {', '.join(failing) or '-'} |")
    lines += ["", "| claim | threshold | lowest | highest | seeds holding |", "|---|---|---:|---:|---:|"]
    first = next(iter(found.values()))
    for i, claim in enumerate(first):
        rows = [claims[i] for claims in found.values() if len(claims) > i and claims[i].key == claim.key]
        values = [c.value for c in rows if c.value is not None]
        low, high = (claim.show(min(values)), claim.show(max(values))) if values else ("n/a", "n/a")
        lines.append(f"| {claim.key} | {claim.op} {claim.show(claim.threshold)} | {low} | {high} | "
                     f"{sum(c.holds for c in rows)}/{len(rows)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=task_names())
    parser.add_argument("folder", type=Path, help="a folder of seed<k>.pt checkpoints (a sweep's, or training.py's)")
    parser.add_argument("--seeds", help="only these seeds, e.g. 0-19 or 0,2,5-7 (default: every seed<k>.pt there)")
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
    print(report(across(args.task, paths)))


if __name__ == "__main__":
    main()
