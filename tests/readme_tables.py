"""The result tables in README.md, computed from the committed checkpoints.

    python tests/readme_tables.py   # rewrite the tables in README.md after a checkpoint changes

tests/test_readme.py recomputes every table and fails when README.md shows anything else, for the run README
documents: each table names its checkpoint's run id, and a checkpoint retrained since (another run id, on
another machine's floats) is not compared with it.
"""
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import load_checkpoint  # noqa: E402
from shared.cli import recipe_overrides  # noqa: E402
from shared.sweep import class_count_table, published, recipe_path, task_names  # noqa: E402
from shared.tasks import accuracy_table, evaluation_suite  # noqa: E402

TASKS = task_names()


def accuracy_block(task_name):
    model = load_checkpoint(ROOT / task_name / "checkpoints/model.pt")
    task = importlib.import_module(f"{task_name}.dataset").task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
    cfg, meta = model.cfg, model.metadata
    head = (f"Committed model (run `{meta.get('run_id', '?')}`): {cfg.n_layers} layer(s), {cfg.n_heads} head(s), d_model {cfg.d_model}, "
            f"{'MLP ' + str(cfg.d_mlp) if cfg.d_mlp else 'attention-only'}, "
            f"{'LayerNorm' if cfg.normalization_type else 'no LayerNorm'}; n = {task.n}, V = {task.V}; "
            f"{meta['history']['stopped_at']} steps.")  # no seconds: a retrain of the same run gives other times
    averaging = ROOT / task_name / "checkpoints/averaging.pt"
    if averaging.exists():  # the task's averaging baseline goes beside the model, on the same inputs
        recipe = recipe_path(task_name, "averaging")
        head += (f" Averaging baseline: `python {task_name}/training.py {recipe.relative_to(ROOT)}` "
                 f"({' '.join(recipe_overrides(recipe))}).")
        model = {"model": model, "averaging": load_checkpoint(averaging)}
    return head + "\n\n" + accuracy_table(model, evaluation_suite(task))


def run_ids(text):
    """{table name: the run id it documents} from README text."""
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- begin:(\S+) -->\s*Committed model \(run `(\w+)`\)", text)}


def current_run_ids():
    return {f"{t}-accuracy": load_checkpoint(ROOT / t / "checkpoints/model.pt").metadata.get("run_id")
            for t in TASKS if (ROOT / t / "checkpoints/model.pt").exists()}


def blocks():
    return {f"{t}-accuracy": accuracy_block(t) for t in TASKS if (ROOT / t / "checkpoints/model.pt").exists()}


def pattern(name):
    return re.compile(rf"(<!-- begin:{name} -->)(.*?)(<!-- end:{name} -->)", re.S)


def rewrite(text, computed):
    """README text with every table it has markers for rewritten (a task without markers is not documented)."""
    for name, body in computed.items():
        text, count = pattern(name).subn(lambda m: m.group(1) + "\n" + body + "\n" + m.group(3), text)
        if count > 1:
            raise SystemExit(f"README.md has several <!-- begin:{name} --> ... <!-- end:{name} --> markers")
    return text


def across_seeds_blocks():
    """The class counts of every published sweep (they document committed summaries, not a run id)."""
    return {f"{t}-across-seeds": class_count_table(published(t)) for t in TASKS if (ROOT / t / "across_seeds").exists()}


if __name__ == "__main__":
    readme = ROOT / "README.md"
    computed = {**blocks(), **across_seeds_blocks()}
    readme.write_text(rewrite(readme.read_text(), computed))
    print("README.md tables rewritten:", ", ".join(computed))
