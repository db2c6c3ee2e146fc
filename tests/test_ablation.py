"""shared.ablation, the one intervention primitive, on models whose answer is known by construction."""
import pytest
import torch
from handbuilt import median_batch, median_selector_model, min_batch, min_model

from shared.ablation import (Matched, Patch, ablated, ablated_accuracy, attention_one_hot, attention_restricted,
                             component_patch, matched_partners, other_inputs, path_ablated_accuracy, reads, run_from,
                             run_patched)
from shared.model import Config, Transformer
from shared.tasks import evaluate


@pytest.fixture(scope="module")
def model():
    return min_model(4, 8)


def test_zero_mean_and_resample_reach_known_accuracies(model):
    tokens, targets = min_batch(2000, 4, 8)
    assert evaluate(model, tokens, targets)[1] == 1.0
    # zeroed head: every logit is 0, argmax picks answer 0, right exactly when the min is 0
    assert ablated_accuracy(model, tokens, targets, ["L0H0"], "zero") == pytest.approx((targets == 0).float().mean().item())
    # mean ablation: the head always writes the mean one-hot, whose argmax is the commonest minimum
    assert ablated_accuracy(model, tokens, targets, ["L0H0"]) == pytest.approx(
        (targets == targets.mode().values).float().mean().item())
    # resample ablation: each input gets the answer of the other input it was resampled from
    others_answer = other_inputs(tokens)[:, :-1].min(-1).values
    assert ablated_accuracy(model, tokens, targets, ["L0H0"], "resample") == pytest.approx(
        (others_answer == targets).float().mean().item())
    with pytest.raises(ValueError, match="ablation method"):
        ablated_accuracy(model, tokens, targets, ["L0H0"], "erase")
    with pytest.raises(ValueError, match="no component 'L0H1'"):
        ablated_accuracy(model, tokens, targets, ["L0H1"])


def test_a_tensor_or_a_function_stands_in_for_an_activation(model):
    tokens, targets = min_batch(300, 4, 8, seed=2)
    hook = "blocks.0.attn.hook_result"
    _, cache = model.run_with_cache(tokens, names_filter=hook)
    same = run_patched(model, tokens, [Patch(hook, (Ellipsis,), cache[hook])], last_only=False)
    assert torch.allclose(same, model(tokens), atol=1e-6)  # the activation itself: nothing changes
    doubled = run_patched(model, tokens, [Patch(hook, (Ellipsis,), lambda act, run: 2 * act)])[:, -1]
    assert torch.allclose(doubled, 2 * model(tokens)[:, -1], atol=1e-5)  # the head is the only writer
    with pytest.raises(ValueError, match="source"):
        run_patched(model, tokens, [Patch(hook, (Ellipsis,), "erase")])


def test_attention_one_hot_and_restricted(model):
    tokens, targets = min_batch(500, 4, 8, seed=3)
    first = torch.zeros(len(tokens), dtype=torch.long)  # "attends to position 0": answers the first value
    logits = run_patched(model, tokens, [attention_one_hot(0, 0, first)])[:, -1]
    assert torch.equal(logits.argmax(-1), tokens[:, 0])
    not_first = torch.ones(len(tokens), 4, dtype=torch.bool)
    not_first[:, 0] = False
    logits = run_patched(model, tokens, [attention_restricted(0, 0, not_first)])[:, -1]
    assert torch.equal(logits.argmax(-1), tokens[:, 1:4].min(-1).values)


def test_matched_partners_share_the_key_and_are_others():
    key = torch.tensor([0, 1, 1, 2, 2, 2, 3, 0, 1])
    partner = matched_partners(key, seed=4)
    assert (key[partner] == key).all()
    assert partner[6] == 6  # alone with its key
    assert (partner[key != 3] != torch.arange(9)[key != 3]).all()


