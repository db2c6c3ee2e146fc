"""TransformerLens interop (optional dependency, skipped when transformer_lens is absent)."""
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformer_lens", reason='optional: pip install "transformer-lens<4"')

from shared import Config, Transformer, load_checkpoint  # noqa: E402
from shared.interop import to_hooked_transformer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "find_min": lambda: load_checkpoint(ROOT / "find_min/checkpoints/model.pt"),
    "find_median": lambda: load_checkpoint(ROOT / "find_median/checkpoints/model.pt"),
    "ln+gelu": lambda: Transformer(Config(n_layers=2, n_heads=3, d_model=24, d_head=8, d_mlp=48, n_ctx=6,
                                          d_vocab=9, d_vocab_out=7, act_fn="gelu", normalization_type="LN",
                                          seed=5)).eval(),
}


@pytest.mark.parametrize("name", MODELS)
def test_same_logits_and_patterns(name):
    model = MODELS[name]()
    with torch.no_grad():  # non-zero biases, so they are compared too
        for pname, p in model.named_parameters():
            if pname.split(".")[-1].startswith("b_"):
                p.add_(0.1 * torch.randn_like(p))
    tl_model = to_hooked_transformer(model)
    tokens = torch.randint(0, model.cfg.d_vocab, (32, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    tl_logits, tl_cache = tl_model.run_with_cache(tokens)
    logits, cache = model.run_with_cache(tokens)
    assert torch.allclose(logits, tl_logits, atol=1e-4)
    for l in range(model.cfg.n_layers):
        assert torch.allclose(cache["pattern", l], tl_cache[f"blocks.{l}.attn.hook_pattern"], atol=1e-6)
        assert torch.allclose(cache["resid_post", l], tl_cache[f"blocks.{l}.hook_resid_post"], atol=1e-4)
