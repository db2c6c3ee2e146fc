"""find_median's trained model as a short program: what each component computes, in numbers read off the model.

    python find_median/explanation.py [CHECKPOINT]   # fit the program, print it and its fidelity table

The program, one term per component that matters (each term's numbers are fitted to that component's own
activations on sampled lists, never to the labels):

    1. average   layer 0 at SEP:   w_i = softmax(s0[x_i] + p0[i])                       (exact, from the weights)
    2. middle    MLP 0 at SEP:     hands on the median m and its sorted neighbours lo = x_(k-1), hi = x_(k+1)
                                   (computed here from the histogram layer 0 gathers)
    3. keys      MLP 0 at the keys: each key carries its own value and position
    4. select    layer 1's score:  score_i = B[x_i] + G[x_i - m] + L[x_i - lo] + H[x_i - hi] + P[i]; SEP: S
    5. copy      layer 1's output: logit(u) += g[u] mass(u) + sum_d N[d] mass(u - d),  mass(u) = sum_{i: x_i = u} a_i
    6. correct   MLP 1:            logit(u) += Cm[u - m] + Cl[u - lo] + Ch[u - hi] + c_mass mass(u) + c_in [u in list]
                                   (+ a bias per value)

Terms 2 and 3 are functional: they say what a component hands on, and hold no numbers. They are tested by
resampling the component from another list that shares exactly that (find_median.dataset.same_middle, and a list
with the same value at the same position), the others by putting the term's own numbers in the component's place
(`substitution_table`). `fidelity` compares the whole program with the model: accuracy, answers, attention, and
the model's own mistakes.
"""
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared import circuits as C  # noqa: E402
from shared.ablation import Patch, run_patched  # noqa: E402
from shared.tables import markdown_table, num, pct  # noqa: E402
from shared.tasks import to_tokens, uniform_values  # noqa: E402

SPREAD = 8  # the copy's spread reaches this many values either side of the attended one
TABLES = {"average_value": "s0", "average_position": "p0", "score_value": "B", "score_median": "G",
          "score_below": "L", "score_above": "H", "score_position": "P", "score_sep": "S", "copy_gain": "g",
          "copy_spread": "N", "fix_median": "Cm", "fix_below": "Cl", "fix_above": "Ch", "fix_mass": "c_mass",
          "fix_present": "c_in", "bias": "b"}


def lookup(table, index):
    """table[index] for a [batch, k] index, as a gather: the same numbers, and fitting (its gradient a scatter-add
    per list) runs faster than through indexing's."""
    return table.expand(len(index), -1).gather(1, index)


