
import pytest
import torch

from handbuilt import min_batch, min_model, two_layer
from shared import circuits as C
from shared import composition as K
from shared import patching as P
from shared.components import components, output_names, outputs_from
from shared.model import Config, Transformer
from shared.tasks import evaluate

V, N = 8, 4


@pytest.fixture(scope="module")
def model():
    return min_model(N, V)


@pytest.fixture(scope="module")
def batch():
    return min_batch(2000, N, V)


def test_handbuilt_model_is_right(model, batch):
    assert evaluate(model, *batch)[1] == 1.0


def test_full_qk_circuit_is_exact_and_monotone(model):
    scores = C.full_qk_circuit(model, head=0, query_token=V, query_pos=N)
    assert scores.shape == (V + 1,)
    assert torch.allclose(scores[:V], -10.0 * torch.arange(V, dtype=torch.float))
    assert C.rank_correlation(scores[:V], torch.arange(V)) == pytest.approx(-1.0)
    per_pos = C.full_qk_circuit(model, head=0, query_token=V, query_pos=N, key_positions=range(N))
    assert per_pos.shape == (N, V + 1) and torch.allclose(per_pos, scores.expand(N, -1))
    # the circuit is the model's own pre-softmax score
    tokens, _ = min_batch(3, N, V)
    _, cache = model.run_with_cache(tokens)
    got = cache["attn_scores", 0][:, 0, -1, :N]
    assert torch.allclose(got, scores[tokens[:, :N]], atol=1e-4)


def test_full_ov_circuit_copies(model):
    ov = C.full_ov_circuit(model, head=0)
    assert ov.shape == (V + 1, V)
    assert C.diagonal_fraction(ov) == 1.0
    assert C.copying_score(ov) == pytest.approx(1.0)
    assert C.copying_score(-ov) == pytest.approx(-1.0)
    shuffled = ov[:V][torch.roll(torch.arange(V), 1)]
    assert C.diagonal_fraction(shuffled) == 0.0


def test_full_ov_circuit_with_layernorm_needs_scale():
    m = Transformer(Config(normalization_type="LN", d_model=8, d_head=4, n_ctx=3, d_vocab=5, d_vocab_out=4))
    with pytest.raises(ValueError, match="final_scale"):
        C.full_ov_circuit(m, head=0, position=0)
    ov = C.full_ov_circuit(m, head=0, position=0, final_scale=2.0)
    x = m.blocks[0].ln1(m.W_E + m.W_pos[0]) @ m.W_V[0, 0] @ m.W_O[0, 0]
    want = ((x - x.mean(-1, keepdim=True)) / 2.0 * m.ln_final.w) @ m.W_U
    assert torch.allclose(ov, want, atol=1e-5)


def test_patching(model):
    clean, clean_y = min_batch(200, N, V, seed=1)
    corrupt = clean.clone()
    # the corrupted input holds V-1 everywhere, so its minimum is V-1
    corrupt[:, :N] = V - 1
    corrupt_y = torch.full_like(clean_y, V - 1)
    keep = clean_y != corrupt_y
    clean, clean_y, corrupt, corrupt_y = clean[keep], clean_y[keep], corrupt[keep], corrupt_y[keep]
    assert P.patch(model, clean, corrupt, clean_y, corrupt_y, "blocks.0.attn.hook_z") == pytest.approx(1.0)
    sweep = P.patch_sweep(model, clean, corrupt, clean_y, corrupt_y, "blocks.0.attn.hook_z")
    assert sweep.shape == (N + 1,) and sweep[-1] == pytest.approx(1.0)
    assert torch.allclose(sweep[:-1], torch.zeros(N), atol=1e-6)  # earlier positions never reach SEP's logits
    per_head = P.patch_sweep(model, clean, corrupt, clean_y, corrupt_y, "blocks.0.attn.hook_z",
                             [(p, 0) for p in range(N + 1)])
    assert per_head.shape == (N + 1,) and per_head[-1] == pytest.approx(1.0) and torch.allclose(per_head, sweep)
    # the embeddings carry everything the answer depends on
    assert P.patch(model, clean, corrupt, clean_y, corrupt_y, "hook_embed") == pytest.approx(1.0)


