"""find_median's mechanism classes: the names shared.mechanisms.classify gives a model from its measures, the
thresholds, and the circuit each class's explanation states (for its faithfulness)."""
from shared.components import components, is_mlp, parse
from shared.mechanisms import SELECTOR_ON_ANSWER, Circuit, Mechanism, neighbourhood, spread_table

SELECTOR_ON_NEIGHBOURHOOD = Circuit("every path, the selector attending only to the answer and its nearest values "
                                    "either side", lambda model, selector: components(model), neighbourhood)
LAYER0_HEADS_AND_MLPS = Circuit("layer-0 heads and every MLP (later heads resampled)", lambda model, selector: [
    c for c in components(model) if parse(c)[0] == 0 or is_mlp(c)])
LAYER0_HEADS = Circuit("layer-0 heads alone (everything else resampled)", lambda model, selector: [
    c for c in components(model) if parse(c)[0] == 0 and not is_mlp(c)])

# The mechanism classes of shared.mechanisms.classify, checked in order. Each threshold sits in a gap between
# clusters measured on 60 seeds of three recipes of the earlier d_model-64 default (--d_mlp=None and --embed_std=1.0
# too) and on the averaging baseline, 4,000 uniform lists each:
# - selector_dla: seeds whose most-on-the-median head writes the answer 0.78-1.00; where it does not, 0.21-0.40.
# - answer_attention of those writing heads: 0.79-0.99, and one seed at 0.43 (nothing between); heads of the
#   averaging seeds and the baseline 0.14 (the median's share of positions), one idle layer-1 head 0.41.
# - neighbourhood_attention: the 0.43 seed 0.81; averaging heads 0.40-0.52; selecting heads >= 0.98.
# - mlp_dla of the seeds whose heads do not write the answer: 0.84-0.98.
# The d_model-32 recipes (across_seeds/*.csv) fall on the same sides: selecting seeds answer_attention
# 0.60-0.79 (those selecting softly 0.49-0.59), selector_dla 0.84-1.00; the one averaging seed 0.14 and 0.20; one
# unit-std seed (0.34, 0.76) fits none.
MECHANISMS = [
    Mechanism("selects in layer {selector_layer}",
              {"answer_attention": (">=", 0.6), "selector_dla": (">=", 0.6)},
              "a later head finds the median by its QK circuit, reading what layer 0 gathered, puts most of SEP's "
              "attention on it and copies it to the logits through its OV circuit",
              circuit=SELECTOR_ON_ANSWER),
    Mechanism("selects softly in layer {selector_layer}",
              {"neighbourhood_attention": (">=", 0.7), "selector_layer": (">=", 1), "selector_dla": (">=", 0.6)},
              "a later head spreads SEP's attention over the median and its nearest values either side, and the "
              "mixture it copies peaks on the median",
              circuit=SELECTOR_ON_NEIGHBOURHOOD),
    Mechanism("averages, decodes in the MLPs",
              {"selector_dla": ("<", 0.6), "mlp_dla": (">=", 0.8)},
              "no head writes the answer: the heads average the list and the MLPs turn the average into the "
              "median's logit", circuit=LAYER0_HEADS_AND_MLPS),
    Mechanism("averages, reads the answer off the OV circuit",
              {"answer_attention": ("<", 0.6), "attention_dla": (">=", 0.9)},
              "no head attends to the median; the heads average the list and their OV circuits write "
              "-|v - m| for each value v, whose sum peaks at the median (the averaging baseline)",
              circuit=LAYER0_HEADS),
]


MLP0_MEASURES = ("mlp0_important", "mlp0_step_share", "mlp0_indicator_share", "mlp0_step_r2", "mlp0_thresholds",
                 "mlp0_threshold_low", "mlp0_threshold_high")


def mlp0_measures(model, suite) -> dict:
    """The reading of MLP 0 (find_median.mlp0.read_mlp0, on 1,000 uniform lists) as a few numbers per seed: how
    many neurons are important, the share of them that are steps and that are median indicators (turning on at
    k + 1 values), the steps' median R^2, and how many distinct median thresholds there are and where they sit.
    None where MLP 0 cannot be read (no MLP, LayerNorm, several heads)."""
    from find_median.mlp0 import median_indicator_share, median_thresholds, read_mlp0, step_summary
    try:
        reading = read_mlp0(model)
    except ValueError:
        return dict.fromkeys(MLP0_MEASURES)
    summary, cuts = step_summary(reading), median_thresholds(reading)
    return dict(zip(MLP0_MEASURES, (
        summary["important"], summary["step_share"], median_indicator_share(reading), summary["step_r2"], len(cuts),
        cuts.min().item() if len(cuts) else None, cuts.max().item() if len(cuts) else None)))


def shows_step_reading(row) -> bool:
    """Whether a seed's MLP 0 reads as section 5c says: every important neuron a step (as mlp0_steps states), at
    least one of them a median indicator."""
    return row["mlp0_step_share"] >= 1.0 and row["mlp0_indicator_share"] > 0


def step_reading_tables(recipes: dict) -> str:
    """Markdown, per published recipe and class (shared.published.published), over the seeds whose MLP 0 can be read:
    how many show the step reading, then how tightly MLP0_MEASURES cluster."""
    parts = []
    for recipe_name, recipe in recipes.items():
        for name in sorted({row["mechanism"] for row in recipe["rows"]}):
            rows = [r for r in recipe["rows"] if r["mechanism"] == name and r.get("mlp0_important") is not None]
            if rows:
                parts.append(f"**{recipe_name}, {name}**: {sum(map(shows_step_reading, rows))}/{len(rows)} seeds show "
                             "the step reading\n\n" + spread_table(rows, list(MLP0_MEASURES)))
    return "\n\n".join(parts)


TASK_MEASURES = mlp0_measures  # shared.sweep adds these to every seed's summary row