@dataclass
class Explanation:
    """The program's numbers (module docstring); every method computes from them alone, keeping no model."""
    n: int
    V: int
    average_value: torch.Tensor  # [V + 1]: layer 0's score from SEP for each token (SEP = V)
    average_position: torch.Tensor  # [n + 1]
    score_value: torch.Tensor  # [V]
    score_median: torch.Tensor  # [2V - 1]: indexed by x - m + V - 1, likewise the next two
    score_below: torch.Tensor
    score_above: torch.Tensor
    score_position: torch.Tensor  # [n]
    score_sep: torch.Tensor  # [1]
    copy_gain: torch.Tensor  # [V]
    copy_spread: torch.Tensor  # [2 * SPREAD + 1]: indexed by u - x + SPREAD
    fix_median: torch.Tensor  # [2V - 1]: indexed by u - m + V - 1, likewise the next two
    fix_below: torch.Tensor
    fix_above: torch.Tensor
    fix_mass: torch.Tensor  # [1]
    fix_present: torch.Tensor  # [1]
    bias: torch.Tensor  # [V]

    def numbers(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("n", "V")}

    def count(self) -> int:
        """How many numbers the program holds."""
        return sum(t.numel() for t in self.numbers().values())

    def to_json(self) -> str:
        return json.dumps({"n": self.n, "V": self.V, **{k: v.tolist() for k, v in self.numbers().items()}})

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        data = json.loads(text)
        return cls(data.pop("n"), data.pop("V"), **{k: torch.tensor(v, dtype=torch.float32) for k, v in data.items()})

    # --- the program -------------------------------------------------------------------------------------------
    def average(self, tokens):
        """[batch, n + 1]: layer 0's SEP attention (term 1)."""
        return (self.average_value[tokens] + self.average_position[:tokens.shape[1]]).softmax(-1)

    def middle(self, tokens):
        """(lo, m, hi) [batch] each: the median and its sorted neighbours, as MLP 0 hands them on (term 2): the
        middle order statistics of the histogram layer 0 gathers (each value's weight is about 1/(n+1), so the
        counts, and the sorted list, are the histogram's)."""
        k, ordered = self.n // 2, tokens[:, :-1].sort(-1).values
        return ordered[:, k - 1], ordered[:, k], ordered[:, k + 1]

    def scores(self, tokens):
        """[batch, n + 1]: the selecting head's score from SEP (term 4) to every key, then SEP."""
        lo, m, hi = self.middle(tokens)
        x, offset = tokens[:, :-1], self.V - 1
        keys = (lookup(self.score_value, x) + lookup(self.score_median, x - m[:, None] + offset) +
                lookup(self.score_below, x - lo[:, None] + offset) + lookup(self.score_above, x - hi[:, None] + offset)
                + self.score_position[:x.shape[1]])
        return torch.cat([keys, self.score_sep.expand(len(x), 1)], 1)

    def attention(self, tokens):
        """[batch, n + 1]: the selecting head's SEP attention over the n keys and SEP."""
        return self.scores(tokens).softmax(-1)

    def mass(self, tokens, attention):
        """[batch, V]: the attention on each value (copies summed)."""
        return torch.zeros(len(tokens), self.V).scatter_add_(1, tokens[:, :-1], attention[:, :-1])

    def copy(self, tokens, attention):
        """[batch, V]: the logits the selecting head's copy writes (term 5), for a given attention."""
        mass = self.mass(tokens, attention)
        return self.copy_gain * mass + mass @ self.spread_matrix()

    def spread_matrix(self):
        """[V, V]: N[u - x + SPREAD] from an attended value x to a logit u within SPREAD of it, else 0."""
        offset = torch.arange(self.V)[None, :] - torch.arange(self.V)[:, None] + SPREAD
        inside = (offset >= 0) & (offset <= 2 * SPREAD)
        return torch.where(inside, self.copy_spread[offset.clamp(0, 2 * SPREAD)], 0.0)

    def correction(self, tokens, attention):
        """[batch, V]: what MLP 1 adds (term 6): a pull towards the median and away from or towards its
        neighbours, on top of the attended mass and the values the list holds."""
        lo, m, hi = self.middle(tokens)
        u, offset = torch.arange(self.V), self.V - 1
        mass = self.mass(tokens, attention)
        present = torch.zeros(len(tokens), self.V).scatter_(1, tokens[:, :-1], 1.0)
        return (lookup(self.fix_median, u - m[:, None] + offset) + lookup(self.fix_below, u - lo[:, None] + offset) +
                lookup(self.fix_above, u - hi[:, None] + offset) + self.fix_mass * mass + self.fix_present * present)

    def logits(self, tokens, attention=None):
        """[batch, V]: SEP's logits, from the program's numbers alone (its own attention unless one is given)."""
        attention = self.attention(tokens) if attention is None else attention
        return self.copy(tokens, attention) + self.correction(tokens, attention) + self.bias


# --- fitting the numbers to the model ----------------------------------------------------------------------------
def zeros(n: int, V: int) -> Explanation:
    sizes = {"average_value": V + 1, "average_position": n + 1, "score_value": V, "score_median": 2 * V - 1,
             "score_below": 2 * V - 1, "score_above": 2 * V - 1, "score_position": n, "score_sep": 1,
             "copy_gain": V, "copy_spread": 2 * SPREAD + 1, "fix_median": 2 * V - 1, "fix_below": 2 * V - 1,
             "fix_above": 2 * V - 1, "fix_mass": 1, "fix_present": 1, "bias": V}
    return Explanation(n, V, **{k: torch.zeros(size) for k, size in sizes.items()})


@torch.no_grad()
def average_from_weights(model, program: Explanation):
    """Term 1, exact: layer 0's full QK score from SEP is a token part plus a position part."""
    n, V = program.n, program.V
    scores = C.full_qk_circuit(model, 0, V, n, range(n + 1))  # [position, token]
    program.average_value = scores[0].clone()
    program.average_position = scores[:, 0] - scores[0, 0]


