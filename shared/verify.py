"""Decide from the weights whether a model is right on every input of an order-statistic task.

    python -m shared.tools.verify <task>/checkpoints/model.pt   # proved / refuted / out of scope; exit 0 / 1 / 2

A task whose answer is the k-th smallest of n values (the minimum: k = 0; the median: k = n // 2) has k as its
ListTask.order_statistic, found from its answer on sampled lists. For a model with one layer, attention only and no LayerNorm, the logits at SEP are

    logits = c + sum_h (sum_i w_h(x_i, i) u_h(x_i, i)) / (sum_i w_h(x_i, i))     (i over the n values and SEP)

with w_h = exp(score from SEP) and u_h = the head's output logits for that token at that position: every term
depends on one position's token alone. For a right answer m, a wrong answer j and a position q holding m, the
lists with answer m and m at q are those with at most k values below m and at most n - 1 - k above; the worst
such list for the margin logit[m] - logit[j] minimises a ratio of per-position sums. Dinkelbach's iteration
(min N/D < lam iff min N - lam D < 0) makes that minimum exact; each inner minimum is a dynamic programme over
positions whose state is how many values sit below and above m so far (for k = 0 nothing may sit below: every
position is then chosen alone). That is about V^2 n small programmes instead of V^n forward passes.

With one head the worst case is exact. With several, each head's worst case is found alone: their sum bounds
the margin from below (sound, possibly loose), and where it is not positive a search guided by it looks for a
real counterexample. Any model whose task has at most ENUMERATE_LIMIT inputs is instead run on every one of
them. Everything else is out of scope, with the reason.

Soundness: margins are computed in float64 from the float32 weights, and `proved` also holds for the model's own
float32 forward pass. Standard forward error analysis (|fl(a.b) - a.b| <= gamma_k |a|.|b|, gamma_k = k u / (1 - k u),
u = 2^-24) bounds each key's score error, hence a relative error eta of its softmax weight (the shift by the
largest score is common to every key and cancels), and every other rounding (values, W_O, the residual sum,
W_U) by an absolute amount on the logits. The verdict then redoes the worst case with each key's term
d moved against the answer to d - eta |d|, the sum of weights off by 1 +- eta, and that absolute amount
subtracted: `float32_margin`, a lower bound on the margin of the float32 model on any input. `proved` needs it
positive. It covers IEEE float32 arithmetic (CPU, or CUDA without TF32), not reduced-precision kernels.
"""
import math
import time
from dataclasses import dataclass, field

import torch

from .tasks import last_logits

ENUMERATE_LIMIT = 10 ** 7  # tasks with at most this many inputs are verified by running the model on each
UNIT_ROUNDOFF = 2.0 ** -24  # float32
COUNTEREXAMPLES = 10  # at most this many are listed
SEARCHED_CASES = 200  # the (answer, position, wrong answer) cases with the lowest bounds that are searched


