"""What a task's across_seeds/ folder holds, written by `python -m shared.tools.sweep ... --publish` and read for the
notebooks, README and tests: each sweep's summary (<recipe>.csv), one checkpoint per mechanism class
(<recipe>_seed<k>.pt), and, with --hypotheses, every hypothesis's verdict on every seed (hypotheses_<recipe>.csv).
"""
import csv
import importlib
import io
import shutil
from collections import Counter
from pathlib import Path

from .checkpoint import CheckpointError, atomic_write, load_checkpoint
from .hypotheses import FAILS, HOLDS, shown
from .tables import markdown_table, pct

MEASURED = "measured"  # the verdict column of a measurement's rows
ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = "across_seeds"  # <task>/across_seeds/
NOT_RECIPE = ("seed", "out", "snapshots", "device")  # set per run, not part of a recipe
KINDS = (bool, int, float, str, type(None))  # what a hyperparameter's value may be


def task_names() -> list:
    """Every task of the repository, found by convention: a folder beside shared/ holding dataset.py and
    training.py (copy a task's folder, and the sweep, the README tables and the tests find it)."""
    return sorted(p.parent.name for p in ROOT.glob("*/training.py") if (p.parent / "dataset.py").is_file())


def hyperparameters(g: dict) -> dict:
    """The plain-valued, public names of a script's globals: its hyperparameters, what --name=value may override."""
    return {k: v for k, v in g.items() if not k.startswith("_") and type(v) in KINDS}


def defaults(task: str) -> dict:
    """training.py's hyperparameters."""
    return hyperparameters(vars(importlib.import_module(f"{task}.training")))


def differences(before: dict, after: dict) -> dict:
    """{name: (before's value, after's)} of the hyperparameters `after` sets otherwise, those set per run aside."""
    return {k: (before.get(k), v) for k, v in after.items() if k not in NOT_RECIPE and before.get(k) != v}


def trained_otherwise(path, params: dict):
    """differences(the hyperparameters the checkpoint at `path` was trained with, `params`): {} when the same; None
    when there is no readable checkpoint there."""
    try:
        return differences(load_checkpoint(path).metadata["hyperparameters"], params)
    except (CheckpointError, KeyError):
        return None


