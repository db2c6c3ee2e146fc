"""shared.verify against brute force: on tasks small enough to enumerate, the verdict and the set of failing
(answer, position) cases must be exactly those of running the model on every input."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import find_median.dataset as median_data
import find_min.dataset as min_data
from handbuilt import median_averaging_model, min_model, min_then_move_model
from shared import load_checkpoint
from shared import verify as V
from shared.tasks import ListTask, order_statistic_of
from shared.model import Config, Transformer
from shared.tools import verify as CLI
from conftest import committed_run

ROOT = Path(__file__).resolve().parent.parent


def perturbed(model, scale, seed):
    """model with Gaussian noise of std `scale` added to every weight: near-correct to hopeless as scale grows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def two_head_min_model(n, V_, c=4.0):
    """min_model's head twice, each writing half of the copy: their sum is min_model."""
    one = min_model(n, V_, c)
    cfg = Config(**{**one.cfg.__dict__, "n_heads": 2})
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E.copy_(one.W_E)
        model.unembed.W_U.copy_(one.W_U)
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            getattr(model.blocks[0].attn, name)[:] = getattr(one.blocks[0].attn, name)[0]
        model.blocks[0].attn.W_O.mul_(0.5)
    return model


def scaled_averaging_model(n, V_):
    """median_averaging_model with its logits x 10 (a margin of 10 / (n + 1)), so small noise keeps it right."""
    model = median_averaging_model(n, V_)
    with torch.no_grad():
        model.blocks[0].attn.W_O.mul_(10.0)
    return model


TASKS = {"min, n=4, V=6": min_data.task(4, 6), "median, n=5, V=5": median_data.task(5, 5),
         "median, n=3, V=6": median_data.task(3, 6)}
CORRECT = {"min, n=4, V=6": lambda task: min_model(task.n, task.V, c=4.0), "median, n=5, V=5": lambda task:
           scaled_averaging_model(task.n, task.V), "median, n=3, V=6": lambda task: scaled_averaging_model(task.n, task.V)}


@pytest.mark.parametrize("name", TASKS)
def test_one_head_verdict_and_failing_cases_equal_enumeration(name):
    task = TASKS[name]
    statuses = []
    for seed in range(5):
        for scale in (0.03, 0.1, 0.3, 1.0) if name.startswith("min") else (0.003, 0.01, 0.03, 0.3):
            model = perturbed(CORRECT[name](task), scale, seed)
            verdict, truth = V.verify_weights(model, task), V.enumerate_inputs(model, task)
            assert verdict.status == truth.status, (seed, scale, verdict.line(), truth.line())
            assert verdict.failing == truth.failing, (seed, scale)
            for values, predicted, answer in verdict.counterexamples:
                assert task.answer(torch.tensor([values])).item() == answer != predicted
            if verdict.status == "proved":  # the worst list the analysis found is a real input: margins agree
                assert verdict.float32_margin <= verdict.margin <= truth.margin + 1e-4
            statuses.append(verdict.status)
    assert {"proved", "refuted"} <= set(statuses), statuses  # the models cover both verdicts


def test_exact_margin_is_reached_by_an_input():
    """The worst-case margin is a minimum, not just a bound: enumeration finds the same smallest margin."""
    task = TASKS["min, n=4, V=6"]
    model = perturbed(min_model(4, 6, c=4.0), 0.05, 0)
    verdict, truth = V.verify_weights(model, task), V.enumerate_inputs(model, task)
    assert verdict.status == truth.status == "proved"
    assert abs(verdict.margin - truth.margin) < 1e-4


def test_handbuilt_min_model_proved_and_a_token_out_of_order_refuted():
    task = min_data.task(4, 8)
    model = min_model(4, 8)
    assert V.verify_weights(model, task).status == "proved"
    with torch.no_grad():  # the QK circuit now scores token 3 above token 2: lists holding both go wrong
        model.embed.W_E[2, 9], model.embed.W_E[3, 9] = 3.0, 2.0
    verdict = V.verify_weights(model, task)
    assert verdict.status == "refuted" and verdict.exit_code == 1
    truth = V.enumerate_inputs(model, task)
    assert verdict.failing == truth.failing
    assert verdict.counterexamples and all(answer == 2 and predicted == 3 and 3 in values
                                           for values, predicted, answer in verdict.counterexamples)
    tokens, _ = task.batch(torch.tensor([values for values, _, _ in verdict.counterexamples]))
    assert (model(tokens)[:, -1].argmax(-1) == 3).all()  # the model really gets them wrong


def test_several_heads_are_sound():
    """With two heads the sum of each head's worst case is only a bound: a proof must still be true, and a
    refutation must come with real counterexamples."""
    task = TASKS["min, n=4, V=6"]
    seen = set()
    for seed in range(6):
        for scale in (0.02, 0.3, 1.0):
            model = perturbed(two_head_min_model(4, 6), scale, seed)
            verdict, truth = V.verify_weights(model, task), V.enumerate_inputs(model, task)
            seen.add(verdict.status)
            if verdict.status == "proved":
                assert truth.status == "proved" and verdict.margin <= truth.margin + 1e-4
            elif verdict.status == "refuted":
                assert truth.status == "refuted" and verdict.counterexamples
                assert all(task.answer(torch.tensor([v])).item() == a != p for v, p, a in verdict.counterexamples)
            else:
                assert any(why in verdict.reason for why in ("bound too loose", "rounding", "overflow")), verdict.reason
    assert {"proved", "refuted"} <= seen


