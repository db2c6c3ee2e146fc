"""What the list tasks share: the token format and the evaluation families.

A sample is the token sequence [x_1, ..., x_n, SEP] with values 0..V-1 and SEP = V, so d_vocab = V + 1 and
d_vocab_out = V; the answer is read from the logits at the last position (SEP).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .train import evaluate


def to_tokens(values, V: int):
    """values [batch, n] -> tokens [batch, n + 1] with the separator SEP = V appended."""
    return torch.cat([values, torch.full((len(values), 1), V, dtype=values.dtype)], dim=1)


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


UNIFORM_SIZE = 100_000  # fresh uniform lists in an evaluation suite


def fresh_uniform_label(size: int = UNIFORM_SIZE) -> str:
    """The display label of an evaluation suite's fresh uniform sample: 'uniform (100,000)'."""
    return f"uniform ({size:,})"


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

    def like(self, values: dict) -> "Families":
        """Other values ({label: ...}, e.g. accuracies or faithfulness results) with these families' keys."""
        return Families(values, self.labels, self.fresh)

    def head(self, size: int) -> "Families":
        """The first `size` inputs of every family."""
        return self.like({label: (x[:size], y[:size]) for label, (x, y) in self.items()})


COMMON_FAMILIES = {"uniform": "uniform", "balanced": "every answer equally often", "all_equal": "all equal",
                   "sorted_ascending": "sorted ascending", "sorted_descending": "sorted descending"}


@dataclass
class ListTask:
    """A task on lists of n values in 0..V-1.

    answer(values) -> targets; balanced(size, n, V, gen) -> values whose answers are uniform over 0..V-1;
    adversarial(size, n, V, gen) -> {family key: (display label, values)} of the inputs this task finds hard;
    hard(size, n, V, gen) -> values of the hard kind, drawn broadly enough to train on.
    order_statistic: k when the answer is the k-th smallest value (0-based), which shared.verify can decide
    from the weights; None for any other answer.
    """
    name: str
    answer: Callable
    balanced: Callable
    adversarial: Callable
    hard: Callable
    n: int
    V: int
    order_statistic: Optional[int] = None

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


def family_accuracies(model, families: dict) -> dict:
    """{family: accuracy} of the answer read at the last position."""
    return {name: evaluate(model, tokens, targets)[1] for name, (tokens, targets) in families.items()}


def evaluation_suite(task: ListTask, size: int = 2000, uniform_size: int = UNIFORM_SIZE, seed: int = 1) -> Families:
    """The families the README and notebooks report: `uniform_size` fresh uniform lists (key "fresh", the suite's
    `uniform`), then every family of task.families(size). Seeded apart from training (seed 0 is the
    training-time report)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    families = task.families(size, seed)
    label = fresh_uniform_label(uniform_size)
    return Families({label: task.batch(uniform_values(uniform_size, task.n, task.V, gen)), **families},
                    {"fresh": label, **families.labels}, fresh="fresh")


def accuracy_table(models, families: dict) -> str:
    """A markdown table of errors, accuracy and the smallest probability given to the right answer per family
    (the README and notebooks print it; accuracy saturates at 100%, the probability shows how close a family
    comes to a mistake); `models` is one model, or {column label: model} to compare several on the same inputs."""
    models = models if isinstance(models, dict) else {"": models}
    head = "| family | samples |" + "".join(f" {k} errors | {k} accuracy | {k} smallest p(answer) |".replace("  ", " ")
                                          for k in models)
    lines = [head, "|---|---:|" + "---:|---:|---:|" * len(models)]
    for name, (tokens, targets) in families.items():
        row = f"| {name} | {len(targets):,} |"
        for model in models.values():
            logits = last_logits(model, tokens)
            errors = (logits.argmax(-1) != targets).sum().item()
            smallest = logits.softmax(-1).gather(1, targets[:, None]).min().item()
            row += f" {errors:,} | {1 - errors / len(targets):.2%} | {smallest:.4f} |"
        lines.append(row)
    return "\n".join(lines)


@torch.inference_mode()
def last_logits(model, tokens, batch_size: int = 8192):
    """[batch, d_vocab_out]: the logits at the last position, where every task reads its answer (on the CPU)."""
    device = next(model.parameters()).device
    return torch.cat([model(x.to(device), last_only=True)[:, -1].cpu() for x in tokens.split(batch_size)])


def family_predictions(model, families: dict) -> dict:
    """{family: the model's answers [batch]} read at the last position."""
    return {name: last_logits(model, tokens).argmax(-1) for name, (tokens, _) in families.items()}


def mistakes(model, families: dict, limit: int = 20, predictions: dict = None) -> list:
    """Up to `limit` wrong answers as (family, values, target, prediction), across all families
    (predictions: family_predictions(model, families), if already computed)."""
    predictions = predictions or family_predictions(model, families)
    found = []
    for name, (tokens, targets) in families.items():
        for i in (predictions[name] != targets).nonzero()[:, 0].tolist():
            found.append((name, tokens[i, :-1].tolist(), targets[i].item(), predictions[name][i].item()))
            if len(found) >= limit:
                return found
    return found
