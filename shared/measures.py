"""Measures a notebook section takes in one call, each returning a number or a tensor: reading the OV circuit
where LayerNorm or later layers complicate it, the direct-logit agreement of a set of components, an activation
patch that may not apply, and which earlier writers an MLP's neurons read.
"""
import torch

from . import circuits as C
from .components import mlp_name, output_names, outputs_from, senders
from .patching import patch


@torch.no_grad()
def ov_matrix(model, layer, head, tokens):
    """The head's full OV circuit over values [V, V] (direct path). With LayerNorm it is read at the middle key
    position and with ln_final's scale measured on tokens: an approximation, said by ov_note."""
    V = model.cfg.d_vocab_out
    scale = None if isinstance(model.ln_final, torch.nn.Identity) else C.final_scale(model, tokens)
    position = (tokens.shape[1] - 1) // 2 if C.has_layernorm(model, layer) else None
    return C.full_ov_circuit(model, head, layer, position=position, final_scale=scale)[:V]


def ov_note(model, layer) -> str:
    cfg = model.cfg
    parts = ["LayerNorm linearised at its measured scale"] if cfg.normalization_type else []
    if cfg.d_mlp or layer < cfg.n_layers - 1:
        parts.append("direct path only")
    return "; ".join(parts)


@torch.no_grad()
def direct_logit_agreement(model, tokens, names) -> float:
    """How often the argmax of the summed direct logits (shared.circuits.direct_logits) of the components `names`
    ('L1H0', 'MLP 1') is the model's answer."""
    logits, cache = model.run_with_cache(tokens, names_filter=output_names(model, names))
    total = sum(output[:, -1] for output in outputs_from(cache, model, names).values())
    return (C.direct_logits(model, total).argmax(-1) == logits[:, -1].argmax(-1)).float().mean().item()


@torch.no_grad()
def patched_fraction(model, pairs, hook, position, head=None):
    """shared.patching.patch on (clean, corrupt, clean answers, corrupt answers); None where the model's clean
    and corrupted logit differences are too close for a fraction to mean anything."""
    try:
        return patch(model, *pairs, hook, position=position, head=head)
    except ValueError:
        return None


@torch.no_grad()
def mlp_input_shares(model, tokens, layer) -> dict:
    """{component: the share of MLP `layer`'s pre-activation variance at SEP that the component's output alone
    explains, 1 - var(pre - part) / var(pre) per neuron, averaged with each neuron's output variance as its
    weight} for every head and MLP before it: which writers its neurons read."""
    writers = senders(model, mlp_name(layer))
    pre_name = f"blocks.{layer}.mlp.hook_pre"
    _, cache = model.run_with_cache(tokens, names_filter=output_names(model, writers) + [pre_name])
    pre = cache[pre_name][:, -1]
    weight = torch.relu(pre).var(0)
    W_in = model.blocks[layer].mlp.W_in
    shares = {}
    for name, output in outputs_from(cache, model, writers).items():
        explained = 1 - (pre - output[:, -1] @ W_in).var(0) / pre.var(0).clamp(min=1e-12)
        shares[name] = ((explained * weight).sum() / weight.sum()).item()
    return shares
