"""A small causal transformer with TransformerLens' parameter names, shapes and hook points.

Everything right-multiplies (x @ W), as in TransformerLens, so W_Q[l, h] is [d_model, d_head] and the
factored circuits of shared/circuits.py are plain products of these tensors.

With no hook attached, attention runs the fused path (one projection for q, k, v and
scaled_dot_product_attention). As soon as any of a layer's attention hooks has a function attached, that
layer computes the explicit scores and pattern, so hooks see (and may replace) every intermediate.
"""
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    n_layers: int = 1
    n_heads: int = 1
    d_model: int = 64
    d_head: int = 64
    d_mlp: Optional[int] = None  # None: attention-only
    n_ctx: int = 11
    d_vocab: int = 65
    d_vocab_out: int = 64
    act_fn: str = "relu"  # "relu" or "gelu"
    normalization_type: Optional[str] = None  # "LN" or None
    init_scale: float = 1.0  # multiplies every initial standard deviation
    embed_std: Optional[float] = None  # W_E and W_pos's initial std; None: init_scale / sqrt(d_model), as the rest
    seed: int = 0

    def __post_init__(self):  # a checkpoint's config comes through here: every field is checked in kind
        def positive_int(x):
            return isinstance(x, int) and not isinstance(x, bool) and x >= 1

        def positive_number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0

        for name in ("n_layers", "n_heads", "d_model", "d_head", "n_ctx", "d_vocab", "d_vocab_out"):
            if not positive_int(getattr(self, name)):
                raise ValueError(f"Config.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.d_mlp is not None and not positive_int(self.d_mlp):
            raise ValueError(f"Config.d_mlp must be None or a positive int, got {self.d_mlp!r}")
        if not positive_number(self.init_scale):
            raise ValueError(f"Config.init_scale must be a positive finite number, got {self.init_scale!r}")
        if self.embed_std is not None and not positive_number(self.embed_std):
            raise ValueError(f"Config.embed_std must be None or a positive finite number, got {self.embed_std!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2 ** 63):
            raise ValueError(f"Config.seed must be an int in 0..2^63-1, got {self.seed!r}")
        if self.act_fn not in ("relu", "gelu"):
            raise ValueError(f"Config.act_fn must be 'relu' or 'gelu', got {self.act_fn!r}")
        if self.normalization_type not in ("LN", None):
            raise ValueError(f"Config.normalization_type must be 'LN' or None, got {self.normalization_type!r}")


class HookPoint(nn.Module):
    """Identity that calls the attached functions fn(activation, hook); a non-None return replaces it."""

    def __init__(self):
        super().__init__()
        self.name = None  # set by Transformer
        self.fwd_hooks: list[Callable] = []

    def __call__(self, x):  # skips nn.Module's call machinery: this sits on the hot path
        for fn in self.fwd_hooks:
            out = fn(x, self)
            if out is not None:
                x = out
        return x


def _normal(*shape, std):
    return nn.Parameter(torch.randn(*shape) * std)


class LayerNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x):
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
        return self.hook_normalized(x / scale) * self.w + self.b


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, d, dh, s = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.init_scale
        self.W_Q = _normal(H, d, dh, std=s / math.sqrt(d))
        self.W_K = _normal(H, d, dh, std=s / math.sqrt(d))
        self.W_V = _normal(H, d, dh, std=s / math.sqrt(d))
        self.W_O = _normal(H, dh, d, std=s / math.sqrt(H * dh))
        self.b_Q = nn.Parameter(torch.zeros(H, dh))
        self.b_K = nn.Parameter(torch.zeros(H, dh))
        self.b_V = nn.Parameter(torch.zeros(H, dh))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.hook_q = HookPoint()  # [batch, pos, head, d_head], likewise k, v, z
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos], scaled and masked
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()
        self.hook_result = HookPoint()  # [batch, pos, head, d_model]: each head's output
        self._hooks = [self.hook_q, self.hook_k, self.hook_v, self.hook_attn_scores, self.hook_pattern,
                       self.hook_z, self.hook_result]

    def forward(self, x, last_only=False):  # x [batch, pos, d_model]
        if any(h.fwd_hooks for h in self._hooks):
            return self._forward_hooked(x)
        B, P, d = x.shape
        H, dh = self.W_Q.shape[0], self.W_Q.shape[2]
        # [d_model, (q|k|v, head, d_head)]; a view per weight when H = 1, so one copy (the cat) in all
        W_QKV = torch.cat([W.transpose(0, 1).reshape(d, H * dh) for W in (self.W_Q, self.W_K, self.W_V)], dim=1)
        b_QKV = torch.cat([self.b_Q, self.b_K, self.b_V]).reshape(3 * H * dh)
        qkv = torch.addmm(b_QKV, x.reshape(B * P, d), W_QKV).view(B, P, 3 * H, dh).transpose(1, 2)
        q, k, v = qkv.split(H, dim=1)  # each [batch, head, pos, d_head]
        if last_only:  # the last query sees every key, so no mask is needed
            q, P = q[:, :, -1:], 1
        z = F.scaled_dot_product_attention(q, k, v, is_causal=not last_only)
        z = z.transpose(1, 2).reshape(B * P, H * dh)
        return torch.addmm(self.b_O, z, self.W_O.reshape(H * dh, d)).view(B, P, d)

    def _forward_hooked(self, x):
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
        P = x.shape[1]
        causal = torch.ones(P, P, dtype=torch.bool, device=x.device).tril()
        scores = self.hook_attn_scores(scores.masked_fill(~causal, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
        return result.sum(2) + self.b_O


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, m, s = cfg.d_model, cfg.d_mlp, cfg.init_scale
        self.W_in = _normal(d, m, std=s / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = _normal(m, d, std=s / math.sqrt(m))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.act = F.relu if cfg.act_fn == "relu" else F.gelu
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x):  # addmm: one fused kernel for the product and the bias
        pre = torch.addmm(self.b_in, x.reshape(-1, x.shape[-1]), self.W_in).view(*x.shape[:-1], -1)
        post = self.hook_post(self.act(self.hook_pre(pre)))
        return torch.addmm(self.b_out, post.reshape(-1, post.shape[-1]), self.W_out).view(x.shape)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        norm = (lambda: LayerNorm(cfg)) if cfg.normalization_type == "LN" else nn.Identity
        self.ln1 = norm()
        self.attn = Attention(cfg)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model], as every hook of this block
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()
        self.mlp = None
        if cfg.d_mlp is not None:
            self.ln2 = norm()
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()
            self.hook_mlp_out = HookPoint()

    def forward(self, x, last_only=False):  # last_only: keys and values at every position, the rest at the last
        x = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(self.ln1(x), last_only))
        x = (x[:, -1:] if last_only else x) + attn_out
        if self.mlp is not None:
            x = self.hook_resid_mid(x)
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


