"""shared.neurons on models and curves whose answer is known."""
import pytest
import torch

from shared.ablation import run_patched
from shared.model import Config, Transformer
from shared.neurons import best_shape, fit_shapes, loss_kept, neuron_terms, token_response_patches, uniform_pattern


def random_model(n_heads=2, seed=3, **overrides):
    cfg = Config(**{**dict(n_layers=2, n_heads=n_heads, d_model=16, d_head=8, d_mlp=12, n_ctx=6, d_vocab=11,
                           d_vocab_out=10, seed=seed), **overrides})
    model = Transformer(cfg)
    with torch.no_grad():  # nonzero biases, so every term of the decomposition is exercised
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())))
    return model.eval()


@pytest.mark.parametrize("query", [5, 2, 0])
def test_terms_rebuild_the_pre_activation_from_the_real_pattern(query):
    model = random_model()
    tokens = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    rebuilt = neuron_terms(model).pre(tokens, cache["pattern", 0][:, :, query], query_pos=query)
    assert torch.allclose(rebuilt, cache["pre", 0][:, query], atol=1e-5)


def test_uniform_pattern_is_exact_when_attention_is_frozen_uniform():
    model = random_model(n_heads=1)
    with torch.no_grad():
        for p in (model.blocks[0].attn.W_Q, model.blocks[0].attn.W_K, model.blocks[0].attn.b_Q,
                  model.blocks[0].attn.b_K):
            p.zero_()
    tokens = torch.randint(0, 11, (32, 6), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_pre")
    rebuilt = neuron_terms(model).pre(tokens, uniform_pattern(tokens, 1))
    assert torch.allclose(rebuilt, cache["pre", 0][:, -1], atol=1e-5)
    # a wrong pattern does not rebuild it: the check above can fail
    wrong = torch.zeros(32, 1, 6)
    wrong[..., 0] = 1
    assert not torch.allclose(neuron_terms(model).pre(tokens, wrong), cache["pre", 0][:, -1], atol=1e-3)


def test_terms_refuse_what_is_not_linear():
    with pytest.raises(ValueError, match="LayerNorm"):
        neuron_terms(random_model(normalization_type="LN"))
    with pytest.raises(ValueError):
        neuron_terms(random_model(), layer=1)


def test_fit_shapes_recovers_known_curves():
    v = torch.arange(40.0)
    curves = torch.stack([1 + 3 * torch.sigmoid((v - 20.5) / 0.5), 2 * v - 5, torch.exp(-(v - 10) ** 2 / 8),
                          -2 * (v > 7.5).float()])
    fits = fit_shapes(curves)
    assert best_shape(fits) == ["step", "ramp", "bump", "step"]
    assert fits["step"]["threshold"][0] == 20.5 and fits["step"]["threshold"][3] == 7.5
    assert fits["step"]["scale"][0] > 0 > fits["step"]["scale"][3]
    assert fits["bump"]["centre"][2] == 10.0
    assert fits["step"]["r2"][0] > 0.999 and fits["ramp"]["r2"][1] > 0.999
    assert torch.allclose(fits["step"]["fitted"][3], curves[3], atol=1e-3)
    assert fits["ramp"]["r2"][3] < 0.9  # a sharp step is not a ramp


def test_token_response_substitution():
    model = random_model()
    tokens = torch.randint(0, 11, (40, 6), generator=torch.Generator().manual_seed(2))
    exact = neuron_terms(model).token[1]
    run = lambda response: run_patched(model, tokens, token_response_patches(model, tokens, response, head=1),
                                       last_only=False)
    with torch.no_grad():
        assert torch.allclose(run(exact), model(tokens), atol=1e-5)
        # a constant added to every token's response moves the neuron as a bias would (attention sums to 1)
        shifted = exact.clone()
        shifted[:, 4] += 0.7
        moved = run(shifted)
        model.blocks[0].mlp.b_in[4] += 0.7
        assert torch.allclose(moved, model(tokens), atol=1e-5)


def test_loss_kept_is_the_loss_recovered_against_the_control():
    assert loss_kept(0.1, 0.1, 2.0) == 1.0 and loss_kept(0.1, 2.0, 2.0) == 0.0
    assert loss_kept(0.1, 1.05, 2.0) == pytest.approx(0.5)
