"""Claims the find_min notebook makes, checked on the committed checkpoint; and a small training run."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_min.dataset import answer, task
from shared import circuits as C
from shared import load_checkpoint
from shared.tasks import evaluation_suite, family_accuracies

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "find_min/checkpoints/model.pt", n_ctx=11, d_vocab=65, d_vocab_out=64)


@pytest.fixture(scope="module")
def suite():
    return evaluation_suite(task())


def test_dataset_format():
    T = task(n=10, V=64)
    for name, (tokens, targets) in T.families(size=300).items():
        assert tokens.shape == (300, 11) and (tokens[:, -1] == 64).all(), name
        assert ((tokens[:, :-1] >= 0) & (tokens[:, :-1] < 64)).all(), name
        assert torch.equal(targets, answer(tokens[:, :-1])), name
    tokens, targets = T.sample_batch(30000, torch.Generator().manual_seed(0))
    assert set(targets.tolist()) == set(range(64))  # every answer value is trained on
    assert (torch.bincount(targets, minlength=64) > 30000 / 64 / 4).all()
    near = T.families(size=300)["near tie (others = min + 1)"][0][:, :-1]
    assert ((near == near.min(1, keepdim=True).values).sum(1) == 1).all()
    assert ((near - near.min(1, keepdim=True).values).max(1).values == 1).all()


def test_accuracy_per_family(model, suite):
    accuracies = family_accuracies(model, suite)
    assert accuracies["uniform (100,000)"] >= 0.999
    assert len(accuracies) >= 12
    for name, accuracy in accuracies.items():
        assert accuracy >= 0.99, name


def test_attention_goes_to_the_minimum(model, suite):
    tokens, targets = suite["uniform (100,000)"]
    tokens, targets = tokens[:5000], targets[:5000]
    assert C.attention_on(model, tokens, tokens[:, :-1] == targets[:, None])[0, 0] > 0.9


def test_qk_circuit_is_monotone(model):
    qk = C.full_qk_circuit(model, 0, query_token=64, query_pos=10, key_positions=range(10))[:, :64]
    for p in range(10):
        assert C.rank_correlation(qk[p], torch.arange(64)) <= -0.99
    assert ((qk[:, :-1] - qk[:, 1:]) > 0).all()  # strictly decreasing at every position


def test_ov_circuit_copies(model):
    ov = C.full_ov_circuit(model, 0)[:64]
    assert C.diagonal_fraction(ov) >= 0.9
    assert C.copying_score(ov) >= 0.5


def test_causal_checks(model, suite):
    tokens, targets = suite["uniform (100,000)"]
    tokens, targets = tokens[:5000], targets[:5000]
    ablated = C.ablation_table(model, tokens, targets, method="mean", reference_tokens=tokens)
    assert ablated["none"][1] >= 0.999 and ablated["L0H0"][1] < 0.5
    hook = C.attend_only_to(0, 0, key_positions=tokens[:, :-1].argmin(-1))
    assert (model.run_with_hooks(tokens, [hook])[:, -1].argmax(-1) == targets).float().mean() >= 0.999


def test_extracted_algorithm_agrees(model, suite):
    tokens, _ = suite["uniform (100,000)"]
    predicted, _ = C.select_and_copy(model, tokens)
    assert (predicted == model(tokens)[:, -1].argmax(-1)).float().mean() >= 0.999


def test_small_training_run_learns(tmp_path):
    """The real script with a small config (n = 4, V = 16): it trains, reports and saves a good model."""
    out = tmp_path / "tiny.pt"
    run = subprocess.run([sys.executable, str(ROOT / "find_min/training.py"), "--n=4", "--V=16", "--d_model=32",
                          "--d_head=32", "--max_steps=600", "--batch_size=256", "--lr=1e-2", "--eval_every=50",
                          f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| near tie (others = min + 1) |" in run.stdout
    model = load_checkpoint(out, n_ctx=5, d_vocab=17)
    T = task(n=4, V=16)
    for name, accuracy in family_accuracies(model, T.families(size=1000, seed=3)).items():
        assert accuracy >= 0.98, name
    assert model.metadata["hyperparameters"]["n"] == 4