def direct_parts(model, tokens):
    """(logits at the last position, every component's direct logits there, biases included, the cached
    ln_final scale): the pieces that must add up to the logits."""
    names = components(model)
    hooks = output_names(model, names) + ["hook_embed", "hook_pos_embed"] + (
        ["ln_final.hook_scale"] if model.cfg.normalization_type else [])
    logits, cache = model.run_with_cache(tokens, names_filter=hooks)
    scale = cache["ln_final.hook_scale"][:, -1, 0] if model.cfg.normalization_type else None
    resid = [cache["hook_embed"][:, -1], cache["hook_pos_embed"][:, -1],
             sum(block.attn.b_O for block in model.blocks).expand(len(tokens), -1)]
    resid += [output[:, -1] for output in outputs_from(cache, model, names).values()]
    parts = [C.direct_logits(model, part, scale) for part in resid]
    bias = model.b_U + (model.ln_final.b @ model.W_U if model.cfg.normalization_type else 0)
    return logits[:, -1], sum(parts) + bias, scale


def test_direct_logits_add_up_to_the_logits(batch):
    model = min_model(N, V)
    with torch.no_grad():
        model.blocks[0].attn.b_O.normal_()
        model.unembed.b_U.normal_()
    tokens, targets = batch
    logits, total, _ = direct_parts(model, tokens)
    assert torch.allclose(total, logits, atol=1e-5)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_result")
    head = C.direct_logits(model, cache["blocks.0.attn.hook_result"][:, -1, 0]).gather(1, targets[:, None])
    assert torch.allclose(head, torch.ones_like(head), atol=1e-3)  # attends fully to the min: copies 1


def test_direct_logits_with_layernorm():
    cfg = Config(n_layers=2, n_heads=2, d_model=16, d_head=4, d_mlp=32, n_ctx=5, d_vocab=7, d_vocab_out=6,
                 normalization_type="LN", seed=4)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.ln_final.b.normal_()
        model.b_U.normal_()
    tokens = torch.randint(0, 7, (30, 5))
    logits, total, scale = direct_parts(model, tokens)
    assert torch.allclose(total, logits, atol=1e-4)  # exact with the cached scale
    part = torch.randn(30, 16)  # without it, each sample's logits are rescaled alike: the same argmax
    assert torch.equal(C.direct_logits(model, part).argmax(-1), C.direct_logits(model, part, scale).argmax(-1))


def test_composition_scores_only_from_earlier_layers():
    """Values are checked on hand-built heads below; here, where the table is zero by construction."""
    cfg = Config(n_layers=3, n_heads=2, d_model=12, d_head=3, n_ctx=4, d_vocab=5, d_vocab_out=5, seed=7)
    m = Transformer(cfg)
    q, k, v = (K.composition_scores(m, kind) for kind in "QKV")
    assert q.shape == (3, 2, 3, 2)
    for s in (q, k, v):  # no composition from a head into itself, its layer, or an earlier layer
        assert (s[1, :, 0] == 0).all() and (s[1, :, 1] == 0).all() and (s[2, :, :2] == 0).all()
    with pytest.raises(ValueError):
        K.composition_scores(m, "X")


def e(i, d=8):
    return torch.eye(d)[i][:, None]  # column unit vector [d, 1]


@pytest.mark.parametrize("kind", "QKV")
def test_composition_aligned_near_one_orthogonal_near_zero(kind):
    def build(read_dim):
        m = two_layer()
        with torch.no_grad():
            a0, a1 = m.blocks[0].attn, m.blocks[1].attn
            a0.W_V[0] = e(0)  # layer 0 reads dim 0 and writes dim 3
            a0.W_O[0] = e(3).T
            if kind == "V":
                a1.W_V[0], a1.W_O[0] = e(read_dim), e(5).T
            elif kind == "Q":
                a1.W_Q[0], a1.W_K[0] = e(read_dim), e(6)
            else:
                a1.W_K[0], a1.W_Q[0] = e(read_dim), e(6)
        return K.composition_scores(m, kind)[0, 0, 1, 0].item()

    assert build(read_dim=3) == pytest.approx(1.0)
    assert build(read_dim=4) == pytest.approx(0.0)


