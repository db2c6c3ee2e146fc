"""What the list tasks share: the token format, the evaluation families, and reading the answer.

A sample is the token sequence [x_1, ..., x_n, SEP] with values 0..V-1 and SEP = V, so d_vocab = V + 1 and
d_vocab_out = V; the answer is read from the logits at the last position (SEP).
"""
import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .tables import markdown_table, pct

UNIFORM_SIZE = 100_000  # fresh uniform lists in an evaluation suite


def to_tokens(values, V: int):
    """values [batch, n] -> tokens [batch, n + 1] with the separator SEP = V appended."""
    return torch.cat([values, torch.full((len(values), 1), V, dtype=values.dtype)], dim=1)


@torch.inference_mode()
def last_logits(model, tokens, batch_size: int = 8192, keep=None, kept=None):
    """[batch, d_vocab_out]: the logits at the last position, where every task reads its answer (on the CPU).
    keep: a hook name whose activation the same pass appends to the list `kept` (one tensor per chunk)."""
    device = next(model.parameters()).device
    chunks = []
    for x in tokens.split(batch_size):
        if keep:
            logits, cache = model.run_with_cache(x.to(device), names_filter=keep, last_only=True)
            kept.append(cache[keep].cpu())
        else:
            logits = model(x.to(device), last_only=True)
        chunks.append(logits[:, -1].cpu())
    return torch.cat(chunks)


def task_of(model):
    """The ListTask a checkpoint was trained for, found by convention: <its metadata's task>/dataset.py's task(n, V)
    at the checkpoint's n and V (ValueError when no such folder is here)."""
    name = model.metadata.get("task") if hasattr(model, "metadata") else None
    try:
        dataset = importlib.import_module(f"{name}.dataset")
    except (ImportError, TypeError):
        raise ValueError(f"the checkpoint names task {name!r}, which has no <task>/dataset.py here") from None
    return dataset.task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)


def loss_and_accuracy(logits, targets) -> tuple:
    """(mean cross-entropy, accuracy) of last-position logits [batch, d_vocab_out] against targets [batch]."""
    return F.cross_entropy(logits, targets).item(), (logits.argmax(-1) == targets).float().mean().item()


def evaluate(model, tokens, targets) -> tuple:
    """(mean loss, accuracy) of the answer read at the last position."""
    return loss_and_accuracy(last_logits(model, tokens), targets.cpu())


def answer_positions(tokens, targets):
    """[batch, n]: True at the list positions holding the answer (every copy of it; SEP excluded)."""
    return tokens[:, :-1] == targets[:, None]


def shuffle_rows(values, gen):
    return values.gather(1, torch.rand(values.shape, generator=gen).argsort(1))


def uniform_values(size, n, V, gen):
    return torch.randint(0, V, (size, n), generator=gen)


def uniform_below(high, n, gen):
    """[size, n] values drawn uniformly from 0..high[i] (inclusive), one row per entry of high."""
    return (torch.rand(len(high), n, generator=gen) * (high[:, None] + 1)).long()


def order_statistic_of(answer: Callable, n: int, V: int, samples: int = 4000, seed: int = 0) -> Optional[int]:
    """k when answer(values) is the k-th smallest value (0-based) on every one of `samples` lists (uniform ones,
    and ones of two or three distinct values, where 'k-th smallest' and 'k-th distinct' differ), else None: what
    shared.verify can decide from the weights. Found from the answer itself, so a task never declares it."""
    gen = torch.Generator().manual_seed(seed)
    few = torch.randint(0, V, (samples // 2, 3), generator=gen).gather(1, torch.randint(0, 3, (samples // 2, n),
                                                                                           generator=gen))
    values = torch.cat([uniform_values(samples - len(few), n, V, gen), few])
    try:
        answers = answer(values)
    except (ValueError, RuntimeError):
        return None
    ordered = values.sort(1).values
    ks = [k for k in range(n) if torch.equal(answers, ordered[:, k])]
    return ks[0] if len(ks) == 1 else None


