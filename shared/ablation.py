"""The one intervention primitive: run the model with activations replaced, as TransformerLens'
generic_activation_patch does, and thin named wrappers for every way this project ablates.

A Patch names a hook point, an index into its activation (positions, a head, neurons) and where the
replacement comes from:
  * "zero"; "mean" (over the reference inputs, position by position); "resample" (row i of the reference);
  * Matched(key): another input of the same batch that shares a property (the same median, say);
  * a tensor (what a program computed for that place), or a function fn(activation, run) of the activation
    and of the activations this run has produced so far (run[name] for each hook named in `needs`).
A path is a reader's view of one component's output: `reads(model, sender, reader, source)` patches only what
the reader (a head's 'q'/'k'/'v' input, an MLP, the logits) receives from the sender, everyone else sees the real
output. Everything here is built on `run_patched`.
"""
from dataclasses import dataclass
from typing import Callable, Union

import torch
import torch.nn.functional as F

from .components import output_hook, parse, senders

Source = Union[str, "Matched", torch.Tensor, Callable]


@dataclass(frozen=True)
class Matched:
    """Take the activation from another input of the batch with the same key [batch] (itself when no other has
    it): resampling that keeps the property the key names, and only it."""
    key: torch.Tensor
    seed: int = 0


@dataclass(frozen=True)
class Patch:
    hook: str  # a hook point, e.g. "blocks.0.mlp.hook_post"
    index: tuple = (Ellipsis,)  # into the activation, e.g. (slice(None), -1) for the last position
    source: Source = "mean"
    needs: tuple = ()  # hook names whose activations in this same run `source` reads