# Embeddings start at std init_scale / sqrt(d_model), like every other weight, so the residual stream starts
# at norm ~1. With std 1 they moved about 8x slower, relative to their size under Adam, than W_Q and W_K: the
# QK circuit sharpened attention before every token had found its place in the value order, and a token left
# out of place never drew the attention that would move it (the min task: 18 of 20 seeds with "stuck" values).
# embed_std sets another std, e.g. 1.0, the old unit std, to compare what seeds learn with it.
def _embed_std(cfg):
    return cfg.init_scale / math.sqrt(cfg.d_model) if cfg.embed_std is None else cfg.embed_std


class Embed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_E = _normal(cfg.d_vocab, cfg.d_model, std=_embed_std(cfg))


class PosEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_pos = _normal(cfg.n_ctx, cfg.d_model, std=_embed_std(cfg))


class Unembed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_U = _normal(cfg.d_model, cfg.d_vocab_out, std=cfg.init_scale / math.sqrt(cfg.d_model))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out))


class Transformer(nn.Module):
    """Decoder-only transformer; submodule names follow TransformerLens so state dicts line up."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):  # the seed fixes the weights without touching global RNG
            torch.manual_seed(cfg.seed)
            self.embed = Embed(cfg)
            self.pos_embed = PosEmbed(cfg)
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
            self.unembed = Unembed(cfg)
        self.ln_final = LayerNorm(cfg) if cfg.normalization_type == "LN" else nn.Identity()
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module
        last = f"blocks.{cfg.n_layers - 1}."  # hooks that see the last block's positions after it starts
        self._last_block_hooks = [hp for name, hp in self.hook_dict.items() if name.startswith(("ln_final", last))
                                  and name != last + "hook_resid_pre"]

    def forward(self, tokens, last_only=False, stop_at_layer=None):  # tokens [batch, pos] -> logits [batch, pos, V]
        """last_only: return logits [batch, 1, d_vocab_out] for the last position alone. Every task reads its
        answer there, so training and evaluation use it: unless a hook inside the last block (past its
        hook_resid_pre) is attached, that block computes its query, MLP and the unembedding at that one
        position. Hooks always see every position. stop_at_layer=l: return the residual stream entering block l
        instead (as TransformerLens does), running nothing after it."""
        if tokens.dim() != 2 or tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"tokens must be [batch, pos] with pos <= n_ctx={self.cfg.n_ctx}, "
                             f"got shape {tuple(tokens.shape)}")
        pos = self.pos_embed.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)  # a view, no copy
        x = self.hook_embed(F.embedding(tokens, self.embed.W_E)) + self.hook_pos_embed(pos)
        shortcut = last_only and not any(hp.fwd_hooks for hp in self._last_block_hooks)
        for i, block in enumerate(self.blocks[:stop_at_layer]):
            x = block(x, shortcut and i == len(self.blocks) - 1)
        if stop_at_layer is not None:
            return x
        x = self.ln_final(x)
        if last_only:
            x = x[:, -1:]
        B, P, d = x.shape
        return torch.addmm(self.unembed.b_U, x.reshape(B * P, d), self.unembed.W_U).view(B, P, -1)

    # Stacked weights [n_layers, n_heads, ...], as TransformerLens' HookedTransformer has them.
    W_E = property(lambda self: self.embed.W_E)
    W_pos = property(lambda self: self.pos_embed.W_pos)
    W_U = property(lambda self: self.unembed.W_U)
    b_U = property(lambda self: self.unembed.b_U)
    W_Q = property(lambda self: torch.stack([b.attn.W_Q for b in self.blocks]))
    W_K = property(lambda self: torch.stack([b.attn.W_K for b in self.blocks]))
    W_V = property(lambda self: torch.stack([b.attn.W_V for b in self.blocks]))
    W_O = property(lambda self: torch.stack([b.attn.W_O for b in self.blocks]))
    b_Q = property(lambda self: torch.stack([b.attn.b_Q for b in self.blocks]))
    b_K = property(lambda self: torch.stack([b.attn.b_K for b in self.blocks]))
    b_V = property(lambda self: torch.stack([b.attn.b_V for b in self.blocks]))
    b_O = property(lambda self: torch.stack([b.attn.b_O for b in self.blocks]))

    @contextmanager
    def hooks(self, fwd_hooks):
        """Attach [(name or predicate(name), fn)] for the duration of the block; always detached after."""
        attached = []
        try:
            for name_or_pred, fn in fwd_hooks:
                if callable(name_or_pred):
                    points = [hp for n, hp in self.hook_dict.items() if name_or_pred(n)]
                elif name_or_pred in self.hook_dict:
                    points = [self.hook_dict[name_or_pred]]
                else:
                    raise KeyError(f"no hook point named {name_or_pred!r}; see model.hook_dict for the names")
                for hp in points:
                    hp.fwd_hooks.append(fn)
                    attached.append((hp, fn))
            yield self
        finally:
            for hp, fn in attached:
                hp.fwd_hooks.remove(fn)

    def run_with_hooks(self, tokens, fwd_hooks=(), last_only=False):
        with self.hooks(fwd_hooks):
            return self(tokens, last_only)

    def run_with_cache(self, tokens, names_filter=None, last_only=False, stop_at_layer=None):
        """Returns (logits, cache) with every hooked activation (detached) that names_filter admits."""
        if names_filter is None:
            keep = lambda name: True
        elif isinstance(names_filter, str):
            keep = lambda name: name == names_filter
        elif callable(names_filter):
            keep = names_filter
        else:
            wanted = set(names_filter)
            keep = lambda name: name in wanted
        store = {}

        def save(act, hook):
            store[hook.name] = act.detach()

        with self.hooks([(name, save) for name in self.hook_dict if keep(name)]):
            logits = self(tokens, last_only, stop_at_layer)
        return logits, ActivationCache(store, self)


_LAYER_SHORT = {  # shorthand -> path inside blocks.{l}, as TransformerLens' utils.get_act_name
    "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v", "z": "attn.hook_z",
    "attn_scores": "attn.hook_attn_scores", "pattern": "attn.hook_pattern", "result": "attn.hook_result",
    "pre": "mlp.hook_pre", "post": "mlp.hook_post",
}


class ActivationCache:
    """Activations by hook name; also answers TransformerLens' shorthand: cache["pattern", 0]."""

    def __init__(self, store: dict, model: Transformer):
        self.store = store
        self.model = model

    @staticmethod
    def full_name(key):
        if isinstance(key, tuple):
            short, layer = key
            if short not in _LAYER_SHORT:
                raise KeyError(f"unknown shorthand {short!r}; known: {sorted(_LAYER_SHORT)}")
            return f"blocks.{layer}.{_LAYER_SHORT[short]}"
        return {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}.get(key, key)

    def __getitem__(self, key):
        name = self.full_name(key)
        if name not in self.store:
            raise KeyError(f"{name!r} is not in the cache (was it filtered out, or is it absent from this model?)")
        return self.store[name]

    def __contains__(self, key):
        return self.full_name(key) in self.store

    def keys(self):
        return self.store.keys()

    def items(self):
        return self.store.items()

    def __len__(self):
        return len(self.store)