class Families(dict):
    """Evaluation families as {display label: (tokens, targets)}, in the order they are reported, with a short
    key beside each label: code asks for a family by key (families.of("near_tie")) and never parses a label.
    `uniform` is the suite's fresh uniform sample (evaluation_suite), else the family of uniform lists."""

    def __init__(self, items=(), labels=None, fresh=None):
        super().__init__(items)
        self.labels = dict(labels or {})  # key -> label
        self.fresh = fresh  # the key of the fresh uniform sample, in an evaluation suite

    def label(self, key) -> str:
        if key not in self.labels:
            raise KeyError(f"no family {key!r}; known: {', '.join(self.labels)}")
        return self.labels[key]

    def of(self, key):
        return self[self.label(key)]

    @property
    def uniform_label(self) -> str:
        return self.label(self.fresh or "uniform")

    @property
    def uniform(self):
        return self[self.uniform_label]

    def sample(self, size: int) -> tuple:
        """(tokens, targets): the first `size` of the fresh uniform lists."""
        tokens, targets = self.uniform
        return tokens[:size], targets[:size]

    def others(self) -> list:
        """The labels of every family but the suite's fresh uniform sample."""
        return [label for label in self if label != self.uniform_label]

    def weakest(self, field=None) -> str:
        """The label of the family, the fresh uniform sample aside, whose value (or value[field]) is least: where
        an accuracy, a recovery or an agreement is lowest."""
        return min(self.others(), key=lambda label: self[label] if field is None else self[label][field])

    def joined(self) -> tuple:
        """(tokens, targets, sizes): every family's inputs in one batch, in order, and how many each has (to split
        a result back per family with .split(sizes))."""
        sizes = [len(y) for _, y in self.values()]
        return torch.cat([x for x, _ in self.values()]), torch.cat([y for _, y in self.values()]), sizes

    def like(self, values: dict) -> "Families":
        """Other values ({label: ...}, e.g. accuracies or faithfulness results) with these families' keys."""
        return Families(values, self.labels, self.fresh)

    def first(self, size: int, uniform_size: int = None) -> "Families":
        """The first `size` inputs of every family (of the fresh uniform sample: `uniform_size`, default size)."""
        sizes = {label: uniform_size or size if label == self.uniform_label else size for label in self}
        return self.like({label: (x[:sizes[label]], y[:sizes[label]]) for label, (x, y) in self.items()})


COMMON_FAMILIES = {"uniform": "uniform", "balanced": "every answer equally often", "all_equal": "all equal",
                   "sorted_ascending": "sorted ascending", "sorted_descending": "sorted descending"}


@dataclass
class ListTask:
    """A task on lists of n values in 0..V-1.

    answer(values) -> targets; balanced(size, n, V, gen) -> values whose answers are uniform over 0..V-1;
    adversarial(size, n, V, gen) -> {family key: (display label, values)} of the inputs this task finds hard;
    hard(size, n, V, gen) -> values of the hard kind, drawn broadly enough to train on.
    """
    name: str
    answer: Callable
    balanced: Callable
    adversarial: Callable
    hard: Callable
    n: int
    V: int

    @cached_property
    def order_statistic(self) -> Optional[int]:
        """k when the answer is the k-th smallest value (0-based), found by sampling (order_statistic_of)."""
        return order_statistic_of(self.answer, self.n, self.V)

    def batch(self, values):
        return to_tokens(values, self.V), self.answer(values)

    def sample_batch(self, batch_size, gen):
        """The training distribution: a third uniform i.i.d. values, a third with a uniformly drawn answer
        (uniform lists alone almost never have a large min, say), a third of the task's hard inputs."""
        third = batch_size // 3
        values = torch.cat([uniform_values(third, self.n, self.V, gen),
                            self.balanced(third, self.n, self.V, gen),
                            self.hard(batch_size - 2 * third, self.n, self.V, gen)])
        return self.batch(values)

    def families(self, size: int = 2000, seed: int = 0) -> Families:
        """The evaluation families every task reports (COMMON_FAMILIES), then its own, as Families."""
        gen = torch.Generator().manual_seed(seed)
        n, V = self.n, self.V
        values = {
            "uniform": uniform_values(size, n, V, gen),
            "balanced": self.balanced(size, n, V, gen),
            "all_equal": torch.randint(0, V, (size, 1), generator=gen).expand(size, n).clone(),
            "sorted_ascending": uniform_values(size, n, V, gen).sort(1).values,
            "sorted_descending": uniform_values(size, n, V, gen).sort(1, descending=True).values,
        }
        labels = dict(COMMON_FAMILIES)
        for key, (label, family) in self.adversarial(size, n, V, gen).items():
            labels[key], values[key] = label, family
        return Families({labels[key]: self.batch(v) for key, v in values.items()}, labels)


