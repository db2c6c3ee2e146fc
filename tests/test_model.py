import pytest
import torch

from shared.model import Config, Transformer

SMALL = Config(n_layers=1, n_heads=2, d_model=16, d_head=8, n_ctx=6, d_vocab=9, d_vocab_out=8, seed=1)
FULL = Config(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=32, n_ctx=6, d_vocab=9, d_vocab_out=8,
              normalization_type="LN", act_fn="gelu", seed=2)


def tokens(batch=5, pos=6, seed=0):
    return torch.randint(0, 9, (batch, pos), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=[SMALL, FULL], ids=["attn-only", "mlp+ln"])
def model(request):
    m = Transformer(request.param).eval()
    with torch.no_grad():  # non-zero biases, so tests see them
        for name, p in m.named_parameters():
            if name.split(".")[-1].startswith("b"):
                p.normal_(0, 0.3)
    return m


def test_shapes_and_names(model):
    cfg = model.cfg
    assert model(tokens()).shape == (5, 6, cfg.d_vocab_out)
    assert model.W_E.shape == (cfg.d_vocab, cfg.d_model)
    assert model.W_pos.shape == (cfg.n_ctx, cfg.d_model)
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(model, name).shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head)
    assert model.W_O.shape == (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model)
    assert model.W_U.shape == (cfg.d_model, cfg.d_vocab_out)
    keys = set(model.state_dict())
    assert {"embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.attn.b_O", "unembed.W_U",
            "unembed.b_U"} <= keys
    if cfg.d_mlp:
        assert {"blocks.1.mlp.W_in", "blocks.1.ln2.w", "ln_final.w"} <= keys


def test_causal(model):
    x = tokens()
    y = x.clone()
    y[:, 3] = (y[:, 3] + 1) % 9
    a, b = model(x), model(y)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_fast_path_equals_hooked_path(model):
    x = tokens()
    seen = []
    hooked = model.run_with_hooks(x, [("blocks.0.attn.hook_pattern", lambda act, hook: seen.append(1))])
    assert seen == [1]
    assert torch.allclose(model(x), hooked, atol=1e-5)


def test_last_only_equals_last_position(model):
    x = tokens()
    full = model(x)
    assert torch.allclose(model(x, last_only=True), full[:, -1:], atol=1e-5)
    # with a hook attached everything is computed, so the hook sees every position of the last block
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    seen = []
    with model.hooks([(last, lambda act, hook: seen.append(act.shape))]):
        out = model(x, last_only=True)
    assert seen == [(5, 6, model.cfg.d_model)]
    assert torch.allclose(out, full[:, -1:], atol=1e-5)


def test_cache_names_and_shapes(model):
    cfg = model.cfg
    B, P, H, d, dh = 5, 6, cfg.n_heads, cfg.d_model, cfg.d_head
    logits, cache = model.run_with_cache(tokens())
    assert torch.allclose(logits, model(tokens()), atol=1e-5)
    expected = {"hook_embed": (B, P, d), "hook_pos_embed": (B, P, d)}
    for l in range(cfg.n_layers):
        expected.update({
            f"blocks.{l}.hook_resid_pre": (B, P, d), f"blocks.{l}.hook_resid_post": (B, P, d),
            f"blocks.{l}.hook_attn_out": (B, P, d),
            f"blocks.{l}.attn.hook_q": (B, P, H, dh), f"blocks.{l}.attn.hook_k": (B, P, H, dh),
            f"blocks.{l}.attn.hook_v": (B, P, H, dh), f"blocks.{l}.attn.hook_z": (B, P, H, dh),
            f"blocks.{l}.attn.hook_attn_scores": (B, H, P, P), f"blocks.{l}.attn.hook_pattern": (B, H, P, P),
            f"blocks.{l}.attn.hook_result": (B, P, H, d)})
        if cfg.d_mlp:
            expected.update({f"blocks.{l}.hook_resid_mid": (B, P, d), f"blocks.{l}.hook_mlp_out": (B, P, d),
                             f"blocks.{l}.mlp.hook_pre": (B, P, cfg.d_mlp),
                             f"blocks.{l}.mlp.hook_post": (B, P, cfg.d_mlp),
                             f"blocks.{l}.ln1.hook_scale": (B, P, 1)})
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["resid_post", cfg.n_layers - 1] is cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    pattern = cache["pattern", 0]
    assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-6)
    assert (pattern.triu(1) == 0).all()
    # the residual stream adds up: resid_post = resid_pre + attn_out (+ mlp_out)
    last = cfg.n_layers - 1
    total = cache["resid_pre", last] + cache["attn_out", last]
    if cfg.d_mlp:
        total = total + cache["mlp_out", last]
    assert torch.allclose(total, cache["resid_post", last], atol=1e-5)
    with pytest.raises(KeyError, match="not in the cache"):
        model.run_with_cache(tokens(), names_filter="hook_embed")[1]["pattern", 0]


