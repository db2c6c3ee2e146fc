"""shared.faithfulness on models whose circuit is known by construction."""

import pytest
import torch
from handbuilt import median_batch, median_mlp_decoder_model, median_selector_model, min_batch, min_model

from shared.components import components
from shared.ablation import other_inputs
from shared.faithfulness import (attend_only, circuit_faithfulness, circuit_of, faithfulness_by_family,
                                 faithfulness_table, receivers, run_circuit)
from shared.model import Config, Transformer
from shared.tasks import Families, answer_positions
from shared.tasks import evaluate


def test_every_path_kept_is_the_model_itself():
    cfg = Config(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=32, n_ctx=6, d_vocab=9, d_vocab_out=8,
                 normalization_type="LN", seed=3)
    model = Transformer(cfg).eval()
    tokens, targets = min_batch(500, n=5, V=8)
    everything = circuit_of(model, components(model))
    assert run_circuit(model, tokens, targets, everything, other_inputs(tokens)) == pytest.approx(
        evaluate(model, tokens, targets), rel=1e-4)
    assert components(model) == ["L0H0", "L0H1", "L1H0", "L1H1", "MLP 0", "MLP 1"]
    assert ("L0H0", "L1H1.k") in everything and ("L1H0", "L0H0.q") not in everything  # only forward paths


def test_the_true_circuit_recovers_everything_and_one_missing_head_does_not():
    model = median_selector_model(distractor=True)
    tokens, targets = median_batch(2000)
    true = circuit_faithfulness(model, tokens, targets, circuit_of(model, ["L0H0", "L1H0"]), completeness=True)
    assert true["model"][1] == 1.0 and true["all ablated"][1] < 0.5
    assert true["loss recovered"] == pytest.approx(1.0, abs=0.01) and true["circuit"][1] == 1.0
    for component, (model_without, circuit_without) in true["without"].items():  # complete: same cost in both
        assert circuit_without == pytest.approx(model_without, abs=0.02) and model_without < 0.5, component
    missing = circuit_faithfulness(model, tokens, targets, circuit_of(model, ["L1H0"]))
    assert missing["loss recovered"] < 0.5 and missing["circuit"][1] < 0.6


def test_paths_the_true_ones_and_one_missing():
    model = median_selector_model()
    tokens, targets = median_batch(2000)
    paths = {("L0H0", "L1H0.q"), ("L1H0", "logits")}  # the query reads the average; the copy reaches W_U
    assert circuit_faithfulness(model, tokens, targets, paths)["loss recovered"] == pytest.approx(1.0, abs=0.01)
    no_query = circuit_faithfulness(model, tokens, targets, {("L1H0", "logits")})
    assert no_query["loss recovered"] < 0.5
    with pytest.raises(ValueError, match="not a component or receiver"):
        run_circuit(model, tokens, targets, {("L0H0", "L1H0.x")}, tokens)
    assert "L1H0.q" in receivers(model) and "logits" in receivers(model)


def test_a_forced_pattern_as_the_explanation():
    model = min_model()
    tokens, targets = min_batch(2000)
    result = circuit_faithfulness(model, tokens, targets, circuit_of(model, ["L0H0"]),
                          attention=attend_only("L0H0", answer_positions(tokens, targets)))
    assert result["loss recovered"] >= 0.99 and result["circuit"][1] == 1.0
    wrong = circuit_faithfulness(model, tokens, targets, circuit_of(model, ["L0H0"]),  # "attends to position 0"
                         attention=attend_only("L0H0", torch.nn.functional.one_hot(
                             torch.zeros(len(tokens), dtype=torch.long), 4).bool()))
    assert wrong["loss recovered"] < 0.5


def test_mlp_decoder_needs_both_components_and_by_family_table():
    model = median_mlp_decoder_model()
    tokens, targets = median_batch(1000)
    suite = Families({"a": (tokens, targets), "b": median_batch(1000, seed=1)}, {"a": "a", "b": "b"})
    results = faithfulness_by_family(model, suite, circuit_of(model, ["MLP 0"]))
    assert all(r["loss recovered"] < 0.5 for r in results.values())
    assert faithfulness_table(results).count("\n") == 3
    full = faithfulness_by_family(model, suite, circuit_of(model, ["L0H0", "MLP 0"]),
                                  attention_of=None)
    assert all(r["loss recovered"] == pytest.approx(1.0) for r in full.values())
    assert attend_only("L0H0", answer_positions(tokens, targets))["L0H0"].shape == (1000, 5)


def test_other_inputs_moves_every_row_and_refuses_one():
    tokens = torch.arange(50)[:, None]
    other = other_inputs(tokens, seed=4)
    assert (other != tokens).all() and sorted(other.flatten().tolist()) == list(range(50))
    with pytest.raises(ValueError, match="at least two"):
        other_inputs(tokens[:1])
    with pytest.raises(ValueError, match="no component"):
        circuit_of(min_model(), ["L0H1"])


def test_restricting_attention_to_keys_the_head_ignores_stays_finite():
    """A head so sharp that its weight on the stated keys underflows to 0: the restricted pattern spreads
    evenly over them instead of dividing 0 by 0 (which made the loss NaN)."""
    model = min_model(c=1000.0)
    tokens, targets = min_batch(500)
    not_min = (tokens[:, :-1] != targets[:, None])  # every key but the minimum's
    loss, accuracy = run_circuit(model, tokens, targets, circuit_of(model, ["L0H0"]), other_inputs(tokens),
                                 attention={"L0H0": not_min})
    assert loss == loss and loss > 0.1 and accuracy < 1.0  # finite, and the answer is lost as it should be
