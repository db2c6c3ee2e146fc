"""find_median's analysis checked against independent computations on the committed checkpoints, its data, the
hand-built model whose every weight is known, the program that explains the trained model, and a small training
run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_median import explanation as E
from find_median.dataset import answer, median_swap_pairs, same_middle, task
from shared import circuits as C
from shared import load_checkpoint
from shared.tasks import evaluation_suite, family_accuracies, task_of

from conftest import committed_run

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "find_median/checkpoints/model.pt"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(CHECKPOINT, task="find_median")


@pytest.fixture(scope="module")
def model_task(model):
    """The task at the checkpoint's own n and V: a user may have retrained it at another shape."""
    return task_of(model)


@pytest.fixture(scope="module")
def suite(model_task):
    return evaluation_suite(model_task, size=300, uniform_size=3000)


def test_dataset_specifics():
    """The patching pairs, the odd length, and donors that share exactly the middle of the sorted list."""
    clean, corrupt, clean_y, corrupt_y = median_swap_pairs(500)
    assert len(clean) > 400 and (clean_y != corrupt_y).all()
    assert ((clean != corrupt).sum(1) == 1).all() and (clean[:, 3] == clean_y).all()
    with pytest.raises(ValueError, match="odd"):
        task(n=6)
    with pytest.raises(ValueError, match="odd"):
        answer(torch.zeros(2, 4, dtype=torch.long))
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 64, (500, 7), generator=gen)
    for keep in (0, 1, 2):
        donors = same_middle(values, keep, 64, gen)
        mid = slice(3 - keep, 4 + keep)
        assert torch.equal(donors.sort(1).values[:, mid], values.sort(1).values[:, mid])
        assert ((donors >= 0) & (donors < 64)).all() and (donors.sort(1).values != values.sort(1).values).any()