def test_names_filter_forms(model):
    _, one = model.run_with_cache(tokens(), names_filter="blocks.0.attn.hook_pattern")
    _, some = model.run_with_cache(tokens(), names_filter=["hook_embed", "blocks.0.attn.hook_z"])
    _, pred = model.run_with_cache(tokens(), names_filter=lambda n: n.endswith("hook_resid_post"))
    assert list(one.keys()) == ["blocks.0.attn.hook_pattern"]
    assert set(some.keys()) == {"hook_embed", "blocks.0.attn.hook_z"}
    assert len(pred) == model.cfg.n_layers


def _embed(m, x):
    return m.W_E[x] + m.W_pos[: x.shape[1]]


def test_replacing_pattern_matches_hand_computation():
    """Attention forced one-hot onto position 0: every position's head output is head(token 0)."""
    m = Transformer(SMALL).eval()
    x = tokens()

    def attend_to_first(pattern, hook):
        new = torch.zeros_like(pattern)
        new[..., 0] = 1
        return new

    got = m.run_with_hooks(x, [("blocks.0.attn.hook_pattern", attend_to_first)])
    a = m.blocks[0].attn
    resid = _embed(m, x)
    v0 = torch.einsum("bd,hde->bhe", resid[:, 0], a.W_V) + a.b_V  # [batch, head, d_head]
    head_out = torch.einsum("bhe,hed->bd", v0, a.W_O) + a.b_O
    want = (resid + head_out[:, None, :]) @ m.W_U + m.b_U
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, m(x), atol=1e-3)


def test_replacing_z_matches_hand_computation():
    """Zeroing head 1's z leaves only head 0's output, computed here by hand."""
    m = Transformer(SMALL).eval()
    x = tokens()

    def kill_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    got = m.run_with_hooks(x, [("blocks.0.attn.hook_z", kill_head_1)])
    a = m.blocks[0].attn
    resid = _embed(m, x)
    q = resid @ a.W_Q[0] + a.b_Q[0]
    k = resid @ a.W_K[0] + a.b_K[0]
    v = resid @ a.W_V[0] + a.b_V[0]
    scores = q @ k.transpose(1, 2) / a.W_Q.shape[-1] ** 0.5
    scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    want = (resid + scores.softmax(-1) @ v @ a.W_O[0] + a.b_O) @ m.W_U + m.b_U
    assert torch.allclose(got, want, atol=1e-5)


def test_hooks_removed_after_exception(model):
    def boom(act, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(tokens(), [("hook_embed", boom), (lambda n: "pattern" in n, boom)])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_hooks(tokens(), [("blocks.9.hook_nothing", boom)])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_predicate_hooks_and_replacement(model):
    hit = []
    model.run_with_hooks(tokens(), [(lambda n: n.endswith("hook_resid_pre"), lambda a, h: hit.append(h.name))])
    assert hit == [f"blocks.{l}.hook_resid_pre" for l in range(model.cfg.n_layers)]


def test_seed_fixes_weights():
    a, b, c = Transformer(SMALL), Transformer(SMALL), Transformer(Config(**{**SMALL.__dict__, "seed": 5}))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_E, c.W_E)


def test_bad_config_and_tokens():
    with pytest.raises(ValueError, match="n_heads"):
        Config(n_heads=0)
    with pytest.raises(ValueError, match="normalization_type"):
        Config(normalization_type="RMS")
    with pytest.raises(ValueError, match="n_ctx"):
        Transformer(SMALL)(torch.zeros(2, 7, dtype=torch.long))


def test_embed_std_sets_only_the_embeddings():
    default, unit = Transformer(Config(seed=0)), Transformer(Config(seed=0, embed_std=1.0))
    assert default.W_E.std().item() == pytest.approx(1 / 8, rel=0.05)  # init_scale / sqrt(d_model = 64)
    assert unit.W_E.std().item() == pytest.approx(1.0, rel=0.05) and unit.W_pos.std().item() == pytest.approx(1, rel=0.2)
    assert torch.equal(default.W_Q, unit.W_Q)  # the rest of the initialisation is unchanged
    with pytest.raises(ValueError, match="embed_std"):
        Config(embed_std=0.0)