def matched_partners(key, seed: int = 0):
    """[batch] indices: for each input, another input with the same key (itself when no other has it), drawn at
    random, cyclically within each group of equal keys."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.argsort(key * len(key) + torch.randperm(len(key), generator=gen), stable=True)
    starts = torch.ones(len(key), dtype=torch.bool)
    starts[1:] = key[order][1:] != key[order][:-1]
    group = torch.cumsum(starts.long(), 0) - 1
    first = torch.nonzero(starts).flatten()
    rank = torch.arange(len(key)) - first[group]
    partner = torch.empty_like(order)
    partner[order] = order[first[group] + (rank + 1) % torch.bincount(group)[group]]
    return partner


def other_inputs(tokens, seed=0):
    """A reordering of tokens in which no row stays in place (row i of the result is another input of the same
    batch): resample ablation within one family."""
    if len(tokens) < 2:
        raise ValueError("resample ablation needs at least two inputs")
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    other = torch.empty_like(order)
    other[order] = order.roll(-1)  # each row takes the next one in a random cycle through all rows
    return tokens[other]


def _replacement(patch, act, run, reference):
    source = patch.source
    if callable(source):
        return source(act, run)
    if isinstance(source, torch.Tensor):
        return source.to(act)
    if source == "zero":
        return torch.zeros_like(act[patch.index])
    if isinstance(source, Matched):
        return act[matched_partners(source.key, source.seed)][patch.index]
    if source not in ("mean", "resample"):
        raise ValueError(f"a patch's source is 'zero', 'mean', 'resample', Matched, a tensor or a function, "
                         f"got {source!r}")
    ref = reference[patch.hook]
    if source == "mean":
        return ref.mean(0, keepdim=True).expand_as(act)[patch.index]
    if len(ref) != len(act):
        raise ValueError("resample needs as many reference inputs as inputs")
    return ref[patch.index]


@torch.no_grad()
def run_patched(model, tokens, patches, reference_tokens=None, last_only=True, keep=()):
    """The logits [batch, 1, d_vocab_out] at the last position (every position: last_only=False) of the model on
    tokens with every patch applied (in order, each seeing the activation as earlier patches left it). 'mean'
    and 'resample' read a normal run on reference_tokens (default: tokens). keep: hook names whose activations in
    this patched run are returned too, as (logits, {name: activation})."""
    patches = list(patches)
    wanted = {p.hook for p in patches if isinstance(p.source, str) and p.source in ("mean", "resample")}
    reference = {}
    if wanted:
        ref_tokens = tokens if reference_tokens is None else reference_tokens
        reference = model.run_with_cache(ref_tokens, names_filter=lambda name: name in wanted)[1].store
    run = {}

    def replace(patch):
        def hook(act, hook):
            act = act.clone()
            act[patch.index] = _replacement(patch, act, run, reference)
            return act
        return hook

    def store(act, hook):
        run[hook.name] = act

    needed = {name for p in patches for name in p.needs} | set(keep)
    hooks = [(p.hook, replace(p)) for p in patches] + [(name, store) for name in sorted(needed)]
    logits = model.run_with_hooks(tokens, hooks, last_only)
    return (logits, {name: run[name] for name in keep}) if keep else logits


@torch.no_grad()
def run_from(model, layer: int, resid, last_only: bool = True):
    """The logits (at the last position, or every one) of the model's own blocks `layer`.. and unembedding run on
    a given residual stream resid [batch, pos, d_model] (what enters block `layer`): a component's output replaced
    there stands in for it everywhere downstream. layer = n_layers: just the unembedding."""
    x = resid
    for i, block in enumerate(model.blocks[layer:], start=layer):
        x = block(x, last_only and i == model.cfg.n_layers - 1)
    x = model.ln_final(x)[:, -1:] if last_only else model.ln_final(x)
    return x @ model.W_U + model.b_U


def component_patch(model, name, source="mean", positions=slice(None), neurons=None) -> Patch:
    """A Patch on a component's output ('L0H1': its hook_result slice; 'MLP 0': hook_mlp_out, or with `neurons`
    the chosen neurons of hook_post) at `positions`."""
    hook, head = output_hook(model, name)
    if neurons is not None:
        if head is not None:
            raise ValueError(f"{name} is a head: neurons belong to MLPs")
        return Patch(f"blocks.{parse(name)[0]}.mlp.hook_post", (slice(None), positions, neurons), source)
    return Patch(hook, (slice(None), positions) if head is None else (slice(None), positions, head), source)


def ablated(model, tokens, names, method="mean", reference_tokens=None, positions=slice(None)):
    """Logits with the components `names` ablated together ('zero', 'mean' over reference_tokens, or
    'resample': row i of reference_tokens, default a reordering of tokens)."""
    if method not in ("zero", "mean", "resample"):
        raise ValueError(f"ablation method must be 'zero', 'mean' or 'resample', got {method!r}")
    if method == "resample" and reference_tokens is None:
        reference_tokens = other_inputs(tokens)
    return run_patched(model, tokens, [component_patch(model, name, method, positions) for name in names],
                       reference_tokens)


def ablated_accuracy(model, tokens, targets, names, method="mean", reference_tokens=None) -> float:
    """Accuracy at the last position with the components `names` ablated together (see `ablated`)."""
    logits = ablated(model, tokens, names, method, reference_tokens)[:, -1]
    return (logits.argmax(-1) == targets).float().mean().item()


def _reader_input(model, reader):
    """(hook that holds what `reader` computes from the residual stream, its index, hook of that residual
    stream, fn(residual) -> what the reader computes)."""
    if reader == "logits":
        last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
        return last, (Ellipsis,), last, lambda resid: resid
    name, _, part = reader.partition(".")
    layer, head = parse(name)
    block = model.blocks[layer]
    if head is None:
        mlp = block.mlp
        return (f"blocks.{layer}.mlp.hook_pre", (Ellipsis,), f"blocks.{layer}.hook_resid_mid",
                lambda resid: block.ln2(resid) @ mlp.W_in + mlp.b_in)
    if part not in ("q", "k", "v"):
        raise ValueError(f"{reader!r} is no reader: heads read through 'q', 'k' or 'v' ('L1H0.q')")
    W, b = {"q": (block.attn.W_Q, block.attn.b_Q), "k": (block.attn.W_K, block.attn.b_K),
            "v": (block.attn.W_V, block.attn.b_V)}[part]
    return (f"blocks.{layer}.attn.hook_{part}", (slice(None), slice(None), head), f"blocks.{layer}.hook_resid_pre",
            lambda resid: block.ln1(resid) @ W[head] + b[head])


def reads(model, reader, replaced: dict) -> Patch:
    """A Patch on what `reader` ('L1H0.q', 'MLP 1', 'logits') computes: the residual stream it reads with each
    sender's output (in this run) swapped for replaced[sender], a tensor [batch, pos, d_model] or
    fn(run) -> that tensor; every other reader sees the real outputs."""
    hook, index, resid, compute = _reader_input(model, reader)
    unread = [s for s in replaced if s not in senders(model, reader)]
    if unread:
        raise ValueError(f"{reader} does not read {', '.join(unread)}: a reader sees only earlier components")
    own = {s: output_hook(model, s) for s in replaced}

    def source(act, run):
        delta = 0
        for sender, value in replaced.items():
            out_hook, head = own[sender]
            mine = run[out_hook] if head is None else run[out_hook][:, :, head]
            delta = delta + (value(run) if callable(value) else value) - mine
        return compute(run[resid] + delta) if reader != "logits" else act + delta

    needs = tuple({resid} | {h for h, _ in own.values()}) if reader != "logits" else tuple({h for h, _ in own.values()})
    return Patch(hook, index, source, needs)


def path_ablated_accuracy(model, tokens, targets, sender, reader_parts, reference_tokens) -> float:
    """Accuracy when only the direct paths from component `sender` ('L0H0') into the readers `reader_parts`
    (e.g. ['L1H0.q'], or q, k and v together) carry its mean output over reference_tokens, position by
    position; every other reader sees its real output."""
    hook, head = output_hook(model, sender)
    ref = model.run_with_cache(reference_tokens, names_filter=hook)[1][hook]
    mean = (ref if head is None else ref[:, :, head]).mean(0, keepdim=True)
    patches = [reads(model, reader, {sender: mean.expand(len(tokens), -1, -1)}) for reader in reader_parts]
    logits = run_patched(model, tokens, patches)[:, -1]
    return (logits.argmax(-1) == targets).float().mean().item()


def attention_restricted(layer, head, key_mask, query_pos=-1) -> Patch:
    """A Patch on a head's pattern at query_pos: only the keys where key_mask [batch, k <= pos] is True, in the
    proportions the head gives them (evenly where its weight there underflowed; an input with no such key keeps
    its pattern): what an explanation may say a head does ("attends only to the answer")."""
    def source(pattern, run):
        row = pattern[:, head, query_pos]
        allowed = F.pad(key_mask.to(row.device, row.dtype), (0, row.shape[-1] - key_mask.shape[1]))
        kept = row * allowed
        total = kept.sum(-1, keepdim=True)
        even = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)
        restricted = torch.where(total > 0, kept / total.clamp(min=1e-30), even)
        return torch.where(allowed.any(-1, keepdim=True), restricted, row)
    return Patch(f"blocks.{layer}.attn.hook_pattern", (slice(None), head, query_pos), source)


def attention_one_hot(layer, head, key_positions, query_pos=-1) -> Patch:
    """A Patch on a head's pattern at query_pos: all of it on key_positions[i] for input i."""
    return attention_restricted(layer, head, F.one_hot(key_positions, key_positions.max().item() + 1).bool(),
                                query_pos)