def test_l1_median_by_brute_force(suite, model_task):
    """Independent check of the identity the averaging hypotheses rest on: a loop over every candidate m."""
    for row in suite.of("uniform")[0][:300, :-1].tolist():
        candidates = range(model_task.V)
        assert min(candidates, key=lambda m: (sum(abs(x - m) for x in row), m)) == sorted(row)[model_task.n // 2]


def test_the_cheap_selecting_scores_are_the_models_own(model, suite):
    """shared.circuits.sep_scores, what the one-key and select-then-copy measures read, against the cache."""
    tokens = suite.of("uniform")[0][:500]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_attn_scores")
    assert torch.allclose(C.sep_scores(model, tokens, 1, 0), cache["attn_scores", 1][:, 0, -1], atol=1e-4)


def test_direct_logits_sum_to_the_logits(model, suite):
    """Independent check of the direct-logit hypotheses: the components' direct logits add up to the real logits."""
    from test_circuits import direct_parts
    logits, total, _ = direct_parts(model, suite.of("uniform")[0][:300])
    assert torch.allclose(total, logits, atol=1e-3)


@pytest.fixture(scope="module")
def program(model, model_task):
    """The program of this checkpoint's run: the committed one, or (after a retrain) fitted now."""
    return E.load_or_fit(model, model_task, CHECKPOINT)[0]


def test_the_saved_program_is_this_runs_and_round_trips(model, program):
    """The program beside the committed checkpoint was fitted to it; after a retrain it is refused, not misread,
    until it is refitted for the new run (python find_median/explanation.py --save)."""
    saved = json.loads(E.saved_path(CHECKPOINT).read_text())
    if committed_run("find_median"):
        assert saved["run_id"] == model.metadata["run_id"]
    if saved["run_id"] == model.metadata["run_id"]:
        assert program.count() == sum(len(v) for v in saved["program"].values() if isinstance(v, list))
    else:
        assert E.load_saved(model, CHECKPOINT) is None
    again = E.Explanation.from_json(program.to_json())
    assert all(torch.equal(a, b) for a, b in zip(program.numbers().values(), again.numbers().values()))


def test_the_program_computes_from_its_numbers_alone(model, suite, program):
    """The program keeps no model: its logits and attention come from its tables, and term 1 is the model's own
    layer-0 attention, exactly; substituted into the model term by term, every term in place leaves the model's
    answers on uniform lists."""
    assert not any(isinstance(v, torch.nn.Module) for v in vars(program).values())
    tokens = suite.uniform[0][:1000]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")
    assert torch.allclose(program.average(tokens), cache["pattern", 0][:, 0, -1], atol=1e-5)
    lo, m, hi = program.middle(tokens)
    assert torch.equal(m, answer(tokens[:, :-1]))
    assert (lo <= m).all() and (m <= hi).all()
    logits = E.substituted_logits(program, model, tokens, list(E.TERMS), torch.Generator().manual_seed(0))
    assert (logits.argmax(-1) == model(tokens)[:, -1].argmax(-1)).float().mean() > 0.99


def test_fitting_a_program_to_a_model_reads_its_attention():
    """fit on a small trained-like model: the hand-built one (its attention and logits are known) gets a program
    whose attention follows the model's, and a model it cannot explain is refused in one line. It fits under
    torch.no_grad(), as the notebook's measure does on a run with no saved program (a retrain)."""
    from find_median.handbuilt import handbuilt_model
    with pytest.raises(ValueError, match="two-layer, one-head"):
        E.fit(load_checkpoint(ROOT / "find_median/checkpoints/averaging.pt"), task())
    small = handbuilt_model(n=5, V=16)
    with torch.no_grad():
        program = E.fit(small, task(5, 16), size=2000, steps=150)
    tokens = task(5, 16).batch(torch.randint(0, 16, (500, 5), generator=torch.Generator().manual_seed(1)))[0]
    _, cache = small.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    assert C.attention_distance(program.attention(tokens), cache["pattern", 1][:, 0, -1]) < 0.2
    assert (program.logits(tokens).argmax(-1) == answer(tokens[:, :-1])).float().mean() > 0.95


def test_small_training_run_learns(tmp_path):
    out = tmp_path / "tiny.pt"
    run = subprocess.run([sys.executable, str(ROOT / "find_median/training.py"), "--n=3", "--V=8", "--d_model=32",
                          "--d_head=32", "--d_mlp=64", "--max_steps=800", "--batch_size=256", "--lr=1e-2",
                          "--eval_every=50", f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    model = load_checkpoint(out, n_ctx=4, d_vocab=9)
    for name, accuracy in family_accuracies(model, task(n=3, V=8).families(size=1000, seed=3)).items():
        assert accuracy >= 0.97, name


def test_handbuilt_checkpoint_is_the_formula():
    """checkpoints/handbuilt.pt is exactly what `python find_median/handbuilt.py` writes today."""
    from find_median.handbuilt import handbuilt_model
    saved = load_checkpoint(ROOT / "find_median/checkpoints/handbuilt.pt", task="find_median")
    rebuilt = handbuilt_model()
    assert saved.cfg == rebuilt.cfg and saved.metadata["handbuilt"] is True
    for name, tensor in rebuilt.state_dict().items():
        assert torch.equal(saved.state_dict()[name], tensor), name


@pytest.mark.parametrize("n, V", [(5, 8), (3, 24), (7, 4)])
def test_handbuilt_model_is_right_on_every_input(n, V):
    """The construction on every list of small shapes (n = 7, V = 64 has 4.4e12: the suite samples it)."""
    from find_median.handbuilt import handbuilt_model
    model = handbuilt_model(n, V)
    values = torch.cartesian_prod(*[torch.arange(V)] * n).view(-1, n)
    tokens = torch.cat([values, torch.full((len(values), 1), V)], 1)
    with torch.no_grad():
        logits = model(tokens, last_only=True)[:, -1]
    top2 = logits.topk(2, dim=-1).values
    assert (logits.argmax(-1) == answer(values)).all()
    assert (top2[:, 0] - top2[:, 1]).min() > 5  # by a wide margin, not by a float's luck


def test_mlp0_reading_of_the_handbuilt_model():
    """read_mlp0 on the model whose neurons are known: every neuron a sharp step at t + 0.5 counting the values
    below; neuron 2t turns on at k + 1 = 4 of them (the median is <= t), its partner 2t + 1 at 5."""
    from find_median.handbuilt import handbuilt_model
    from find_median.mlp0 import median_thresholds, read_mlp0
    reading = read_mlp0(handbuilt_model(), size=500)
    step = reading["fits"]["step"]
    assert set(reading["kind"]) == {"step"} and step["r2"].min() > 0.999
    assert torch.equal(step["threshold"][0::2], torch.arange(63) + 0.5)
    assert (reading["side"] == -1).all()
    assert (reading["turn_on"][0::2] == 4).all() and (reading["turn_on"][1::2] == 5).all()
    assert len(reading["important"]) > 0
    assert set(median_thresholds(reading).tolist()) <= set((torch.arange(63) + 0.5).tolist())
