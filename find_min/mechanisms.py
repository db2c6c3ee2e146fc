"""find_min's mechanism classes: the names shared.mechanisms.classify gives a model from its measures, the
thresholds, and the circuit each class's explanation states (for its faithfulness)."""
from shared.mechanisms import SELECTOR_ALONE, SELECTOR_ON_ANSWER, Mechanism

# The mechanism classes of shared.mechanisms.classify, checked in order. Thresholds sit in gaps measured on 40
# seeds (across_seeds/*.csv: the default recipe and --n_heads=2), 4,000 uniform lists each:
# - answer_attention: 0.999-1.000 with one head, 0.88-0.94 with two; a head that ignores the values puts about
#   its share of positions on the minimum (0.1-0.2 for n = 10).
# - runner_up_attention (the second head most on the minimum): 0.84-0.92 with two heads, as both select; with
#   one head there is none (0). selector_ablated: one head 0.055-0.146 (chance: the most common minimum, ~0.15);
#   two heads 0.62-0.90, the other head carrying most of the answer. attention_dla: 1.000 on every seed.
MECHANISMS = [
    Mechanism("one head selects in layer {selector_layer}",
              {"answer_attention": (">=", 0.5), "selector_dla": (">=", 0.5), "runner_up_attention": ("<", 0.5)},
              "one head's QK circuit scores every value below the next, so SEP attends to the minimum, and its "
              "OV circuit copies it to the logits; without that head the model is at chance",
              circuit=SELECTOR_ALONE),
    Mechanism("heads share the selection in layer {selector_layer}",
              {"answer_attention": (">=", 0.5), "runner_up_attention": (">=", 0.5), "attention_dla": (">=", 0.9)},
              "more than one head attends to the minimum and copies it; the heads' outputs add up to the answer, "
              "and removing one leaves the others to carry most of it",
              circuit=SELECTOR_ON_ANSWER),
]