@dataclass
class Verdict:
    """status: "proved", "refuted" or "out of scope". margin: the smallest logit[answer] - max other logit over
    every input (exact for one head; for several a lower bound, see method), None when not computed.
    float32_margin: a lower bound on that margin for the model's own float32 forward pass.
    failing: the (answer, position holding it) cases that have a wrong input. counterexamples: (values,
    predicted, answer) that the model, run on them, gets wrong."""
    status: str
    inputs: int
    method: str
    margin: float = None
    float32_margin: float = None
    accuracy: float = None
    failing: set = field(default_factory=set)
    counterexamples: list = field(default_factory=list)
    worst_input: tuple = None  # (values, answer, the wrong answer closest to it) reaching `margin` (one head)
    reason: str = ""
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"proved": 0, "refuted": 1}.get(self.status, 2)

    def line(self) -> str:
        """The one verdict line the command prints (counterexamples follow it, one per line)."""
        if self.status == "out of scope":
            return f"out of scope: {self.reason}"
        parts = [f"{self.status}: {'right' if self.status == 'proved' else 'wrong'} on "
                 + (f"{1 - self.accuracy:.6%} of " if self.status == "refuted" and self.accuracy is not None else
                    "all " if self.status == "proved" else "some of ")
                 + f"{self.inputs:,} inputs ({self.method})"]
        if self.margin is not None:
            parts.append(f"worst-case margin {self.margin:.4f}")
        if self.float32_margin is not None:
            parts.append(f"with every float32 rounding against it >= {self.float32_margin:.4f}")
        if self.status == "refuted" and self.failing:
            parts.append(f"{len(self.failing)} failing (answer, position) cases")
        return "; ".join(parts) + f"; {self.seconds:.1f} s"

    def smallest_margin(self) -> tuple:
        """(value, note) for the hypothesis 'right on every input': the smallest logit margin over every input,
        every float32 rounding against it (proved); a confirmed counterexample's negative margin (refuted); None
        with the reason where the verifier cannot decide (out of scope, or a bound too loose)."""
        if self.status == "proved":
            return (self.margin if self.float32_margin is None else self.float32_margin), ""
        if self.status == "refuted":
            example = f": e.g. {' '.join(map(str, self.counterexamples[0][0]))}" if self.counterexamples else ""
            return (self.margin if self.margin is not None and self.margin < 0 else -1.0), "refuted" + example
        return None, f"out of scope: {self.reason}"

    def lines(self) -> list:
        return [self.line()] + [f"counterexample: {' '.join(map(str, values))} -> {predicted} (answer {answer})"
                                for values, predicted, answer in self.counterexamples]


# ----------------------------------------------------------------------------------------- the per-position terms
def _scope_problem(model, task) -> str:
    """Why the exact per-position analysis does not apply ('' when it does)."""
    cfg = model.cfg
    if getattr(task, "order_statistic", None) is None:
        return f"task {task.name}'s answer is no order statistic (the k-th smallest value on every sampled list)"
    if cfg.n_layers != 1:
        return f"{cfg.n_layers} layers: a later layer's attention reads earlier outputs, not one token per position"
    if cfg.d_mlp is not None:
        return "an MLP acts on the sum of every position's contribution"
    if cfg.normalization_type is not None:
        return "a final LayerNorm divides by the norm of the sum of every position's contribution"
    if cfg.n_ctx < task.n + 1 or cfg.d_vocab_out != task.V:
        return f"the model's context ({cfg.n_ctx}) or output vocabulary ({cfg.d_vocab_out}) does not fit the task"
    return ""


@torch.no_grad()
def position_terms(model, n: int) -> dict:
    """float64 tables of a one-layer, attention-only model without LayerNorm, query at SEP (position n):
    score [head, n + 1, V] (SEP's own key in column 0 of row n; its other columns unused), out [head, n + 1, V,
    V] (the head's logits when it attends to that token at that position alone, b_V included), direct [V]
    (SEP's direct path, b_O and b_U included)."""
    V = model.cfg.d_vocab_out
    f64 = lambda t: t.detach().double().cpu()
    W_E, W_pos, W_U, b_U = f64(model.W_E), f64(model.W_pos), f64(model.W_U), f64(model.b_U)
    attn = model.blocks[0].attn
    W_Q, W_K, W_V, W_O = f64(attn.W_Q), f64(attn.W_K), f64(attn.W_V), f64(attn.W_O)
    b_Q, b_K, b_V, b_O = f64(attn.b_Q), f64(attn.b_K), f64(attn.b_V), f64(attn.b_O)
    x_sep = W_E[V] + W_pos[n]
    keys = W_E[:V][None] + W_pos[:n, None]  # [n, V, d_model]
    keys = torch.cat([keys, x_sep.expand(1, V, -1)])  # row n: SEP (every column the same)
    q = torch.einsum("d,hde->he", x_sep, W_Q) + b_Q  # [head, d_head]
    k = torch.einsum("ptd,hde->hpte", keys, W_K) + b_K[:, None, None]
    v = torch.einsum("ptd,hde->hpte", keys, W_V) + b_V[:, None, None]
    score = torch.einsum("he,hpte->hpt", q, k) / math.sqrt(W_Q.shape[-1])
    out = torch.einsum("hpte,hed,dv->hptv", v, W_O, W_U)
    return {"score": score, "out": out, "direct": (x_sep + b_O) @ W_U + b_U, "q": q, "k": k, "v": v,
            "keys": keys, "x_sep": x_sep}