def test_composition_baseline_matches_random_models():
    cfg = Config(n_layers=2, n_heads=2, d_model=32, d_head=8, n_ctx=4, d_vocab=5, d_vocab_out=5)
    for kind in "QKV":
        base = K.composition_baseline(cfg, kind, draws=300, seed=0)
        assert base == K.composition_baseline(cfg, kind, draws=300, seed=0)
        assert 0 < base < 1
        random = torch.stack([K.composition_scores(Transformer(Config(**{**cfg.__dict__, "seed": s})), kind)[0, :, 1, :]
                              for s in range(20)])
        assert random.mean().item() == pytest.approx(base, rel=0.1)


def test_summaries():
    assert C.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert C.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_composition_scores_of_an_identity_path():
    from handbuilt import min_then_move_model
    model = min_then_move_model(N, V)
    # rank-V identity maps compose perfectly, and score ||I|| / (||I|| ||I||) = 1/sqrt(V)
    assert K.composition_scores(model, "V")[0, 0, 1, 0] == pytest.approx(V ** -0.5)
    assert K.composition_scores(model, "Q")[0, 0, 1, 0] == pytest.approx(0.0)


def test_select_and_copy_on_handbuilt_models(model, batch):
    tokens, targets = batch
    answers, chosen = C.select_and_copy_from_weights(model, tokens)
    assert torch.equal(answers, targets)
    assert torch.equal(tokens[torch.arange(len(tokens)), chosen], targets)
    from handbuilt import min_then_move_model
    two = min_then_move_model(N, V)
    answers, chosen = C.select_and_copy_from_activations(two, tokens, layer=0, head=0)  # real scores
    assert torch.equal(tokens[torch.arange(len(tokens)), chosen], targets)


def test_select_and_copy_from_weights_is_only_for_what_it_is_exact_for(model, batch):
    """Defect: the exact branch ran on several heads and read row 0's query token for every row."""
    tokens, _ = batch
    from handbuilt import min_then_move_model
    for other in (min_then_move_model(N, V),
                  Transformer(Config(n_heads=2, d_model=8, d_head=4, n_ctx=N + 1, d_vocab=V + 1, d_vocab_out=V))):
        with pytest.raises(ValueError, match="exact only"):
            C.select_and_copy_from_weights(other, tokens)
    # rows whose last token differs: each row must be read with its own query, as a row-by-row loop does
    rand = Transformer(Config(n_ctx=N + 1, d_vocab=V + 1, d_vocab_out=V, d_model=16, d_head=16, seed=3))
    mixed = tokens[:40].clone()
    mixed[::2, -1] = torch.arange(20) % V
    together, chosen = C.select_and_copy_from_weights(rand, mixed)
    one_by_one = [C.select_and_copy_from_weights(rand, row[None]) for row in mixed]
    assert together.tolist() == [a.item() for a, _ in one_by_one]
    assert chosen.tolist() == [c.item() for _, c in one_by_one]


def test_patch_refuses_meaningless_requests(model):
    tokens, targets = min_batch(50, N, V)
    with pytest.raises(ValueError, match="too close"):  # corrupted = clean: no difference to recover
        P.patch(model, tokens, tokens, targets, (targets + 1) % V, "blocks.0.hook_resid_pre")
    corrupt = tokens.clone()
    corrupt[:, 0] = 0
    with pytest.raises(ValueError, match="no head dimension"):
        P.patch(model, tokens, corrupt, targets, corrupt[:, :-1].min(-1).values, "blocks.0.hook_resid_post", head=0)


def test_variance_explained_of_a_lookup_and_of_noise():
    gen = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 10, (4000,), generator=gen)
    table = torch.randn(10, 6, generator=gen)
    onehot = torch.nn.functional.one_hot(keys, 10).float()
    assert C.variance_explained(onehot, table[keys]) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(4000, 6, generator=gen)
    assert abs(C.variance_explained(onehot, noise)) < 0.02
    assert 0.4 < C.variance_explained(onehot, table[keys] + noise * table.std()) < 0.6


def test_attention_distance_is_half_the_l1_difference():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert C.attention_distance(p, p) == 0.0
    assert C.attention_distance(p, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])) == pytest.approx(1.0)
    assert C.attention_distance(p[1:], torch.tensor([[0.25, 0.25, 0.5]])) == pytest.approx(0.5)