def read_csv(path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def typed(text: str):
    """A CSV cell back as the number, boolean, None or string it was written from."""
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
    """A sweep's summary.csv as rows of numbers, booleans, None and strings."""
    return [{k: typed(v) for k, v in row.items()} for row in read_csv(Path(path))]


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
    """{recipe: {"rows": its summary's rows, "changes": the hyperparameters that differ from training.py's
    defaults (read from a representative checkpoint), "representatives": {class: checkpoint path}}}, the default
    recipe first."""
    folder = ROOT / task / PUBLISHED
    found = {}
    for path in sorted(folder.glob("*.csv"), key=lambda p: (p.stem != "default", p.stem)):
        if path.stem.startswith("hypotheses_"):
            continue
        rows = load_summary(path)
        reps = {name: folder / f"{path.stem}_seed{seed}.pt" for name, seed in representatives(rows).items()}
        saved = load_checkpoint(next(iter(reps.values()))).metadata["hyperparameters"]
        changes = {k: new for k, (_, new) in differences(defaults(task), saved).items()}
        found[path.stem] = {"rows": rows, "changes": changes, "representatives": reps}
    return found


def recipe_label(name: str, changes: dict) -> str:
    """'two_heads: training.py's values but `--n_heads=2`': a recipe against training.py as it is now (edited or not)."""
    return f"{name}: training.py's values" + (" but " + " ".join(f"`--{k}={v}`" for k, v in changes.items())
                                               if changes else "")


def class_count_text(rows: list) -> str:
    """'12/20 selects in layer 1, 7/20 ...': the classes of a summary's rows, the most common first."""
    return ", ".join(f"{count}/{len(rows)} {name}" for name, count in class_counts(rows).items())


def verified_text(rows: list) -> str:
    """'18/20 proved, 2/20 refuted': the verifier's verdicts over a summary's rows."""
    if any("verified" not in row for row in rows):
        return "-"
    return ", ".join(f"{count}/{len(rows)} {status}" for status, count in
                     Counter(row["verified"] for row in rows).most_common())


def class_count_table(recipes: dict) -> str:
    """Markdown, one row per published recipe: seeds, how many fall in each mechanism class, the weakest-family
    accuracy over seeds (lowest and median), and how many are proved right on every input."""
    rows = []
    for name, recipe in recipes.items():
        weakest = sorted(r["weakest accuracy"] for r in recipe["rows"])
        rows.append([recipe_label(name, recipe["changes"]), len(recipe["rows"]), class_count_text(recipe["rows"]),
                     pct(weakest[0]), pct(weakest[len(weakest) // 2]), verified_text(recipe["rows"])])
    return markdown_table(["recipe", "seeds", "mechanism classes", "weakest family, lowest seed",
                           "weakest family, median seed", "right on every input (shared.verify)"], rows, "lrlrrl")


def write_csv(path, rows: list):
    """The rows (dicts with the same keys) as a CSV file, written atomically (shared.checkpoint.atomic_write)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def publish(folder: Path, name: str, rows: list, hypotheses: list, out: Path) -> list:
    """Write a sweep's summary rows to out/<name>.csv, its hypothesis rows (if any) to out/hypotheses_<name>.csv, and
    copy the lowest seed of each class to out/<name>_seed<k>.pt (what <task>/across_seeds/ commits), replacing an
    earlier publication of the same name. Returns the paths written."""
    for old in Path(out).glob(f"{name}_seed*.pt"):
        old.unlink()
    written = [Path(out) / f"{name}.csv"] + ([Path(out) / f"hypotheses_{name}.csv"] if hypotheses else [])
    for path, table in zip(written, (rows, hypotheses)):
        write_csv(path, table)
    for seed in representatives(rows).values():
        written.append(Path(out) / f"{name}_seed{seed}.pt")
        shutil.copyfile(Path(folder) / f"seed{seed}.pt", written[-1])
    return written


def hypothesis_rows(seed: int, record: dict) -> list:
    """A notebook's hypotheses record (shared.hypotheses) as rows {seed, key, value, op, threshold, unit, verdict}, its
    measurements (a number each) after them with verdict 'measured'."""
    return ([{"seed": seed, **{k: h[k] for k in ("key", "value", "op", "threshold", "unit", "verdict")}}
             for h in record["hypotheses"]] +
            [{"seed": seed, "key": m["key"], "value": m["value"], "op": "", "threshold": None, "unit": m["unit"],
              "verdict": MEASURED} for m in record["measurements"] if m["value"] is not None])


def hypotheses_path(task: str, recipe: str = "default") -> Path:
    return ROOT / task / PUBLISHED / f"hypotheses_{recipe}.csv"


def hypotheses_across_seeds(task: str, recipe: str = "default") -> list:
    """Every hypothesis's verdict on every seed of a recipe: rows {seed, key, value, op, threshold, unit, verdict}."""
    path = hypotheses_path(task, recipe)
    return load_summary(path) if path.is_file() else []


def hypotheses_table(rows: list) -> str:
    """Markdown from hypotheses-across-seeds rows ({seed, key, value, op, threshold, unit, verdict}): per hypothesis, its
    threshold, on how many seeds it holds (of those where it is measured), and each seed that breaks it with its
    value; first a line counting the seeds that hold every hypothesis measured on them."""
    seeds = sorted({r["seed"] for r in rows})
    whole = sum(all(r["verdict"] != FAILS for r in rows if r["seed"] == s) for s in seeds)
    table = []
    for key in dict.fromkeys(r["key"] for r in rows if r["verdict"] != MEASURED):
        mine = [r for r in rows if r["key"] == key]
        measured = [r for r in mine if r["verdict"] in (HOLDS, FAILS)]
        broken = ", ".join(f"seed {r['seed']} ({shown(r['value'], r['unit'] or '')})" for r in measured
                           if r["verdict"] == FAILS) or "-"
        unmeasured = f" ({len(mine) - len(measured)} not measured)" if len(measured) < len(mine) else ""
        table.append([key, threshold_text(mine),
                      f"{sum(r['verdict'] == HOLDS for r in measured)}/{len(measured)}{unmeasured}", broken])
    return (f"{whole} of {len(seeds)} seeds hold every hypothesis measured on them\n\n" +
            markdown_table(["hypothesis", "threshold", "holds on", "seeds that break it (their value)"], table, "llrl"))


def threshold_text(rows: list) -> str:
    """A hypothesis's threshold over the seeds: one value, or its range where each model sets its own (a threshold
    computed from the model, such as a median step)."""
    unit = rows[0]["unit"] or ""
    thresholds = sorted({r["threshold"] for r in rows if r["threshold"] is not None})
    if len(thresholds) <= 1:
        return f"{rows[0]['op']} {shown(thresholds[0] if thresholds else None, unit)}"
    return f"{rows[0]['op']} its own per seed ({shown(thresholds[0], unit)} to {shown(thresholds[-1], unit)})"


def measurements_table_across(rows: list) -> str:
    """Markdown from hypotheses-across-seeds rows: each measurement's smallest, median and largest value over the seeds
    (the rows whose verdict is 'measured')."""
    table = []
    for key in dict.fromkeys(r["key"] for r in rows if r["verdict"] == MEASURED):
        values = sorted(r["value"] for r in rows if r["key"] == key and r["verdict"] == MEASURED and r["value"] is not None)
        unit = next(r["unit"] for r in rows if r["key"] == key) or ""
        if values:
            table.append([key, len(values)] + [shown(v, unit) for v in (values[0], values[len(values) // 2], values[-1])])
    return markdown_table(["measured (not a hypothesis)", "seeds", "smallest", "median", "largest"], table)


def summary_table(rows: list) -> str:
    """Markdown, per seed of a sweep: uniform accuracy, the weakest family, the class, steps and seconds to target."""
    uniform = next(k for k in rows[0] if k.startswith("uniform ("))  # the suite's fresh uniform sample
    seconds = lambda r: "-" if r["seconds to target"] is None else f"{r['seconds to target']:.1f}"
    return markdown_table(["seed", uniform, "weakest family", "weakest accuracy", "mechanism", "target reached",
                           "steps", "seconds to target"],
                          [[r["seed"], pct(r[uniform], 3), r["weakest family"], pct(r["weakest accuracy"]),
                            r["mechanism"], "yes" if r["target reached"] else "no", r["steps"], seconds(r)]
                           for r in rows], "rrlrllrr")


def write_sweep(folder: Path, name: str, results: dict, task=None) -> str:
    """A sweep's files from its seeds' results ({seed: (summary row, hypotheses record or None)}): summary.csv and
    hypotheses.csv in `folder` and, given `task`, the same in <task>/across_seeds/ (publish). Returns what to print: the
    summary table, how many seeds reached the target, the classes, each hypothesis's seeds, the files written."""
    rows = [row for row, _ in results.values()]
    hypotheses = [line for seed, (_, record) in results.items() if record for line in hypothesis_rows(seed, record)]
    written = [folder / "summary.csv"] + [folder / "hypotheses.csv"] * bool(hypotheses)
    for path, table in zip(written, (rows, hypotheses)):
        write_csv(path, table)
    written += publish(folder, name, rows, hypotheses, ROOT / task / PUBLISHED) if task else []
    text = (f"{summary_table(rows)}\n\n{sum(r['target reached'] for r in rows)}/{len(rows)} seeds reached the target; "
            f"mechanisms: {class_count_text(rows)}")
    text += f"\n\n{hypotheses_table(hypotheses)}\n\n{measurements_table_across(hypotheses)}" if hypotheses else ""
    return text + "\n\nwritten: " + ", ".join(map(str, written))


def recipe_hyperparameters(task: str, recipe: str = "default") -> dict:
    """The hyperparameters a published recipe's seeds were trained with (from its representative checkpoint), those
    set per run left out; {} when the recipe is not published."""
    found = published(task).get(recipe)
    if not found:
        return {}
    saved = load_checkpoint(next(iter(found["representatives"].values()))).metadata["hyperparameters"]
    return {k: v for k, v in saved.items() if k not in NOT_RECIPE}


def across_seeds_table(task: str, model, recipe: str = "default") -> str:
    """Markdown for a notebook's 'Across seeds' section: which recipe the published seeds are and whether the
    loaded model is one of them, then per hypothesis on how many seeds it holds and which seeds break it."""
    rows = hypotheses_across_seeds(task, recipe)
    if not rows:
        return f"No hypotheses published across seeds of the {recipe} recipe."
    changes = published(task)[recipe]["changes"]
    other = differences(model.metadata.get("hyperparameters", {}), recipe_hyperparameters(task, recipe))
    mine = ("The loaded model **is one of this recipe** (up to its seed)." if not other else
            "The loaded model is **not** of this recipe: " + ", ".join(f"`{k}` {a!r} here, {b!r} there"
                                                                      for k, (a, b) in other.items()) + ".")
    return (f"The seeds below are the **{recipe_label(recipe, changes)}** recipe. {mine}\n\n" +
            hypotheses_table(rows))