def float32_slack(model, n: int, terms: dict = None):
    """How far the model's float32 forward pass can stray from exact arithmetic (module docstring): (eta [H, n + 1,
    V], the relative error of each key's softmax weight; the largest eta of each head [H]; an absolute bound on
    how far every other rounding moves a logit margin)."""
    terms = terms or position_terms(model, n)
    u = UNIT_ROUNDOFF
    gamma = lambda k: k * u / (1 - k * u)
    attn = model.blocks[0].attn
    d, d_head, H = model.cfg.d_model, attn.W_Q.shape[-1], attn.W_Q.shape[0]
    a = lambda t: t.detach().double().abs().cpu()
    x_sep, keys = terms["x_sep"].abs(), terms["keys"].abs()  # [d], [n + 1, V, d]
    e_sep, e_keys = u * x_sep, u * keys  # the float32 sum W_E + W_pos

    def projection_error(x, e_x, W, b):  # error of x W + b computed in float32 from x with error e_x
        return (torch.einsum("...d,hde->h...e", e_x, a(W))
                + gamma(d + 1) * (torch.einsum("...d,hde->h...e", x + e_x, a(W))
                                  + a(b).reshape(H, *([1] * (x.dim() - 1)), -1)))

    q, k, v = terms["q"].abs(), terms["k"].abs(), terms["v"].abs()
    e_q = projection_error(x_sep, e_sep, attn.W_Q, attn.b_Q)  # [H, d_head]
    e_k = projection_error(keys, e_keys, attn.W_K, attn.b_K)  # [H, n + 1, V, d_head]
    e_v = projection_error(keys, e_keys, attn.W_V, attn.b_V)
    e_score = (torch.einsum("he,hpte->hpt", e_q, k + e_k) + torch.einsum("he,hpte->hpt", q, e_k)
               + gamma(d_head + 2) * torch.einsum("he,hpte->hpt", q + e_q, k + e_k)) / math.sqrt(d_head)
    score = terms["score"]
    below_top = score.amax((1, 2), keepdim=True) - score  # the softmax subtracts the largest score
    # score error, the subtraction, exp, and the online softmax's rescalings (at most one per key)
    eta = torch.expm1(e_score + u * below_top + gamma(4 * (n + 1) + 4))
    v_max, e_v_max = v.amax((1, 2)), e_v.amax((1, 2))  # [H, d_head]
    eta_max = eta.amax((1, 2))
    # the weighted sum of values (weights as computed), normalisation included
    e_z = (1 + eta_max[:, None]) * e_v_max + gamma(n + 3) * (v_max + e_v_max)
    W_O, b_O = a(attn.W_O), a(attn.b_O)
    o_mag = torch.einsum("he,hed->d", v_max + e_z, W_O) + b_O
    e_o = torch.einsum("he,hed->d", e_z, W_O) + gamma(H * d_head + 1) * o_mag
    resid = x_sep + o_mag
    e_resid = e_sep + e_o + u * resid
    W_U, b_U = a(model.W_U), a(model.b_U)
    e_logit = e_resid @ W_U + gamma(d + 1) * (resid @ W_U + b_U)
    return eta, eta_max, 2 * e_logit.max().item() * (1 + 1e-6) + 1e-12  # two logits per margin


# ---------------------------------------------------------------------------------------- worst cases per head
def _cheapest_per_class(cost, m: int, n: int):
    """For the tokens below m, m itself and above m: the cheapest one's cost at each position [q, J, n] (inf where
    there is no such token) and which token it is, stacked [class, q, J, n]."""
    best, pick = [], []
    for first, last in ((0, m), (m, m + 1), (m + 1, cost.shape[-1])):
        if first == last:  # no such token
            best.append(torch.full(cost.shape[:2] + (n,), math.inf, dtype=cost.dtype))
            pick.append(torch.full(cost.shape[:2] + (n,), m, dtype=torch.long))
            continue
        low, arg = cost[:, :, :n, first:last].min(-1)  # [q, J, n]
        best.append(low)
        pick.append(arg + first)
    return best, torch.stack(pick)


