"""Composition scores ('A Mathematical Framework for Transformer Circuits'): how much a later head's query, key or
value input reads what an earlier head writes, from the weights alone, and the level random heads reach.

Row-vector conventions, as in shared.circuits: an earlier head writes x W_V W_O; a later head reads it through
W_Q W_K^T (query side), its transpose (key side) or W_V W_O (value side).
"""
import math

import torch


def composition_score(A, B):
    """||A B||_F / (||A||_F ||B||_F), broadcasting over leading dimensions."""
    return (A @ B).norm(dim=(-2, -1)) / (A.norm(dim=(-2, -1)) * B.norm(dim=(-2, -1)))


def _pairs(kind, W_Q, W_K, W_V, W_O, early, late):
    """(A, B) of 'A Mathematical Framework' for composition `kind` from heads `early` onto `late`,
    in row-vector form: the earlier head's W_OV, then what the later head reads it with."""
    A = W_V[early] @ W_O[early]
    if kind == "Q":
        B = W_Q[late] @ W_K[late].transpose(-1, -2)
    elif kind == "K":
        B = (W_Q[late] @ W_K[late].transpose(-1, -2)).transpose(-1, -2)
    elif kind == "V":
        B = W_V[late] @ W_O[late]
    else:
        raise ValueError(f"composition kind must be 'Q', 'K' or 'V', got {kind!r}")
    return A, B


@torch.no_grad()
def composition_scores(model, kind):
    """[L, H, L, H]: score of earlier head (l1, h1) composing into later head (l2, h2) by `kind`; zero
    wherever l2 <= l1, where no composition is possible."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    weights = model.W_Q, model.W_K, model.W_V, model.W_O  # each [L, H, ...]
    scores = torch.zeros(L, H, L, H)
    for l1 in range(L):
        for l2 in range(l1 + 1, L):
            A, B = _pairs(kind, *weights, early=l1, late=l2)  # [H, d, d] each
            scores[l1, :, l2, :] = composition_score(A[:, None], B[None, :])
    return scores


def composition_baseline(cfg, kind, draws=300, seed=0):
    """Mean composition score of random heads of cfg's shapes (Kaiming-uniform factors, seeded): the
    level that a trained score must clear before it says anything."""
    gen = torch.Generator().manual_seed(seed)

    def kaiming(*shape):  # nn.init.kaiming_uniform_(a=sqrt(5)) bound for a [fan_out, fan_in] weight
        bound = 1 / math.sqrt(shape[-1])
        return (torch.rand(*shape, generator=gen) * 2 - 1) * bound

    d, dh = cfg.d_model, cfg.d_head
    Ws = [kaiming(2, draws, d, dh) for _ in range(3)] + [kaiming(2, draws, dh, d)]
    return composition_score(*_pairs(kind, *Ws, early=0, late=1)).mean().item()