def test_other_models_are_enumerated_or_out_of_scope():
    small = min_data.task(4, 8)
    verdict = V.verify(min_then_move_model(4, 8), small)  # two layers: too deep for the analysis, few inputs
    assert verdict.status == "proved" and verdict.method == "every input run" and verdict.accuracy == 1.0
    big = min_data.task(10, 64)
    cfg = Config(n_layers=2, n_ctx=11, d_vocab=65, d_vocab_out=64)
    verdict = V.verify(Transformer(cfg), big)
    assert verdict.status == "out of scope" and verdict.exit_code == 2
    assert "2 layers" in verdict.reason and "too many to enumerate" in verdict.reason
    layernorm = Transformer(Config(normalization_type="LN", n_ctx=11, d_vocab=65, d_vocab_out=64))
    assert "LayerNorm" in V.verify(layernorm, big).reason
    mlp = Transformer(Config(d_mlp=16, n_ctx=11, d_vocab=65, d_vocab_out=64))
    assert "MLP" in V.verify(mlp, big).reason


def test_the_order_statistic_is_found_from_the_answer():
    assert min_data.task(4, 6).order_statistic == 0 and median_data.task(5, 8).order_statistic == 2
    assert order_statistic_of(lambda v: v.max(-1).values, 6, 32) == 5
    assert order_statistic_of(lambda v: v.sort(-1).values[:, 1], 6, 32) == 1
    # the second smallest *distinct* value, the sum, a constant: no order statistic, so out of scope
    distinct = lambda v: torch.tensor([sorted(set(row.tolist()))[min(1, len(set(row.tolist())) - 1)] for row in v])
    for answer in (distinct, lambda v: v.sum(-1) % 32, lambda v: torch.zeros(len(v), dtype=torch.long)):
        assert order_statistic_of(answer, 6, 32) is None
    task = ListTask("sum_mod", lambda v: v.sum(-1) % 6, None, None, None, 4, 6)
    verdict = V.verify_weights(min_model(4, 6), task)
    assert verdict.status == "out of scope" and "no order statistic" in verdict.reason


def test_command_line_proves_the_committed_find_min(capsys):
    result = subprocess.run([sys.executable, "-m", "shared.tools.verify", "find_min/checkpoints/model.pt"], cwd=ROOT,
                            capture_output=True, text=True)
    if not (committed_run("find_min") and committed_run("find_median")):  # a retrain: its own verdict, whatever it is
        model = load_checkpoint(ROOT / "find_min/checkpoints/model.pt")
        verdict = V.verify(model, min_data.task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out))
        assert result.returncode == verdict.exit_code and result.stdout.startswith(verdict.line().split(":")[0])
        pytest.skip("skipped: the proof of the committed run (a checkpoint is retrained); its own verdict was checked")
    assert result.returncode == 0 and result.stdout.startswith("proved: right on all 1,152,921,504,606,846,976")
    margin, float32 = re.search(r"worst-case margin (\S+); with every float32 rounding against it >= (\S+);",
                                result.stdout).groups()
    assert 0 < float(float32) <= float(margin)
    assert CLI.main([str(ROOT / "find_median/checkpoints/model.pt")]) == 2
    assert capsys.readouterr().out.startswith("out of scope: 2 layers")
    assert CLI.main(["no/such/file.pt"]) == 2


def test_the_averaging_baseline_is_refuted_by_real_counterexamples(capsys):
    path = ROOT / "find_median/checkpoints/averaging.pt"
    assert CLI.main([str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("refuted: ") and len(lines) > 1
    averaging = load_checkpoint(path)
    task = CLI.task_of(averaging)
    for line in lines[1:]:
        values, predicted, answer = re.fullmatch(r"counterexample: ([\d ]+) -> (\d+) \(answer (\d+)\)", line).groups()
        tokens, target = task.batch(torch.tensor([[int(x) for x in values.split()]]))
        assert target.item() == int(answer)
        assert averaging(tokens)[0, -1].argmax().item() == int(predicted) != int(answer)  # the model is wrong there


def test_the_hypothesis_value_follows_the_verdict():
    """What the notebook's 'proved' hypothesis reads: the float32 margin when proved, a counterexample's negative
    margin when refuted, None with the reason when out of scope."""
    task = min_data.task(4, 8)
    model = min_model(4, 8)
    verdict = V.verify(model, task)
    assert verdict.smallest_margin() == (verdict.float32_margin, "") and verdict.float32_margin > 0
    with torch.no_grad():
        model.embed.W_E[2, 9], model.embed.W_E[3, 9] = 3.0, 2.0
    margin, note = V.verify(model, task).smallest_margin()
    assert margin < 0 and note.startswith("refuted: e.g. ")
    mlp = Transformer(Config(d_mlp=16, n_ctx=11, d_vocab=65, d_vocab_out=64))
    margin, note = V.verify(mlp, min_data.task(10, 64)).smallest_margin()
    assert margin is None and note.startswith("out of scope: an MLP")