def _worst_lists(weight, value, m: int, k: int, n: int, lam, cost=None):
    """For every (q, j): the list with answer m (the k-th smallest), m at position q, that minimises
    sum_i weight[q, i, x_i] (value[j, i, x_i] - lam[q, j]) over positions 0..n-1 and SEP (row n, column 0).
    weight [n, n + 1, V] (a scale per q), value [J, n + 1, V], lam [n, J]; cost: a buffer [n, J, n + 1, V] to
    reuse (allocating megabytes per call was most of the run time). Returns (minimum, lists [n, J, n])."""
    J = value.shape[0]
    cost = torch.sub(value[None], lam[:, :, None, None], out=cost)  # [q, J, n + 1, V]
    cost.mul_(weight[:, None])
    best, pick = _cheapest_per_class(cost, m, n)
    # DP over positions. State: how many values sit below m and above m so far, each tracked only where its
    # limit (k below, n - 1 - k above) can bind; a limit of 0 forbids the side (the minimum: nothing below m)
    limits = (k, n - 1 - k)
    tracked = [0 < limit < n - 1 for limit in limits]
    for side, limit in zip((0, 2), limits):
        if limit == 0:
            best[side] = torch.full_like(best[side], math.inf)
    sizes = [limit + 1 if track else 1 for limit, track in zip(limits, tracked)]
    inf = torch.full((n, J, *sizes), math.inf, dtype=cost.dtype)

    def step(total, dim, add):  # one more value on a side: shift the count where it is tracked
        if not tracked[dim - 2]:
            return total + add
        moved = inf.clone()
        moved.narrow(dim, 1, sizes[dim - 2] - 1).copy_(total.narrow(dim, 0, sizes[dim - 2] - 1))
        return moved + add

    total = inf.clone()
    total[:, :, 0, 0] = cost[:, :, n, 0]  # SEP's term
    choice = torch.zeros((n, n, J, *sizes), dtype=torch.long)  # [position, q, J, below, above]
    for i in range(n):
        options = torch.stack([step(total, 2, best[0][:, :, i, None, None]), total + best[1][:, :, i, None, None],
                               step(total, 3, best[2][:, :, i, None, None])])  # [class, q, J, b, a]
        options[0, i] = options[2, i] = math.inf  # position i, when it is q, holds m itself
        total, choice[i] = options.min(0)
    minimum, state = total.flatten(2).min(-1)  # [q, J]
    below, above = state // sizes[1], state % sizes[1]
    qs, js = torch.meshgrid(torch.arange(n), torch.arange(J), indexing="ij")
    lists = torch.empty((n, J, n), dtype=torch.long)
    for i in reversed(range(n)):
        c = choice[i, qs, js, below, above]
        lists[:, :, i] = pick[c, qs, js, i]
        below = below - (c == 0).long() * tracked[0]
        above = above - (c == 2).long() * tracked[1]
    return minimum, lists


def _ratios(weight, value, lists, n):
    """sum_i w value[j] / sum_i w (SEP included) of each (q, j)'s list: lists [n, J, n] -> [n, J]."""
    qs, js = torch.arange(n)[:, None, None], torch.arange(value.shape[0])[None, :, None]
    positions = torch.arange(n)
    w = weight[qs, positions, lists]  # [q, J, n]
    num = (w * value[js, positions, lists]).sum(-1) + weight[:, n, 0][:, None] * value[:, n, 0][None]
    return num / (w.sum(-1) + weight[:, n, 0][:, None])