# what a run must keep for direct_parts: the selecting head's pattern, its output, and what the rest writes
PARTS = ["blocks.1.attn.hook_pattern", "blocks.1.hook_attn_out", "blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out"]


def direct_parts(model, run) -> tuple:
    """(the selecting head's SEP attention, its direct logits at SEP, everything else's: MLP 1, layer 0, the
    embeddings and b_U) from a run's activations of PARTS; with no final LayerNorm the two logits sum to the model's."""
    head = run["blocks.1.hook_attn_out"][:, -1] @ model.W_U
    rest = (run["blocks.1.hook_resid_pre"][:, -1] + run["blocks.1.hook_mlp_out"][:, -1]) @ model.W_U + model.b_U
    return run["blocks.1.attn.hook_pattern"][:, 0, -1], head, rest


@torch.no_grad()
def targets_of(model, tokens) -> dict:
    """What the program's terms are fitted to, from one run of the model: its answer distribution at SEP, the
    selecting head's SEP attention, and the direct logits of the head and of everything else (direct_parts)."""
    logits, cache = model.run_with_cache(tokens, names_filter=PARTS)
    attention, head, rest = direct_parts(model, cache)
    return {"answers": logits[:, -1].softmax(-1), "attention": attention, "copy": head, "correction": rest}


