"""What find_min's notebook reads checked against independent computations on the committed checkpoint, its dataset,
and a small training run (the notebook itself runs in tests/test_notebooks.py)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_min.dataset import task
from shared import circuits as C
from shared import load_checkpoint
from shared.ablation import attention_one_hot, run_patched
from shared.tasks import evaluation_suite, family_accuracies

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    """The checkpoint as it is: the committed one, or whatever the user retrained (its readings are checked on it
    where they apply, skipped with the reason where they do not)."""
    model = load_checkpoint(ROOT / "find_min/checkpoints/model.pt", task="find_min")
    if not C.is_one_head_attention_only(model):
        pytest.skip("skipped: the readings checked here are exact only for one layer, one head, attention only and "
                    f"no LayerNorm, and this checkpoint has {model.cfg.n_layers} layer(s) x {model.cfg.n_heads} head(s), "
                    f"d_mlp {model.cfg.d_mlp}, {model.cfg.normalization_type or 'no'} LayerNorm")
    return model


@pytest.fixture(scope="module")
def suite(model):
    return evaluation_suite(task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out), size=500, uniform_size=5000)


def test_dataset_specifics():
    """Near ties put every other value one above the minimum (tests/test_tasks.py checks every task's format)."""
    near = task(n=10, V=64).families(size=300).of("near_tie")[0][:, :-1]
    assert ((near == near.min(1, keepdim=True).values).sum(1) == 1).all()
    assert ((near - near.min(1, keepdim=True).values).max(1).values == 1).all()


def test_full_qk_circuit_equals_the_real_scores(model, suite):
    """Independent check of the QK hypotheses: the weights-only scores are the scores the model computes."""
    tokens = suite.of("uniform")[0][:200]
    n = tokens.shape[1] - 1
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_attn_scores")
    qk = C.full_qk_circuit(model, 0, query_token=model.cfg.d_vocab_out, query_pos=n, key_positions=range(n))
    assert torch.allclose(cache["attn_scores", 0][:, 0, -1, :-1], qk[torch.arange(n), tokens[:, :-1]], atol=1e-4)


def test_weights_only_algorithm_equals_forcing_the_pattern(model, suite):
    """Independent check of the algorithm hypothesis: the weights-only logits are what the model computes when its
    attention is forced one-hot onto the chosen key."""
    tokens = suite.of("uniform")[0][:500]
    predicted, chosen = C.select_and_copy_from_weights(model, tokens)
    forced = run_patched(model, tokens, [attention_one_hot(0, 0, chosen)])[:, -1].argmax(-1)
    assert torch.equal(predicted, forced)


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