def worst_ratio(weight, value, m: int, k: int, n: int, iterations: int = 200, start=None):
    """Dinkelbach's iteration: for every (q, j) the exact minimum over lists (answer m, at position q) of
    sum_i w value[j] / sum_i w, and a list reaching it. weight [n, n + 1, V] > 0 (any scale per q: a ratio does
    not see it), value [J, n + 1, V]. Each step takes the list minimising sum w (value - lam) (the DP); its
    ratio is below lam exactly when that minimum is negative, so lam falls until no list beats it. start: lists
    [n, J, n] to begin from (a nearby problem's worst lists take fewer steps), else every value m."""
    J = value.shape[0]
    lists = torch.full((n, J, n), m, dtype=torch.long) if start is None else start  # every value m: in every set
    lam = _ratios(weight, value, lists, n)
    cost = torch.empty((n, J, *value.shape[1:]), dtype=value.dtype)
    for _ in range(iterations):
        _, candidate = _worst_lists(weight, value, m, k, n, lam, cost)
        ratio = _ratios(weight, value, candidate, n)
        better = ratio < lam - 1e-12 * (1 + lam.abs())
        if not better.any():
            return lam, lists
        lists = torch.where(better[..., None], candidate, lists)
        lam = torch.where(better, ratio, lam)
    raise RuntimeError("Dinkelbach's iteration did not converge")  # finite in exact arithmetic


# ------------------------------------------------------------------------------------------------- verdicts
def exact_margins(model, k: int, n: int, terms: dict = None, slack=None, start=None):
    """For every answer m, position q and wrong answer j: the smallest logit[m] - logit[j] over every list with
    answer m at q (exact with one head; with several, the sum of each head's smallest, a lower bound), and each
    head's worst list, as tensors [V, n, V] (the diagonal j = m is +inf) and [H, V, n, V, n]. slack
    (float32_slack): the same with every float32 rounding against the answer, a bound for the float32 model;
    start: the worst lists of a call without slack, where the iteration begins (the same minimum, found sooner)."""
    terms = terms or position_terms(model, n)
    score, out, direct = terms["score"], terms["out"], terms["direct"]
    H, V = score.shape[0], model.cfg.d_vocab_out
    spread = (score.amax((1, 2)) - score.amin((1, 2))).max().item()
    if spread > 700:
        raise OverflowError(f"scores span {spread:.0f}: their exponentials overflow float64")
    margins = torch.full((V, n, V), math.inf, dtype=torch.float64)
    worst = torch.empty((H, V, n, V, n), dtype=torch.long)
    for m in range(V):
        total = (direct[m] - direct)[None].expand(n, V).clone()  # [q, j]
        for h in range(H):
            value = (out[h, :, :, m][None] - out[h].permute(2, 0, 1))  # [j, n + 1, V]: u_m - u_j
            if slack is not None:
                value = value - slack[0][h] * value.abs()
            # scaled so that position q's weight (it holds m) is 1: no list's weights all underflow
            weight = torch.exp(score[h][None] - score[h][:n, m][:, None, None])  # [q, n + 1, V]
            low, lists = worst_ratio(weight, value, m, k, n, start=None if start is None else start[h, m])
            if slack is not None:  # the computed weights' sum is off by a factor 1 +- eta
                low = torch.where(low >= 0, low / (1 + slack[1][h]), low / (1 - slack[1][h]))
            total += low
            worst[h, m] = lists
        if slack is not None:
            total -= slack[2]
        total[:, m] = math.inf
        margins[m] = total
    return margins, worst


@torch.no_grad()
def true_margins(model, values, answers, n: int, terms: dict = None) -> torch.Tensor:
    """float64 logit[answer] - max other logit of each list, from the per-position tables (exact arithmetic
    up to float64 rounding); values [batch, n]."""
    terms = terms or position_terms(model, n)
    score, out, direct = terms["score"], terms["out"], terms["direct"]
    positions = torch.arange(n)
    logits = direct.expand(len(values), -1).clone()
    for h in range(score.shape[0]):
        s = torch.cat([score[h][positions, values], score[h][n, 0].expand(len(values), 1)], 1)
        a = s.softmax(-1)  # [batch, n + 1]
        u = torch.cat([out[h][positions, values], out[h][n, 0].expand(len(values), 1, -1)], 1)
        logits += (a[..., None] * u).sum(1)
    return _margin(logits, answers)


