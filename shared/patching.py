"""Activation patching: run a corrupted input with a clean run's activation put back at one hook (position,
head), and report the share of the clean logit difference it restores (shared.ablation.run_patched does the run).
"""
import torch

from .ablation import Patch, run_patched


HEAD_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result")  # [batch, pos, head, ...]


def logit_diff(logits, answer, other):
    """logit[answer] - logit[other] at the last position, per sample."""
    last = logits[:, -1]
    return last.gather(1, answer[:, None])[:, 0] - last.gather(1, other[:, None])[:, 0]


def _patch_index(model, hook_name, position, head, dims):
    """The index into hook_name's activation for one position and/or head (or all of it)."""
    by_head = hook_name.endswith(("hook_pattern", "hook_attn_scores"))
    if head is not None and not (by_head or hook_name.endswith(HEAD_HOOKS)):
        raise ValueError(f"{hook_name} has no head dimension; head= applies to {', '.join(HEAD_HOOKS)}, "
                         "hook_pattern and hook_attn_scores")
    index = [slice(None)] * dims
    if position is not None:
        index[2 if by_head else 1] = position
    if head is not None:
        index[1 if by_head else 2] = head
    return tuple(index)


@torch.no_grad()
def _patch_runs(model, clean_tokens, corrupt_tokens, clean_answer, corrupt_answer, hook_name, min_difference):
    """(the clean activation at hook_name, the clean and the corrupted mean logit differences), once for every
    patch of a sweep; ValueError when the two differences are too close for a recovered fraction to mean anything."""
    clean_logits, cache = model.run_with_cache(clean_tokens, names_filter=hook_name)
    clean = logit_diff(clean_logits, clean_answer, corrupt_answer).mean()
    corrupt = logit_diff(model(corrupt_tokens, last_only=True), clean_answer, corrupt_answer).mean()
    if (clean - corrupt).abs() < min_difference:
        raise ValueError(f"clean and corrupted logit differences are {clean:.3g} and {corrupt:.3g}: too close "
                         "for a recovered fraction to mean anything (does the corruption change the answer?)")
    return cache[hook_name], clean, corrupt


@torch.no_grad()
def patch(model, clean_tokens, corrupt_tokens, clean_answer, corrupt_answer, hook_name, position=None,
          head=None, min_difference=1e-3):
    """Run the corrupted input with `hook_name`'s clean activation patched in (at one position and/or
    head, or all of it) and return the fraction of the clean logit difference recovered:
    (patched - corrupt) / (clean - corrupt), with the difference logit[clean answer] - logit[corrupt
    answer] at the last position, averaged over the batch before dividing. Raises ValueError when clean and
    corrupt differ by less than min_difference (the fraction would be noise over almost nothing) or when
    head= names a hook without a head dimension."""
    return patch_sweep(model, clean_tokens, corrupt_tokens, clean_answer, corrupt_answer, hook_name,
                       [(position, head)], min_difference)[0].item()


@torch.no_grad()
def patch_sweep(model, clean_tokens, corrupt_tokens, clean_answer, corrupt_answer, hook_name, places=None,
                min_difference=1e-3):
    """The recovered fraction (see patch) at each of `places`, [(position, head)] (default: every position, head
    None): the clean and corrupted runs are made once for all of them."""
    places = places if places is not None else [(p, None) for p in range(clean_tokens.shape[1])]
    clean_act, clean, corrupt = _patch_runs(model, clean_tokens, corrupt_tokens, clean_answer, corrupt_answer,
                                            hook_name, min_difference)
    fractions = []
    for position, head in places:
        index = _patch_index(model, hook_name, position, head, clean_act.dim())
        patched = logit_diff(run_patched(model, corrupt_tokens, [Patch(hook_name, index, clean_act[index])]),
                             clean_answer, corrupt_answer).mean()
        fractions.append(((patched - corrupt) / (clean - corrupt)).item())
    return torch.tensor(fractions)
