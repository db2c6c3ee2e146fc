import subprocess
import sys
from pathlib import Path

import pytest

from shared.tools.cli import apply_overrides
from shared.tools.experiment import CLI_LIMITS

ROOT = Path(__file__).resolve().parent.parent


def defaults():
    return dict(n_layers=1, lr=1e-3, batch_size=64, weight_decay=0.0, d_mlp=None, normalization_type=None,
                act_fn="relu", compile=False, out="m.pt", target_accuracy=0.99, seed=0, _private=3, Path=Path)


def test_overrides_are_typed():
    g = defaults()
    params = apply_overrides(g, ["--lr=3e-3", "--n_layers=2", "--d_mlp=128", "--normalization_type=LN",
                                 "--compile=true", "--weight_decay=0", "--out=x.pt"], **CLI_LIMITS)
    assert g["lr"] == 3e-3 and g["n_layers"] == 2 and g["d_mlp"] == 128 and g["compile"] is True
    assert g["normalization_type"] == "LN" and g["weight_decay"] == 0.0 and g["out"] == "x.pt"
    assert "_private" not in params and "Path" not in params
    assert apply_overrides(defaults(), ["--d_mlp=None"], **CLI_LIMITS)["d_mlp"] is None


@pytest.mark.parametrize("arg, message", [
    ("--lr=abc", "--lr=abc: expected a number > 0"),
    ("--lr=-1", "--lr=-1: expected a number > 0"),
    ("--lr=nan", "--lr=nan: expected a number > 0"),
    ("--n_layers=-1", "--n_layers=-1: expected an integer >= 1"),
    ("--n_layers=1.5", "--n_layers=1.5: expected an integer >= 1"),
    ("--batch_size=0", "--batch_size=0: expected an integer >= 1"),
    ("--weight_decay=-0.1", "--weight_decay=-0.1: expected a number >= 0"),
    ("--target_accuracy=1.5", "expected a number > 0 and <= 1.0"),
    ("--d_mlp=wide", "--d_mlp=wide: expected an integer >= 1"),
    ("--normalization_type=RMS", "expected one of LN, None"),
    ("--compile=maybe", "expected true or false"),
    ("--no_such_option=3", "--no_such_option: unknown option; known: n_layers, lr"),
    ("lr=3", "expected --name=value"),
    ("--seed=12345678901234567890", "--seed=12345678901234567890: expected an integer >= 0 and <= 4611686018427387904"),
])
def test_bad_values_exit_with_one_line(arg, message):
    with pytest.raises(SystemExit) as info:
        apply_overrides(defaults(), [arg], **CLI_LIMITS)
    assert message in str(info.value.code) and "\n" not in str(info.value.code)


@pytest.mark.parametrize("task, arg, option", [("find_min", "--lr=abc", "--lr"),
                                               ("find_median", "--no_such_option=3", "--no_such_option")])
def test_training_script_rejects_bad_values_and_writes_nothing(task, arg, option, tmp_path):
    script = ROOT / task / "training.py"
    out = tmp_path / "model.pt"
    run = subprocess.run([sys.executable, str(script), f"--out={out}", arg], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], run.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_recipe_file_is_a_list_of_overrides(tmp_path):
    recipe = tmp_path / "wide.py"
    recipe.write_text("# a comment\nd_mlp = 512\nnormalization_type = 'LN'\ncompile = True\nlr = 1e-2\n")
    params = apply_overrides(defaults(), [str(recipe), "--lr=3e-3"], **CLI_LIMITS)  # later arguments win
    assert params["d_mlp"] == 512 and params["normalization_type"] == "LN" and params["compile"] is True
    assert params["lr"] == 3e-3
    for text, message in [("import os\n", "line 1: expected name = a number"),
                          ("d_mlp = int('5')\n", "line 1: expected name = a number"),
                          ("n_layers = 'two'\n", "--n_layers=two: expected an integer >= 1"),
                          ("widht = 3\n", "--widht: unknown option")]:
        recipe.write_text(text)
        with pytest.raises(SystemExit, match=message):
            apply_overrides(defaults(), [str(recipe)], **CLI_LIMITS)


def test_every_committed_recipe_applies_to_its_training_script():
    import importlib

    from shared.tools.cli import hyperparameters
    from shared.published import task_names
    from shared.tools.cli import recipe_overrides
    unchanged = []
    for task in task_names():
        training = importlib.import_module(f"{task}.training")
        for recipe in sorted((ROOT / task / "recipes").glob("*.py")):
            params = apply_overrides(hyperparameters(vars(training)), [str(recipe)], **CLI_LIMITS)
            for name, value in (arg[2:].split("=", 1) for arg in recipe_overrides(recipe)):
                assert str(params[name]).lower() == value.lower(), (recipe, name)  # every assignment is applied
            unchanged += [recipe.name] if params == hyperparameters(vars(training)) else []
    if unchanged:  # the user edited training.py's top to what a recipe sets: the recipe is right, only redundant now
        pytest.skip(f"skipped: {', '.join(unchanged)} changes nothing from training.py as it is now (edited to the "
                    "recipe's values)")