def _margin(logits, answers):
    """[batch]: logit[answer] - the largest other logit (logits [batch, V])."""
    others = logits.scatter(1, answers[:, None], -math.inf)
    return logits.gather(1, answers[:, None])[:, 0] - others.max(-1).values


def _confirmed(model, lists, task):
    """The lists [batch, n] the model (its own float32 forward pass) gets wrong: (values, predicted, answer)."""
    tokens, targets = task.batch(lists)
    predicted = last_logits(model, tokens).argmax(-1)
    return [(x.tolist(), p.item(), t.item()) for x, p, t in zip(lists, predicted, targets) if p != t]


def _search(model, start, m: int, q: int, k: int, n: int, terms, sweeps: int = 4):
    """Coordinate descent on the true margin from a start list (answer m at q kept): each sweep tries every
    allowed token at every other position. Returns (list, margin)."""
    V = model.cfg.d_vocab_out
    best = start.clone()
    answer = torch.tensor([m])
    margin = true_margins(model, best[None], answer, n, terms)[0]
    for _ in range(sweeps):
        improved = False
        for i in range(n):
            if i == q:
                continue
            trial = best[None].repeat(V, 1)
            trial[:, i] = torch.arange(V)
            below, above = (trial < m).sum(1), (trial > m).sum(1)
            ok = (below <= k) & (above <= n - 1 - k)
            margins = true_margins(model, trial[ok], answer.expand(int(ok.sum())), n, terms)
            index = margins.argmin()
            if margins[index] < margin:
                best, margin, improved = trial[ok][index], margins[index], True
        if not improved:
            break
    return best, margin.item()


