"""Claims the find_min notebook makes, checked on the committed checkpoint; and a small training run."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_min.dataset import task
from shared import circuits as C
from shared import load_checkpoint, load_snapshots
from find_min.claims import claims as find_min_claims
from shared.claims import by_key, describe, failing, formation_claim, formation_series
from shared.tasks import evaluation_suite, family_accuracies, mistakes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "find_min/checkpoints/model.pt", task="find_min", n_ctx=11, d_vocab=65,
                           d_vocab_out=64)


@pytest.fixture(scope="module")
def suite():
    return evaluation_suite(task())


def test_dataset_specifics():
    """Near ties put every other value one above the minimum (tests/test_tasks.py checks every task's format)."""
    T = task(n=10, V=64)
    near = T.families(size=300).of("near_tie")[0][:, :-1]
    assert ((near == near.min(1, keepdim=True).values).sum(1) == 1).all()
    assert ((near - near.min(1, keepdim=True).values).max(1).values == 1).all()


@pytest.fixture(scope="module")
def claims(model, suite):
    return find_min_claims(model, suite, task())


def test_every_claim_of_the_notebook_holds(claims):
    """Every row of the notebook's claims table (whatever the task's claims.py computes) holds on the committed
    model, at the claim's own threshold: adding a claim to claims.py adds it here."""
    rows = claims["claims"]
    assert len(rows) >= 15 and len({c.key for c in rows}) == len(rows) and not failing(rows), describe(failing(rows))
    assert claims["selecting head"] == (0, 0)


def test_full_qk_circuit_equals_the_real_scores(model, suite):
    """Independent check of the QK claims: the weights-only scores are the scores the model computes."""
    tokens = suite.of("uniform")[0][:200]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_attn_scores")
    qk = C.full_qk_circuit(model, 0, query_token=64, query_pos=10, key_positions=range(10))
    assert torch.allclose(cache["attn_scores", 0][:, 0, -1, :-1], qk[torch.arange(10), tokens[:, :-1]], atol=1e-4)


def test_weights_only_algorithm_equals_forcing_the_pattern(model, suite):
    """Independent check of the algorithm claim: the weights-only logits are what the model computes when its
    attention is forced one-hot onto the chosen key."""
    tokens = suite.of("uniform")[0][:500]
    predicted, chosen = C.select_and_copy_from_weights(model, tokens)
    forced = model.run_with_hooks(tokens, [C.attend_only_to(0, 0, chosen)])[:, -1].argmax(-1)
    assert torch.equal(predicted, forced)


def test_mistake_count_matches_the_accuracy_table(model, suite, claims):
    """The errors claim counts the same mistakes that shared.tasks.mistakes lists one by one."""
    listed = mistakes(model, suite, limit=10**6)
    errors = by_key(claims["claims"])["errors"].value
    assert len(listed) == round(errors * sum(len(y) for _, y in suite.values()))


def test_formation_order_of_section_7(model, suite):
    """Section 7's claim on the committed snapshots (the notebook's inputs): the head's attention on the
    minimum forms no later than accuracy on uniform lists."""
    snapshots = load_snapshots(ROOT / "find_min/checkpoints/model.snapshots.pt", run_id=model.metadata["run_id"])
    _, marks = formation_series(snapshots, task(), suite, ["uniform"],
                                ["attention on answer: L0H0", "accuracy: uniform"])
    assert formation_claim(marks, "attention on answer: L0H0", "accuracy: uniform").holds, marks


def test_a_barely_trained_model_fails_claims(tmp_path, suite):
    """A model trained for 60 steps shows FAILS rows: the claims can fail."""
    from find_min import training
    from shared.cli import hyperparameters
    from shared.experiment import run_training
    p = {**hyperparameters(vars(training)), "max_steps": 60, "snapshots": 0, "device": "cpu"}
    young, _ = run_training(task(), p, tmp_path / "young.pt", progress=False)
    small = suite.head(2000)
    failing = {c.key for c in find_min_claims(young, small, task())["claims"] if not c.holds}
    assert {"accuracy", "weakest_family", "algorithm", "proved"} <= failing


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
