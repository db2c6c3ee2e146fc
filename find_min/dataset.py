"""find_min: the answer is the smallest of n values (duplicates allowed).

Training distribution (ListTask.sample_batch), in equal thirds: uniform i.i.d. lists; lists whose minimum a
is drawn uniformly from 0..V-1 (one position holds a, the others are uniform on a..V-1); near ties (the
others within 1..3 above a). Uniform lists alone would almost never show a large minimum:
P(min >= 40) = (24/64)^10, about 6e-5, for n = 10, V = 64.
"""
from pathlib import Path

import torch

from shared.tasks import ListTask, shuffle_rows, uniform_below

TASK = Path(__file__).resolve().parent.name  # a task is named after its folder: a copied folder is a new task
N = 10  # list length
V = 64  # values are 0..V-1; the separator token is V


def answer(values):
    return values.min(dim=-1).values


def with_min(a, n, V, gen, above=None):
    """Lists whose minimum is a[i]: a at position 0 (shuffle afterwards to move it), the rest above it."""
    if above is None:
        above = (V - 1) - uniform_below(V - 1 - a, n - 1, gen)  # uniform on a..V-1
    return torch.cat([a[:, None], above], dim=1)


def balanced(size, n, V, gen):
    a = torch.randint(0, V, (size,), generator=gen)
    return shuffle_rows(with_min(a, n, V, gen), gen)


def hard(size, n, V, gen):
    """Near ties: the minimum a once, every other value within a+1..a+s for a random spread s in 1..3."""
    a = torch.randint(0, V - 1, (size,), generator=gen)
    spread = torch.minimum(torch.randint(1, 4, (size,), generator=gen), V - 1 - a)
    above = a[:, None] + 1 + uniform_below(spread - 1, n - 1, gen)
    return shuffle_rows(with_min(a, n, V, gen, above=above), gen)


def adversarial(size, n, V, gen):
    """Inputs hard for an attention argmin: a competitor one value above the minimum, the minimum at an
    edge position, and lists crowded into the top of the range."""
    a = torch.randint(0, V - 1, (size,), generator=gen)
    near = with_min(a, n, V, gen, above=(a[:, None] + 1).expand(size, n - 1))
    first = with_min(torch.randint(0, V, (size,), generator=gen), n, V, gen)
    return {
        "near_tie": ("near tie (others = min + 1)", shuffle_rows(near, gen)),
        "near_tie_min_first": ("near tie, min first", near),
        "near_tie_min_last": ("near tie, min last", near.flip(1)),
        "min_first": ("min first", first),
        "min_last": ("min last", first.flip(1)),
        "top_of_range": ("top of range (values >= V - 8)", V - 8 + torch.randint(0, 8, (size, n), generator=gen)),
    }


def task(n: int = N, V: int = V) -> ListTask:
    return ListTask(TASK, answer, balanced, adversarial, hard, n, V)