def evaluation_suite(task: ListTask, size: int = 2000, uniform_size: int = UNIFORM_SIZE, seed: int = 1) -> Families:
    """The families the README and notebooks report: `uniform_size` fresh uniform lists (key "fresh", the suite's
    `uniform`), then every family of task.families(size). Seeded apart from training (seed 0 is the
    training-time report)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    families = task.families(size, seed)
    label = f"uniform ({uniform_size:,})"
    return Families({label: task.batch(uniform_values(uniform_size, task.n, task.V, gen)), **families},
                    {"fresh": label, **families.labels}, fresh="fresh")


@torch.inference_mode()
def family_answers(model, families: dict, keep=None, kept=None) -> dict:
    """{family: (the model's answers [batch], the probability it gives the right answer [batch])}, from one pass
    (keep: a hook name whose activations that pass stores in kept[family])."""
    out = {}
    for name, (tokens, targets) in families.items():
        chunks = []
        logits = last_logits(model, tokens, keep=keep, kept=chunks)
        if keep:
            kept[name] = torch.cat(chunks)
        out[name] = (logits.argmax(-1), logits.softmax(-1).gather(1, targets[:, None])[:, 0])
    return out


def family_predictions(model, families: dict) -> dict:
    """{family: the model's answers [batch]} read at the last position."""
    return {name: answers for name, (answers, _) in family_answers(model, families).items()}


def family_accuracies(model, families: dict, predictions: dict = None) -> dict:
    """{family: accuracy} of the answer read at the last position (predictions: family_predictions, if known)."""
    predictions = predictions or family_predictions(model, families)
    return {name: (predictions[name] == y).float().mean().item() for name, (_, y) in families.items()}


def accuracy_table(models, families: dict) -> str:
    """A markdown table of errors, accuracy and the smallest probability given to the right answer per family
    (the README and notebooks print it; accuracy saturates at 100%, the probability shows how close a family
    comes to a mistake); `models` is one model, or {column label: model or its family_answers} to compare several
    on the same inputs."""
    models = models if isinstance(models, dict) else {"": models}
    answers = {k: m if isinstance(m, dict) else family_answers(m, families) for k, m in models.items()}
    header = ["family", "samples"] + [f"{k} {what}".strip() for k in models
                                      for what in ("errors", "accuracy", "smallest p(answer)")]
    rows = []
    for name, (_, targets) in families.items():
        row = [name, f"{len(targets):,}"]
        for predicted, p_right in (answers[k][name] for k in models):
            errors = (predicted != targets).sum().item()
            row += [f"{errors:,}", pct(1 - errors / len(targets)), f"{p_right.min().item():.4f}"]
        rows.append(row)
    return markdown_table(header, rows)


def mistakes(families: dict, predictions: dict, limit: int = 20) -> list:
    """Up to `limit` wrong answers as (family, values, target, prediction), across all families
    (predictions: family_predictions(model, families))."""
    found = []
    for name, (tokens, targets) in families.items():
        for i in (predictions[name] != targets).nonzero()[:, 0].tolist()[:limit - len(found)]:
            found.append((name, tokens[i, :-1].tolist(), targets[i].item(), predictions[name][i].item()))
    return found


@torch.no_grad()
def collect_mistakes(model, task, lists: int = 200_000, seed: int = 0, chunk: int = 20_000) -> list:
    """The model's mistakes on `lists` fresh lists of the task's training mixture (a third of them the hard kind,
    where mistakes are commonest), as (family 'search', values, target, prediction)."""
    gen, found = torch.Generator().manual_seed(10_007 + seed), []
    for start in range(0, lists, chunk):
        tokens, targets = task.sample_batch(min(chunk, lists - start), gen)
        predicted = last_logits(model, tokens).argmax(-1)
        found += [("search", tokens[i, :-1].tolist(), targets[i].item(), predicted[i].item())
                  for i in (predicted != targets).nonzero()[:, 0].tolist()]
    return found
