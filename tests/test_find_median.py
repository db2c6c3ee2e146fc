"""Claims the find_median notebook makes, checked on the committed checkpoints; and a small training run."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from find_median.dataset import answer, median_swap_pairs, task
from shared import circuits as C
from shared import load_checkpoint, load_snapshots
from find_median.claims import claims as find_median_claims
from shared.claims import by_key, describe, failing, formation_claim, formation_series
from shared.tasks import evaluation_suite, family_accuracies

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "find_median/checkpoints/model.pt", task="find_median", n_ctx=8, d_vocab=65,
                           d_vocab_out=64)


@pytest.fixture(scope="module")
def averaging():
    return load_checkpoint(ROOT / "find_median/checkpoints/averaging.pt", task="find_median", n_ctx=8, d_vocab=65,
                           n_layers=1)


@pytest.fixture(scope="module")
def suite():
    return evaluation_suite(task())


def test_dataset_specifics():
    """The patching pairs and the odd length (tests/test_tasks.py checks the format of every task's data)."""
    clean, corrupt, clean_y, corrupt_y = median_swap_pairs(500)
    assert len(clean) > 400 and (clean_y != corrupt_y).all()
    assert ((clean != corrupt).sum(1) == 1).all() and (clean[:, 3] == clean_y).all()
    with pytest.raises(ValueError, match="odd"):
        task(n=6)
    with pytest.raises(ValueError, match="odd"):
        answer(torch.zeros(2, 4, dtype=torch.long))


@pytest.fixture(scope="module")
def claims(model, averaging, suite):
    return find_median_claims(model, suite, median_swap_pairs(1000), averaging)


def test_every_claim_of_the_notebook_holds(claims):
    """Every row of the notebook's claims table (whatever the task's claims.py computes) holds on the committed
    model, at the claim's own threshold: adding a claim to claims.py adds it here."""
    rows = claims["claims"]
    assert len(rows) >= 15 and len({c.key for c in rows}) == len(rows) and not failing(rows), describe(failing(rows))
    assert claims["averaging head"] == (0, 0) and claims["selecting head"] == (1, 0)


def test_l1_median_by_brute_force(suite):
    """Independent check of the identity the averaging claims rest on: a loop over every candidate m."""
    values = suite.of("uniform")[0][:300, :-1].tolist()
    for row in values:
        best = min(range(64), key=lambda m: (sum(abs(x - m) for x in row), m))
        assert best == sorted(row)[3]


def test_selection_reads_the_real_attention(model, suite):
    """Independent check of select-then-copy's first step: its chosen key is the argmax of the real pattern."""
    tokens = suite.of("uniform")[0][:500]
    _, chosen = C.select_and_copy_from_activations(model, tokens, layer=1, head=0)
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    assert torch.equal(chosen, cache["pattern", 1][:, 0, -1, :-1].argmax(-1))


def test_completed_algorithm_by_the_real_pattern(model, suite, claims):
    """Independent check of the 'select_output' claim: the value at the real pattern's argmax key, against the
    model's answer, on the same 5,000 uniform lists."""
    tokens = suite.uniform[0][:5000]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")
    picked = tokens[torch.arange(len(tokens)), cache["pattern", 1][:, 0, -1, :-1].argmax(-1)]
    agreement = (picked == model(tokens)[:, -1].argmax(-1)).float().mean().item()
    assert agreement == pytest.approx(by_key(claims["claims"])["select_output"].value, abs=2e-4)


def test_direct_logits_sum_to_the_logits(model, suite):
    """Independent check of the direct-logit claims: the components' direct logits add up to the real logits."""
    from test_circuits import direct_parts
    logits, total, _ = direct_parts(model, suite.of("uniform")[0][:300])
    assert torch.allclose(total, logits, atol=1e-3)


def test_formation_order_of_section_7(model, suite):
    """Section 7's claim on the committed snapshots (the notebook's inputs): layer 1's selection forms no later
    than accuracy on near ties, which it makes possible."""
    snapshots = load_snapshots(ROOT / "find_median/checkpoints/model.snapshots.pt", run_id=model.metadata["run_id"])
    near = suite.label("near_tie")
    _, marks = formation_series(snapshots, task(), suite, ["near_tie"],
                                ["attention on answer: L1H0", f"accuracy: {near}"])
    assert formation_claim(marks, "attention on answer: L1H0", f"accuracy: {near}").holds, marks


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
    model = handbuilt_model()
    reading = read_mlp0(model, size=500)
    step = reading["fits"]["step"]
    assert set(reading["kind"]) == {"step"} and step["r2"].min() > 0.999
    assert torch.equal(step["threshold"][0::2], torch.arange(63) + 0.5)
    assert (reading["side"] == -1).all()
    assert (reading["turn_on"][0::2] == 4).all() and (reading["turn_on"][1::2] == 5).all()
    assert len(reading["important"]) > 0
    cuts = median_thresholds(reading)
    assert set(cuts.tolist()) <= set((torch.arange(63) + 0.5).tolist())