def verify_weights(model, task) -> Verdict:
    """The per-position analysis (module docstring) for a one-layer, attention-only model without LayerNorm;
    out of scope otherwise. Runs on one thread: its tensors are small, and a second thread only adds overhead
    (several times the run time when the cores are busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _verify_weights(model, task)
    finally:
        torch.set_num_threads(threads)


def _verify_weights(model, task) -> Verdict:
    start = time.perf_counter()
    n, inputs = task.n, task.V ** task.n
    problem = _scope_problem(model, task)
    if problem:
        return Verdict("out of scope", inputs, "weights", reason=problem)
    k, heads = task.order_statistic, model.cfg.n_heads
    terms = position_terms(model, n)
    try:
        margins, worst = exact_margins(model, k, n, terms)
        safe = exact_margins(model, k, n, terms, float32_slack(model, n, terms), worst)[0].min().item()
    except OverflowError as e:
        return Verdict("out of scope", inputs, "weights", reason=str(e))
    low = margins.min().item()
    method = "exact worst case per (answer, position)" if heads == 1 else f"sum of {heads} heads' worst cases"
    m, q, j = (margins == margins.min()).nonzero()[0].tolist()
    worst_input = (worst[0, m, q, j].tolist(), m, j) if heads == 1 else None
    if safe > 0:
        return Verdict("proved", inputs, method, low, safe, accuracy=1.0, worst_input=worst_input,
                       seconds=time.perf_counter() - start)
    verdict = _refute(model, task, margins, worst, terms, method, safe)
    verdict.seconds = time.perf_counter() - start
    if verdict.status == "refuted":
        verdict.worst_input = worst_input
    return verdict


def _refute(model, task, margins, worst, terms, method, safe) -> Verdict:
    """The margin is not proved positive: look for real counterexamples among each head's worst lists for the cases
    whose margin is lowest (several heads: each improved by a search); refuted with the confirmed ones, else out
    of scope with the reason (float32 decides it, or a loose bound with no counterexample found)."""
    n, k, heads, inputs = task.n, task.order_statistic, model.cfg.n_heads, task.V ** task.n
    low, per_case = margins.min().item(), margins.min(-1).values  # per_case [m, q]
    found, margin_low = [], math.inf
    cases = (margins <= 0).nonzero().tolist() or (margins <= margins.min()).nonzero().tolist()  # [m, q, j]
    for m, q, j in sorted(cases, key=lambda c: margins[tuple(c)].item())[:SEARCHED_CASES]:
        for h in range(heads):
            candidate = worst[h, m, q, j] if heads == 1 else _search(model, worst[h, m, q, j], m, q, k, n, terms)[0]
            margin = true_margins(model, candidate[None], torch.tensor([m]), n, terms)[0].item()
            margin_low = min(margin_low, margin)
            if margin < 0:
                found.append(candidate)
        if len(found) >= 4 * COUNTEREXAMPLES:
            break
    confirmed = _confirmed(model, torch.stack(found).unique(dim=0), task) if found else []
    if confirmed:
        failing = {(m, q) for m, q in (per_case < 0).nonzero().tolist()} if heads == 1 else set()
        order = true_margins(model, torch.tensor([c[0] for c in confirmed]), torch.tensor([c[2] for c in confirmed]),
                             n, terms).argsort()
        return Verdict("refuted", inputs, method, low if heads == 1 else margin_low, safe, failing=failing,
                       counterexamples=[confirmed[i] for i in order[:COUNTEREXAMPLES]])
    if heads == 1 or margin_low < 0:
        return Verdict("out of scope", inputs, method, low, safe, reason=f"the worst-case margin {low:.2e} is within "
                       f"float32 rounding (with every rounding against it >= {safe:.2e}): float32 decides it")
    return Verdict("out of scope", inputs, method, low, safe, reason=f"bound too loose (margin >= {low:.4f}; the "
                   f"search found no list below {margin_low:.4f})")


@torch.no_grad()
def enumerate_inputs(model, task, chunk: int = 1 << 16) -> Verdict:
    """Run the model on every one of the task's V^n inputs (at most ENUMERATE_LIMIT): exact accuracy, the
    smallest float32 logit margin, and the (answer, position holding it) cases with a wrong input."""
    start = time.perf_counter()
    n, V = task.n, task.V
    inputs = V ** n
    if inputs > ENUMERATE_LIMIT:
        return Verdict("out of scope", inputs, "every input", reason=f"{V}^{n} = {inputs:,} inputs, more than "
                       f"{ENUMERATE_LIMIT:,} to enumerate")
    powers = V ** torch.arange(n - 1, -1, -1)
    wrong, failing, lowest, errors = [], set(), math.inf, 0
    for first in range(0, inputs, chunk):
        index = torch.arange(first, min(first + chunk, inputs))
        values = index[:, None] // powers % V
        tokens, targets = task.batch(values)
        logits = last_logits(model, tokens)
        predicted = logits.argmax(-1)
        lowest = min(lowest, _margin(logits, targets).min().item())
        bad = predicted != targets
        errors += int(bad.sum())
        for x, p, t in zip(values[bad], predicted[bad], targets[bad]):
            failing.update((t.item(), q) for q in (x == t).nonzero()[:, 0].tolist())
            if len(wrong) < COUNTEREXAMPLES:
                wrong.append((x.tolist(), p.item(), t.item()))
    status = "refuted" if errors else "proved"
    return Verdict(status, inputs, "every input run", lowest, accuracy=1 - errors / inputs, failing=failing,
                   counterexamples=wrong, seconds=time.perf_counter() - start)


def verify(model, task) -> Verdict:
    """proved / refuted / out of scope: the exact analysis where the architecture allows, else every input where
    there are few enough, else out of scope with both reasons."""
    verdict = verify_weights(model, task)
    if verdict.status != "out of scope" or verdict.margin is not None:
        return verdict
    if task.V ** task.n <= ENUMERATE_LIMIT:
        return enumerate_inputs(model, task)
    return Verdict("out of scope", verdict.inputs, "none", reason=f"{verdict.reason}; and {task.V}^{task.n} = "
                   f"{task.V ** task.n:.2e} inputs are too many to enumerate")
