"""A model's components by name, in one convention: heads 'L{layer}H{head}', MLPs 'MLP {layer}'.

Everything that names a component or reads a name back goes through here: the claims, the mechanism measures,
faithfulness, ablation and direct logit attribution; and which component's output reaches which reader (a head's
query, key or value input 'L1H0.q', an MLP, the logits).
"""


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def mlp_name(layer: int) -> str:
    return f"MLP {layer}"


def is_mlp(name: str) -> bool:
    return name.startswith("MLP ")


def parse(name: str) -> tuple:
    """(layer, head) of a head's name, (layer, None) of an MLP's; ValueError for anything else."""
    try:
        if is_mlp(name):
            return int(name[4:]), None
        layer, head = name[1:].split("H") if name.startswith("L") else (None, None)
        return int(layer), int(head)
    except (TypeError, ValueError):
        raise ValueError(f"{name!r} names no component: heads are 'L0H1', MLPs 'MLP 0'") from None


def components(model) -> list:
    """Every head and MLP of the model, by name: the heads layer by layer, then the MLPs."""
    cfg = model.cfg
    heads = [head_name(l, h) for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    return heads + ([mlp_name(l) for l in range(cfg.n_layers)] if cfg.d_mlp else [])


def output_hook(model, name):
    """(hook name, head index or None) where the component's output is read: a head's hook_result slice
    (without b_O), an MLP's hook_mlp_out."""
    if name not in components(model):
        raise ValueError(f"no component {name!r} in this model; it has {components(model)}")
    layer, head = parse(name)
    return (f"blocks.{layer}.hook_mlp_out", None) if head is None else (f"blocks.{layer}.attn.hook_result", head)


def output_names(model, which) -> list:
    """The hook names a cache needs for the outputs of the components `which`."""
    return sorted({output_hook(model, c)[0] for c in which})


def outputs_from(cache, model, which) -> dict:
    """{component: its output [batch, pos, d_model] (heads without b_O)} from a cache of output_names."""
    outputs = {}
    for c in which:
        hook, head = output_hook(model, c)
        outputs[c] = cache[hook] if head is None else cache[hook][:, :, head]
    return outputs


def receivers(model) -> list:
    """What a path can end in: each head's query, key and value input ('L1H0.q'), each MLP, and 'logits'."""
    heads = [c for c in components(model) if not is_mlp(c)]
    mlps = [c for c in components(model) if is_mlp(c)]
    return [f"{h}.{x}" for h in heads for x in "qkv"] + mlps + ["logits"]


def senders(model, receiver):
    """Components whose output reaches `receiver`'s input: earlier layers, and this layer's heads for its MLP."""
    if receiver == "logits":
        return components(model)
    layer = parse(receiver.split(".")[0])[0]
    return [c for c in components(model) if parse(c)[0] < layer or (is_mlp(receiver) and parse(c)[0] == layer
                                                                     and not is_mlp(c))]
