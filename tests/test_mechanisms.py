"""shared.mechanisms: the measures and classes on models whose mechanism is known by construction, and the
committed across-seeds summaries against the checkpoints they publish."""
import importlib

import pytest
from handbuilt import (median_averaging_model, median_batch, median_mlp_decoder_model, median_selector_model,
                       min_batch, min_model)

import find_median.mechanisms as median_mechanisms
import find_min.mechanisms as min_mechanisms
from shared.checkpoint import load_checkpoint
from shared.mechanisms import (MEASURE_LISTS, UNCLASSIFIED, class_faithfulness, classify,
                               mechanism_measures, mechanism_of, meaning, measures_on, spread_table)
from shared.model import Config, Transformer
from shared.published import class_count_table, published, task_names
from shared.tasks import Families, evaluation_suite
from shared.tasks import evaluate
from shared.verify import verify

MEDIAN_CASES = [
    (median_selector_model, "selects in layer 1", {"answer_attention": 1.0, "selector_dla": 1.0}),
    (median_averaging_model, "averages, reads the answer off the OV circuit", {"attention_dla": 1.0}),
    (median_mlp_decoder_model, "averages, decodes in the MLPs", {"mlp_dla": 1.0, "attention_dla": 0.1}),
]


@pytest.mark.parametrize("build, expected, known", MEDIAN_CASES, ids=[c[1] for c in MEDIAN_CASES])
def test_hand_built_median_models_get_their_class(build, expected, known):
    model = build()
    tokens, targets = median_batch(2000)
    assert evaluate(model, tokens, targets)[1] == 1.0  # each one computes the median exactly
    measures = mechanism_measures(model, tokens, targets)
    assert classify(measures, median_mechanisms.MECHANISMS) == expected
    for name, value in known.items():  # the measures that decide the class, as the construction sets them
        assert measures[name] == pytest.approx(value, abs=0.1), name
    if "averages" in expected:  # an averaging head puts on the median only its share of positions
        share = (tokens[:, :-1] == targets[:, None]).float().sum(1).mean().item() / tokens.shape[1]
        assert measures["answer_attention"] == pytest.approx(share, abs=1e-4)
    assert meaning(expected, median_mechanisms.MECHANISMS) != meaning(UNCLASSIFIED, median_mechanisms.MECHANISMS)


def test_a_soft_hand_built_selector_is_named_soft():
    """The selector with a blunt QK (a score step of 0.3 per unit of sum |x_i - x|) spreads SEP's attention
    over the median and its neighbours: the soft class, and its explanation (attention restricted to that
    neighbourhood) recovers the loss."""
    model = median_selector_model(sharpness=0.3)
    tokens, targets = median_batch(2000)
    measures = mechanism_measures(model, tokens, targets)
    assert measures["answer_attention"] < 0.6 and measures["neighbourhood_attention"] > 0.9
    name = classify(measures, median_mechanisms.MECHANISMS)
    assert name == "selects softly in layer 1"
    description, results = class_faithfulness(model, mechanism_of(name, median_mechanisms.MECHANISMS), measures,
                                              Families({"u": (tokens, targets)}, {"uniform": "u"}))
    assert "nearest values" in description and results["u"]["loss recovered"] >= 0.95


def test_hand_built_min_model_selects_and_an_untrained_model_is_unclassified():
    tokens, targets = min_batch(2000)
    measures = mechanism_measures(min_model(), tokens, targets)
    assert classify(measures, min_mechanisms.MECHANISMS) == "one head selects in layer 0"
    assert measures["selector_ablated"] < 0.5
    untrained = Transformer(Config(n_ctx=5, d_vocab=9, d_vocab_out=8, d_model=16, d_head=16)).eval()
    measures = mechanism_measures(untrained, tokens, targets)
    assert measures["answer_attention"] < 0.5
    assert classify(measures, min_mechanisms.MECHANISMS) == UNCLASSIFIED


def test_class_faithfulness_of_the_right_and_a_wrong_explanation():
    tokens, targets = median_batch(2000)
    model = median_selector_model(distractor=True)
    measures = mechanism_measures(model, tokens, targets)
    right = mechanism_of(classify(measures, median_mechanisms.MECHANISMS), median_mechanisms.MECHANISMS)
    description, results = class_faithfulness(model, right, measures, Families({"u": (tokens, targets)}, {"uniform": "u"}))
    assert "selector attending only to the answer" in description
    assert results["u"]["loss recovered"] == pytest.approx(1.0, abs=0.01)
    averaging = median_mechanisms.MECHANISMS[2]  # "layer-0 heads alone": wrong for this model
    _, results = class_faithfulness(model, averaging, measures, Families({"u": (tokens, targets)}, {"uniform": "u"}))
    assert results["u"]["loss recovered"] < 0.5


def test_spread_table():
    rows = [{"answer_attention": a, "selector_dla": 1.0} for a in (0.9, 0.8, 0.95)]
    table = spread_table(rows, ["answer_attention"])
    assert "| answer_attention | 0.800 | 0.900 | 0.950 | 0.150 |" in table


TASKS = {task: importlib.import_module(f"{task}.dataset") for task in task_names()}
MECHANISMS = {task: importlib.import_module(f"{task}.mechanisms").MECHANISMS for task in task_names()}


@pytest.mark.parametrize("task", [task for task in TASKS if published(task)])
def test_published_representatives_are_what_their_summary_says(task):
    recipes = published(task)
    assert "default" in recipes and all(len(r["rows"]) == 20 for r in recipes.values())
    suite = evaluation_suite(TASKS[task].task(), size=200, uniform_size=MEASURE_LISTS)  # the sweep's first lists
    for name, recipe in recipes.items():
        rows = {row["seed"]: row for row in recipe["rows"]}
        for cls, path in recipe["representatives"].items():
            seed = int(path.stem.rsplit("seed", 1)[1])
            row = rows[seed]
            assert row["mechanism"] == cls and seed == min(s for s, r in rows.items() if r["mechanism"] == cls)
            model = load_checkpoint(path, task=task)
            measures = measures_on(model, suite)
            assert classify(measures, MECHANISMS[task]) == cls, (name, seed)
            for key in ("answer_attention", "selector_dla"):  # another machine's floats: a tolerance
                assert measures[key] == pytest.approx(row[key], abs=0.01), (name, seed, key)
            # the published verdict on every input is the verifier's on this checkpoint (the default recipe's: on
            # several heads the verifier takes seconds, and tests/test_verify.py checks it there)
            if "verified" in row and name == "default":
                assert verify(model, TASKS[task].task()).status == row["verified"], (name, seed)


def test_the_class_table_names_each_recipe_against_training_py_as_it_is():
    """Each recipe's row: its name, 'training.py's values' and, after ' but ', exactly what it changes from them
    (a user's inline edit turns the default into a recipe with changes); its seeds counted per class by hand."""
    recipes = published("find_median")
    assert len(recipes) >= 2  # the default and the recipe it is compared with
    table = class_count_table(recipes).splitlines()
    for name, recipe in recipes.items():
        cells = next(line for line in table if line.startswith(f"| {name}: training.py's values")).split(" | ")
        assert (" but " in cells[0]) == bool(recipe["changes"])
        assert all(f"`--{key}={value}`" in cells[0] for key, value in recipe["changes"].items())
        assert cells[1] == str(len(recipe["rows"]))
        for mechanism in {row["mechanism"] for row in recipe["rows"]}:
            count = sum(row["mechanism"] == mechanism for row in recipe["rows"])
            assert f"{count}/{len(recipe['rows'])} {mechanism}" in cells[2]
