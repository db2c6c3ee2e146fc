from types import SimpleNamespace

import pytest
import torch

from shared.model import Config, Transformer
from shared.tasks import ListTask, family_accuracies, shuffle_rows, uniform_values
from shared.tasks import evaluate
from shared.tools.train import held_out, lr_at, train

# A tiny task for the loop itself: the answer is the first value of the list.
COPY_FIRST = ListTask("copy_first", answer=lambda v: v[:, 0], balanced=uniform_values,
                      adversarial=lambda size, n, V, gen: {"shuffled": ("shuffled", shuffle_rows(uniform_values(size, n, V, gen), gen))},
                      hard=uniform_values, n=3, V=6)
CFG = Config(n_layers=1, n_heads=1, d_model=16, d_head=16, n_ctx=4, d_vocab=7, d_vocab_out=6, seed=0)
P = dict(max_steps=300, batch_size=64, lr=1e-2, weight_decay=0.0, warmup_steps=20, min_lr_frac=0.1, grad_clip=1.0,
         eval_every=50, eval_size=512, target_accuracy=None, seed=0, device="cpu")  # training.py's names


def run(steps=300, seed=0, target=None, task=COPY_FIRST, model_seed=0):
    model = Transformer(Config(**{**CFG.__dict__, "seed": model_seed}))
    history = train(model, task, {**P, "max_steps": steps, "target_accuracy": target, "seed": seed}, progress=False)
    return model, history, held_out(COPY_FIRST, 512, seed)


def test_tiny_model_learns_tiny_task():
    model, history, held_out = run()
    assert evaluate(model, *held_out)[1] >= 0.99
    assert history["eval_accuracy"][-1] >= 0.99 and history["eval_loss"][-1] < history["eval_loss"][0]
    assert history["step"] == list(range(50, 301, 50)) and history["seconds"] == sorted(history["seconds"])
    accuracies = family_accuracies(model, COPY_FIRST.families(size=200))
    assert set(accuracies) >= {"uniform", "all equal", "sorted ascending", "shuffled"}
    assert min(accuracies.values()) >= 0.99


def test_same_seed_same_weights():
    a, _, _ = run(steps=30)
    b, _, _ = run(steps=30)
    c, _, _ = run(steps=30, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_early_stop_at_target():
    _, history, _ = run(steps=2000, target=0.99)
    assert history["stopped_at"] < 2000 and history["eval_accuracy"][-1] >= 0.99


def test_interrupt_keeps_model():
    calls = []

    def interrupted_after_5(batch_size, gen):
        calls.append(batch_size)
        if calls.count(P["batch_size"]) > 5:  # the sixth training batch (the held-out set is drawn first)
            raise KeyboardInterrupt
        return COPY_FIRST.sample_batch(batch_size, gen)

    before = Transformer(CFG).W_E.clone()
    model, history, _ = run(steps=100, task=SimpleNamespace(sample_batch=interrupted_after_5))
    assert history["interrupted"] and history["stopped_at"] == 6
    assert not torch.equal(model.W_E, before)  # five steps of learning were kept


def test_schedule():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100, 0.1) == pytest.approx(0.55)


def test_same_seed_same_weights_at_scale():
    """A model and batch large enough that the CPU kernels run multi-threaded: the embedding's backward must
    still be deterministic (indexing W_E[tokens] was not, with two threads)."""
    from find_median.dataset import task
    weights = []
    for _ in range(2):
        model = Transformer(Config(n_layers=2, d_mlp=256, n_ctx=8, d_vocab=65, d_vocab_out=64))
        train(model, task(), {**P, "max_steps": 40, "batch_size": 512, "lr": 3e-3, "eval_every": 1000,
                              "eval_size": 256}, progress=False)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_family_target_is_its_own_bar():
    """The families' bar is family_target, apart from the held-out one: a family that can never reach the
    held-out target still lets training stop once it reaches its own."""
    tokens, targets = COPY_FIRST.sample_batch(200, torch.Generator().manual_seed(5))
    half_wrong = {"half wrong": (tokens, torch.where(torch.arange(200) % 2 == 0, targets, (targets + 1) % 6))}
    p = {**P, "max_steps": 400, "target_accuracy": 0.99}
    never = train(Transformer(CFG), COPY_FIRST, p, progress=False, stop_families=half_wrong)
    assert never["target_reached"] is None and never["stopped_at"] == 400  # 50% < 99%: the family bar is the target
    stops = train(Transformer(CFG), COPY_FIRST, {**p, "target_family_accuracy": 0.45}, progress=False,
                  stop_families=half_wrong)
    assert stops["target_reached"] is not None and stops["stopped_at"] < 400