def training_lists(task, size: int, seed: int):
    """Lists to fit on: half fresh uniform, half the training mixture (uniform, balanced and hard lists)."""
    gen = torch.Generator().manual_seed(seed)
    uniform = task.batch(uniform_values(size // 2, task.n, task.V, gen))[0]
    return torch.cat([uniform, task.sample_batch(size - size // 2, gen)[0]])


def _fit(program, names, loss_of, steps: int, lr: float):
    """Adam on the named tensors of the program, minimising loss_of(program) (with gradients on even when the caller
    measures under torch.no_grad)."""
    for name in names:
        getattr(program, name).requires_grad_(True)
    opt = torch.optim.Adam([getattr(program, name) for name in names], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_of(program)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for name in names:
        setattr(program, name, getattr(program, name).detach())


def centred(x):
    return x - x.mean(-1, keepdim=True)


def fit(model, task, size: int = 10000, steps: int = 300, seed: int = 0) -> Explanation:
    """The program's numbers for a trained find_median model (two layers, one head each, MLPs, no LayerNorm):
    term 1 from the weights; term 4 to the selecting head's real SEP attention (cross-entropy); terms 5 and 6 to
    the direct logits of the selecting head and of the rest of the model (least squares, centred per list), with
    the model's own attention; then every term together to the model's logits and attention."""
    cfg = model.cfg
    if cfg.n_layers != 2 or cfg.n_heads != 1 or cfg.d_mlp is None or cfg.normalization_type is not None:
        raise ValueError("the program explains a two-layer, one-head find_median model with MLPs and no LayerNorm")
    program = zeros(task.n, task.V)
    average_from_weights(model, program)
    tokens = training_lists(task, size, seed)
    target = targets_of(model, tokens)
    _fit(program, ["score_value", "score_median", "score_below", "score_above", "score_position", "score_sep"],
         lambda p: soft_cross_entropy(target["attention"], p.attention(tokens)), steps, 0.1)
    copy_loss = lambda p: (centred(p.copy(tokens, target["attention"])) - centred(target["copy"])).pow(2).mean()
    correction_loss = lambda p: (p.correction(tokens, target["attention"]) + p.bias - target["correction"]).pow(2).mean()
    _fit(program, ["copy_gain", "copy_spread"], copy_loss, steps, 0.1)
    _fit(program, ["fix_median", "fix_below", "fix_above", "fix_mass", "fix_present", "bias"], correction_loss, steps, 0.1)
    together = [name for name in TABLES if not name.startswith("average")]  # each term kept close to its own target
    _fit(program, together, lambda p: whole_loss(p, tokens, target) + 0.01 * (copy_loss(p) + correction_loss(p)),
         steps // 2, 0.01)
    return program


def whole_loss(program, tokens, target) -> torch.Tensor:
    """Cross-entropy of the program's answer distribution and SEP attention against the model's (program.logits,
    with the attention computed once for both)."""
    attention = program.attention(tokens)
    return (soft_cross_entropy(target["answers"], program.logits(tokens, attention).softmax(-1)) +
            soft_cross_entropy(target["attention"], attention))


def soft_cross_entropy(p, q) -> torch.Tensor:
    """Mean over lists of -sum p log q: distributions p (the model's) and q (the program's), [batch, k] each."""
    return -(p * q.clamp_min(1e-30).log()).sum(-1).mean()


# --- how well the program stands in for the model ---------------------------------------------------------------
@torch.no_grad()
def fidelity(program: Explanation, model, suite, predictions, model_attention) -> dict:
    """{family: the program's accuracy, its answer agreement with the model, the mean total-variation distance
    between its SEP attention and the selecting head's, and how often its top key is the head's (and holds the same
    value)}; predictions and model_attention: the model's answers and its selecting head's SEP attention per
    family."""
    out = {}
    for family, (tokens, targets) in suite.items():
        answers, attention, mine = program.logits(tokens).argmax(-1), model_attention[family], program.attention(tokens)
        top, theirs = mine.argmax(-1), attention.argmax(-1)
        values = torch.cat([tokens[:, :-1], torch.full((len(tokens), 1), -1)], 1)  # SEP holds no value
        rows = torch.arange(len(tokens))
        out[family] = {"accuracy": (answers == targets).float().mean().item(),
                       "agreement": (answers == predictions[family]).float().mean().item(),
                       "attention distance": C.attention_distance(mine, attention),
                       "same top key": (top == theirs).float().mean().item(),
                       "same top value": (values[rows, top] == values[rows, theirs]).float().mean().item()}
    return suite.like(out)


@torch.no_grad()
def on_mistakes(program: Explanation, wrong) -> dict:
    """On the model's mistakes ([(family, values, target, prediction)]): how many, how often the program is wrong
    too, and how often it gives the model's wrong answer."""
    if not wrong:
        return {"mistakes": 0, "program wrong": None, "same wrong answer": None}
    tokens = to_tokens(torch.tensor([values for _, values, _, _ in wrong]), program.V)
    answers = program.logits(tokens).argmax(-1)
    targets, predicted = torch.tensor([w[2] for w in wrong]), torch.tensor([w[3] for w in wrong])
    return {"mistakes": len(wrong), "program wrong": (answers != targets).float().mean().item(),
            "same wrong answer": (answers == predicted).float().mean().item()}


def fidelity_table(results: dict, mistakes: dict) -> str:
    rows = [[family, pct(r["accuracy"]), pct(r["agreement"]), num(r["attention distance"]), pct(r["same top key"]),
             pct(r["same top value"])] for family, r in results.items()]
    rows.append([f"the model's {mistakes['mistakes']} mistakes (the suite's and a search's)",
                 pct(1 - mistakes["program wrong"]) if mistakes["mistakes"] else "-",
                 pct(mistakes["same wrong answer"]) if mistakes["mistakes"] else "-", "-", "-", "-"])
    return markdown_table(["family", "program accuracy", "same answer as the model", "attention distance (TV)",
                           "same top key", "top key holds the same value"], rows)


TERMS = {"average": "layer 0's SEP attention", "middle": "MLP 0 at SEP", "keys": "MLP 0 at the keys",
         "select": "the selecting head's score", "copy": "the selecting head's copy", "correct": "MLP 1's correction"}


@torch.no_grad()
def donors_output(model, donors, positions):
    """MLP 0's output at `positions` on donor lists [batch, n] (their SEP appended)."""
    tokens = to_tokens(donors, model.cfg.d_vocab_out)
    return model.run_with_cache(tokens, names_filter="blocks.0.hook_mlp_out", stop_at_layer=1)[1][
        "blocks.0.hook_mlp_out"][:, positions]


def same_key_donors(values, V, gen):
    """[batch, n, n]: for each list and position i, a fresh uniform list holding the same value at position i."""
    donors = torch.randint(0, V, (values.shape[1], *values.shape), generator=gen)
    for i in range(values.shape[1]):
        donors[i, :, i] = values[:, i]
    return donors


@torch.no_grad()
def term_patches(program, model, tokens, terms, gen, ablate: bool = False) -> list:
    """shared.ablation Patches putting the program's terms among `terms` in their components' place (ablate=True:
    those components mean-ablated instead, the baseline of the loss recovered). Terms 5 and 6 act on the logits
    and are applied by substituted_logits."""
    from find_median.dataset import same_middle
    n, values, patches = program.n, tokens[:, :-1], []
    mean = lambda hook, index: Patch(hook, index, "mean")
    if "average" in terms:
        index = (slice(None), 0, -1)
        patches.append(mean("blocks.0.attn.hook_pattern", index) if ablate else
                       Patch("blocks.0.attn.hook_pattern", index, program.average(tokens)))
    if "middle" in terms:
        index = (slice(None), -1)
        patches.append(mean("blocks.0.hook_mlp_out", index) if ablate else
                       Patch("blocks.0.hook_mlp_out", index, donors_output(model, same_middle(values, 1, program.V, gen), -1)))
    if "keys" in terms:
        index = (slice(None), slice(0, n))
        donors = same_key_donors(values, program.V, gen)
        patches.append(mean("blocks.0.hook_mlp_out", index) if ablate else Patch(
            "blocks.0.hook_mlp_out", index, torch.stack([donors_output(model, donors[i], i) for i in range(n)], 1)))
    if "select" in terms:
        index = (slice(None), 0, -1)
        patches.append(mean("blocks.1.attn.hook_attn_scores", index) if ablate else
                       Patch("blocks.1.attn.hook_attn_scores", index, program.scores(tokens)))
    return patches


@torch.no_grad()
def substituted_logits(program, model, tokens, terms, gen, ablate: bool = False):
    """[batch, V]: the model's SEP logits with the program's terms among `terms` in their components' place (or
    those components mean-ablated): terms 1-4 as patches, terms 5 and 6 in place of the selecting head's direct
    logits and of everything else's (the model has no final LayerNorm, so its logits are the sum of the two)."""
    logits, run = run_patched(model, tokens, term_patches(program, model, tokens, terms, gen, ablate), last_only=False,
                              keep=PARTS)
    logits, (attention, head, rest) = logits[:, -1], direct_parts(model, run)
    if "copy" in terms:
        logits = logits - head + (head.mean(0) if ablate else program.copy(tokens, attention))
    if "correct" in terms:
        logits = logits - rest + (rest.mean(0) if ablate else program.correction(tokens, attention) + program.bias)
    return logits


@torch.no_grad()
def substitution_table(program, model, suite, seed: int = 0) -> dict:
    """{row: {family: (accuracy, loss recovered)}}: each term in its component's place alone (everything else as
    trained), then the terms together, cumulatively, until all are, on every family's lists at once. The loss
    recovered is against the same components mean-ablated (their mean over those lists): 1 when the term does what
    the component does, 0 when it does no better than its mean."""
    from shared.faithfulness import recovered
    names, (tokens, targets, sizes) = list(TERMS), suite.joined()
    per_family = lambda x: x.split(sizes)
    losses = lambda logits: (per_family(F.cross_entropy(logits, targets, reduction="none")),
                             per_family((logits.argmax(-1) == targets).float()))
    intact, _ = losses(model(tokens, last_only=True)[:, -1])
    steps = [(f"{name} alone", [name]) for name in names] + [(" + ".join(names[:i + 1]), names[:i + 1])
                                                            for i in range(1, len(names))]
    rows = {}
    for label, terms in steps:
        (sub, right), (ablated, _) = (losses(substituted_logits(program, model, tokens, terms,
                                                                torch.Generator().manual_seed(seed), ablate=a))
                                      for a in (False, True))
        rows[label] = suite.like({family: (right[i].mean().item(), recovered(sub[i].mean().item(),
                                                                             ablated[i].mean().item(),
                                                                             intact[i].mean().item()))
                                  for i, family in enumerate(suite)})
    return rows


def substitution_markdown(rows: dict) -> str:
    """Markdown: per row, accuracy and loss recovered on uniform lists and on the family where the term keeps least."""
    table = []
    for label, row in rows.items():
        uniform, worst = row.uniform_label, row.weakest(0)
        table.append([label, pct(row[uniform][0]), pct(row[uniform][1]), worst, pct(row[worst][0]), pct(row[worst][1])])
    return markdown_table(["terms in their components' place", "uniform: accuracy", "uniform: loss recovered",
                           "family where accuracy is least", "its accuracy", "its loss recovered"], table, "lrrlrr")


# --- the open questions, answered by the terms --------------------------------------------------------------------
@torch.no_grad()
def score_ties(program, tokens, model_scores) -> dict:
    """Where the program's top key differs from the selecting head's: how many lists, and how close the head's own
    two best scores are there and everywhere (the median of their difference, in the score's units, nats of
    attention): whether the program misses the head's top key mostly where the head's own two best are close."""
    mine = program.scores(tokens).argmax(-1)
    theirs = model_scores.argmax(-1)
    differ = mine != theirs
    top2 = model_scores.topk(2, dim=-1).values
    gap = (top2[:, 0] - top2[:, 1])[differ]
    return {"lists": len(tokens), "differ": differ.float().mean().item(),
            "median gap there": gap.median().item() if differ.any() else None,
            "median gap everywhere": (top2[:, 0] - top2[:, 1]).median().item()}


@torch.no_grad()
def mlp1_corrections(model, suite) -> dict:
    """{family: how often MLP 1 changes the answer the rest of the model's direct logits give (the selecting head's
    copy, layer 0, the embeddings), and how often the answer it changes to is the right one}: what MLP 1 corrects,
    and when (every family's lists in one run)."""
    tokens, targets, sizes = suite.joined()
    logits, cache = model.run_with_cache(tokens, names_filter="blocks.1.hook_mlp_out")
    final = logits[:, -1].argmax(-1)
    without = (logits[:, -1] - cache["blocks.1.hook_mlp_out"][:, -1] @ model.W_U).argmax(-1)
    out = {}
    for family, f, w, y in zip(suite, final.split(sizes), without.split(sizes), targets.split(sizes)):
        changed = w != f
        out[family] = {"changed": changed.float().mean().item(), "copy alone right": (w == y).float().mean().item(),
                       "changed to the right answer": (f[changed] == y[changed]).float().mean().item()
                       if changed.any() else None}
    return suite.like(out)


def corrections_table(corrections) -> str:
    return markdown_table(["family", "right without MLP 1's logits", "MLP 1 changes the answer", "of those, to the "
                           "right one"], [[f, pct(c["copy alone right"]), pct(c["changed"]),
                                           pct(c["changed to the right answer"])] for f, c in corrections.items()])


def describe(program: Explanation) -> str:
    """The program in readable form: each term's formula and its numbers near where they matter."""
    near = lambda table, span=3: " ".join(f"{d:+d}:{table[program.V - 1 + d]:.1f}" for d in range(-span, span + 1))
    spread = " ".join(f"{d:+d}:{program.copy_spread[SPREAD + d]:.2f}" for d in range(-3, 4))
    w = program.average(torch.tensor([[0] * program.n + [program.V]]))  # weights for a list of zeros, for scale
    lines = [
        f"find_median's trained model as a program of {program.count():,} numbers, for n = {program.n}, V = {program.V}",
        f"1. average   w_i = softmax(s0[x_i] + p0[i]): s0 spans {program.average_value[:-1].min():.2f}..."
        f"{program.average_value[:-1].max():.2f} over values, p0 {program.average_position.min():.2f}..."
        f"{program.average_position.max():.2f}; e.g. SEP's own weight {w[0, -1]:.3f} (uniform: {1 / (program.n + 1):.3f})",
        "2. middle    MLP 0 hands on lo = x_(k-1), m = x_(k), hi = x_(k+1): no numbers",
        "3. keys      MLP 0 at each key carries its value and position: no numbers",
        f"4. select    score_i = B[x_i] + G[x_i - m] + L[x_i - lo] + H[x_i - hi] + P[i]; SEP: S = {program.score_sep.item():.2f}",
        f"             G (offset from m): {near(program.score_median)}",
        f"             L (from lo): {near(program.score_below)};  H (from hi): {near(program.score_above)}",
        f"             B spans {program.score_value.min():.1f}..{program.score_value.max():.1f}; P: "
        + " ".join(f"{v:.1f}" for v in program.score_position.tolist()),
        f"5. copy      logit(u) += g[u] mass(u) + sum_d N[d] mass(u - d): g {program.copy_gain.min():.1f}..."
        f"{program.copy_gain.max():.1f}; N: {spread}",
        f"6. correct   logit(u) += Cm[u - m] + Cl[u - lo] + Ch[u - hi] + {program.fix_mass.item():.2f} mass(u) + "
        f"{program.fix_present.item():.2f} [u in list] + b[u]",
        f"             Cm: {near(program.fix_median)}",
        f"             Cl: {near(program.fix_below)};  Ch: {near(program.fix_above)}",
    ]
    return "\n".join(lines)


def saved_path(checkpoint) -> Path:
    """Where the program fitted to a checkpoint is kept: beside it, model.pt -> model.explanation.json."""
    return Path(checkpoint).with_suffix(".explanation.json")


def load_saved(model, checkpoint):
    """The program saved beside the checkpoint when it was fitted to this very run (its run id), else None."""
    path = saved_path(checkpoint) if checkpoint else None
    if path is None or not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return Explanation.from_json(json.dumps(saved["program"])) if saved.get("run_id") == model.metadata.get("run_id") \
        else None


def load_or_fit(model, task, checkpoint) -> tuple:
    """(program, how it was had): the one saved for this run (load_saved), else fitted now (python
    find_median/explanation.py CHECKPOINT --save keeps one)."""
    saved = load_saved(model, checkpoint)
    if saved is not None:
        return saved, f"fitted to this run, read from {saved_path(checkpoint).name}"
    return fit(model, task), "fitted now (no saved program for this run)"



def term_shapes(program: Explanation) -> dict:
    """A few numbers that say what kind each fitted term is (compared across seeds): where the score's bump around
    the median peaks, how much of the copy lands on the attended value's neighbours, where MLP 1's pull peaks and how
    wide it is."""
    reach = min(SPREAD, program.V - 1)  # the tables indexed by u - m span -(V - 1)...V - 1
    window = torch.arange(-reach, reach + 1)
    around = lambda table: table[program.V - 1 + window]
    pull = around(program.fix_median)
    copy_here = program.copy_gain.mean() + program.copy_spread[SPREAD]
    return {"score peak offset": window[around(program.score_median).argmax()].item(),
            "copy on neighbours": ((program.copy_spread[SPREAD - 1] + program.copy_spread[SPREAD + 1]) / 2 / copy_here).item(),
            "correction peak offset": window[pull.argmax()].item(),
            "correction width": int((pull > pull.max() / 2).sum())}


def substitution_by_family(rows: dict) -> str:
    """Markdown: every row of substitution_table on every family, 'accuracy (loss recovered)', families by key."""
    first = next(iter(rows.values()))
    keys = {label: key for key, label in first.labels.items()}
    table = [[label] + [f"{pct(row[f][0], 1)} ({pct(row[f][1], 0)})" for f in row] for label, row in rows.items()]
    return markdown_table(["terms in place"] + [keys.get(f, f) for f in first], table)


def main(argv=None):
    from shared import load_checkpoint
    from shared.tasks import collect_mistakes, evaluation_suite, family_predictions, mistakes
    from find_median.dataset import task as task_of
    args = sys.argv[1:] if argv is None else argv
    save = "--save" in args
    paths = [a for a in args if a != "--save"]
    checkpoint = Path(paths[0]) if paths else Path(__file__).resolve().parent / "checkpoints/model.pt"
    model = load_checkpoint(checkpoint, task="find_median")
    task = task_of(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
    program = fit(model, task)
    print(describe(program))
    suite = evaluation_suite(task)
    predictions = family_predictions(model, suite)
    attention = suite.like({f: C.sep_scores(model, x, 1, 0).softmax(-1) for f, (x, _) in suite.items()})
    wrong = mistakes(suite, predictions, 10 ** 9) + collect_mistakes(model, task, 1_000_000)
    print(fidelity_table(fidelity(program, model, suite, predictions, attention), on_mistakes(program, wrong)))
    if save:
        path = saved_path(checkpoint)
        path.write_text(json.dumps({"run_id": model.metadata.get("run_id"), "program": json.loads(program.to_json())}))
        print(f"saved {path}")


if __name__ == "__main__":
    main()