def test_matched_resampling_keeps_what_the_key_determines():
    cfg = Config(n_layers=2, n_heads=1, d_model=16, d_head=8, d_mlp=12, n_ctx=6, d_vocab=11, d_vocab_out=10, seed=3)
    model = Transformer(cfg).eval()
    tokens = torch.randint(0, 11, (60, 6), generator=torch.Generator().manual_seed(5))
    hook, clean = "blocks.0.hook_resid_post", model(tokens)[:, -1]
    doubled, key = torch.cat([tokens, tokens]), torch.cat([torch.arange(60), torch.arange(60)])
    # the key is the whole input: every partner is an identical input, nothing changes
    kept = run_patched(model, doubled, [Patch(hook, (slice(None), -1), Matched(key))])[:60, -1]
    assert torch.allclose(kept, clean, atol=1e-5)
    # a constant key resamples from other inputs: the output changes
    moved = run_patched(model, tokens, [Patch(hook, (slice(None), -1), Matched(torch.zeros(60, dtype=torch.long)))])
    assert not torch.allclose(moved[:, -1], clean, atol=1e-3)


def test_a_path_reaches_only_its_reader():
    """median_selector_model: L1H0's query reads L0H0's average; its value reads the embeddings."""
    model = median_selector_model()
    tokens, targets = median_batch(1000)
    assert evaluate(model, tokens, targets)[1] == 1.0
    assert path_ablated_accuracy(model, tokens, targets, "L0H0", ["L1H0.q"], tokens) < 0.5  # the query needs it
    assert path_ablated_accuracy(model, tokens, targets, "L0H0", ["L1H0.v"], tokens) == 1.0  # the value does not
    # swapping a sender for its own output is no change, for every kind of reader
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_result")
    own = cache["blocks.0.attn.hook_result"][:, :, 0]
    for reader in ("L1H0.q", "L1H0.k", "L1H0.v", "logits"):
        same = run_patched(model, tokens, [reads(model, reader, {"L0H0": own})])[:, -1]
        assert torch.allclose(same, model(tokens)[:, -1], atol=1e-4), reader
    with pytest.raises(ValueError, match="no reader"):
        reads(model, "L1H0.x", {"L0H0": own})


def test_run_from_a_residual_stream_is_the_rest_of_the_model():
    cfg = Config(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=12, n_ctx=6, d_vocab=11, d_vocab_out=10,
                 normalization_type="LN", seed=1)
    model = Transformer(cfg).eval()
    tokens = torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(6))
    _, cache = model.run_with_cache(tokens)
    for layer in range(3):
        resid = cache[f"blocks.{layer}.hook_resid_pre"] if layer < 2 else cache["blocks.1.hook_resid_post"]
        assert torch.allclose(run_from(model, layer, resid)[:, -1], model(tokens)[:, -1], atol=1e-5)
    assert torch.allclose(ablated(model, tokens, ["MLP 1"], "zero")[:, -1],
                          run_from(model, 2, cache["blocks.1.hook_resid_mid"])[:, -1], atol=1e-5)
    with pytest.raises(ValueError, match="is a head"):
        component_patch(model, "L0H0", neurons=[0])


def test_path_ablation_finds_the_v_path():
    """min_then_move_model: layer 1 moves layer 0's one-hot through its value (V-composition) only."""
    from handbuilt import min_then_move_model
    model = min_then_move_model(4, 8)
    tokens, targets = min_batch(9000, 4, 8, seed=4)  # more than one chunk of 8,192
    assert evaluate(model, tokens, targets)[1] == 1.0
    for part in ("L1H0.q", "L1H0.k"):  # layer 1 never reads layer 0's output into its query or key
        assert path_ablated_accuracy(model, tokens, targets, "L0H0", [part], tokens) == 1.0
    v = path_ablated_accuracy(model, tokens, targets, "L0H0", ["L1H0.v"], tokens)
    assert v == pytest.approx((targets == targets.mode().values).float().mean().item())
    # several paths at once: the two unread ones change nothing, so all three together cost what V alone does
    assert path_ablated_accuracy(model, tokens, targets, "L0H0", ["L1H0.q", "L1H0.k", "L1H0.v"], tokens) == v
    with pytest.raises(ValueError, match="does not read L1H0"):
        path_ablated_accuracy(model, tokens, targets, "L1H0", ["L0H0.v"], tokens)
