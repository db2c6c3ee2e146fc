"""Open our models with TransformerLens (optional dependency: pip install "transformer-lens<4").

TransformerLens 4 dropped HookedTransformer (its TransformerBridge loads Hugging Face models by name), so this
targets the 3.x series. Our parameter names are TransformerLens' own, so the state dict maps one to one; no
LayerNorm folding, centring or other processing is applied, and the logits agree.
"""
import warnings


def to_hooked_transformer(model):
    """A transformer_lens.HookedTransformer with the same config and weights as `model` (in eval mode)."""
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as e:
        raise ImportError('to_hooked_transformer needs TransformerLens 3.x: pip install "transformer-lens<4"') from e
    cfg = model.cfg
    tl_cfg = HookedTransformerConfig(
        n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model, d_head=cfg.d_head,
        d_mlp=cfg.d_mlp, attn_only=cfg.d_mlp is None, n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab,
        d_vocab_out=cfg.d_vocab_out, act_fn=cfg.act_fn, normalization_type=cfg.normalization_type,
        positional_embedding_type="standard", default_prepend_bos=False, seed=cfg.seed, device="cpu")
    with warnings.catch_warnings():  # 3.x warns that 4.0 drops HookedTransformer: known, see the docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        tl_model = HookedTransformer(tl_cfg)
    missing, unexpected = tl_model.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith((".IGNORE", ".mask"))]  # buffers TransformerLens makes
    if missing or unexpected:
        raise ValueError(f"state dicts do not line up: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return tl_model.to(next(model.parameters()).device).eval()

