import pytest
import torch

from find_min.dataset import task as min_task
from handbuilt import min_batch, min_model, min_then_move_model
from shared import CheckpointError
from shared.checkpoint import load_snapshots, save_snapshots
from shared.tools.experiment import run_training
from shared.progress import (accuracies, attention_on_answer, composition, formation_gap, formation_step,
                             head_ablations, progress_at, track)
from shared.tools.train import snapshot_schedule

N, V = 4, 8


def test_snapshots_round_trip(tmp_path):
    models = [min_model(N, V, c=c) for c in (1.0, 2.0, 3.0)]
    path = tmp_path / "s.pt"
    save_snapshots(path, models[0].cfg, [0, 10, 100], [m.state_dict() for m in models])
    loaded = load_snapshots(path, n_ctx=N + 1)
    assert [step for step, _ in loaded] == [0, 10, 100]
    for (_, got), want in zip(loaded, models):
        for (name, a), b in zip(got.state_dict().items(), want.state_dict().values()):
            assert torch.equal(a, b.half().float()), name
    assert path.stat().st_size < 3 * sum(p.numel() for p in models[0].parameters()) * 2 + 20000
    with pytest.raises(CheckpointError, match="config mismatch"):
        load_snapshots(path, n_ctx=99)
    torch.save({"format": "transformer-circuits-snapshots/1", "config": {}, "steps": [1], "state_dicts": []}, path)
    with pytest.raises(CheckpointError, match="1 steps but 0 snapshots"):
        load_snapshots(path)


def measures(model, groups):
    return track([(0, model)], groups)


def test_measures_on_handbuilt_models():
    tokens, targets = min_batch(1000, N, V)
    probe = (tokens, targets)
    m = measures(min_model(N, V), [accuracies({"uniform": probe}), attention_on_answer(probe)])
    assert m["accuracy: uniform"] == [1.0]
    ties = (tokens[:, :-1] == targets[:, None]).sum(1) > 1
    assert m["attention on answer: L0H0"][0] == pytest.approx(1.0, abs=1e-3) and ties.any()
    two_model = min_then_move_model(N, V)
    two = measures(two_model, [attention_on_answer(probe), composition(two_model.cfg, (0, 0), (1, 0)),
                               head_ablations(["L0H0", "L1H0"], probe)])
    assert two["attention on answer: L0H0"][0] == pytest.approx(1.0, abs=1e-3)
    assert two["attention on answer: L1H0"][0] == pytest.approx(0.0, abs=1e-3)  # layer 1 looks at SEP
    assert two["V-composition L0H0->L1H0 / baseline"][0] > 1.5
    assert two["Q-composition L0H0->L1H0 / baseline"] == [0.0]
    mode_rate = (targets == targets.mode().values).float().mean().item()
    assert two["accuracy with L0H0 ablated"][0] == pytest.approx(mode_rate)
    assert two["accuracy with L1H0 ablated"][0] == pytest.approx(mode_rate)


def test_formation_step():
    steps = [0, 1, 10, 100, 1000]
    assert formation_step(steps, [0.0, 0.1, 0.95, 0.5, 1.0]) == 1000  # it fell back: not formed until the end
    assert formation_step(steps, [0.0, 0.1, 0.95, 0.97, 1.0]) == 10
    assert formation_step(steps, [1.0, 0.5, 0.05, 0.0, 0.0]) == 10  # falling measures too
    assert formation_step(steps, [0.3] * 5) is None
    # defect: a K-composition ratio drifting from 0.971 to 1.056 was called the first structure to form
    assert formation_step(steps, [0.971, 1.02, 0.99, 1.04, 1.056]) is None
    assert formation_step(steps, [0.971, 1.02, 0.99, 1.04, 1.056], tolerance=0.05) == 1000
    assert snapshot_schedule(1000, 5)[0] == 0 and snapshot_schedule(1000, 5)[-1] == 1000


def test_short_run_snapshots_show_learning(tmp_path):
    T = min_task(n=4, V=16)
    p = dict(n=4, V=16, n_layers=1, n_heads=1, d_model=32, d_head=32, d_mlp=None, act_fn="relu",
             normalization_type=None, init_scale=1.0, batch_size=256, max_steps=300, lr=1e-2, weight_decay=0.0,
             warmup_steps=20, min_lr_frac=0.1, grad_clip=1.0, eval_every=50, eval_size=1024,
             target_accuracy=1.0, seed=0, device="cpu", snapshots=8)
    run_training(T, p, tmp_path / "model.pt", progress=False)
    snapshots = load_snapshots(tmp_path / "model.snapshots.pt")
    assert len(snapshots) >= 5 and snapshots[0][0] == 0
    probe = T.batch(T.balanced(1000, 4, 16, torch.Generator().manual_seed(1)))
    series = track(snapshots, [accuracies({"uniform": T.families(500).of("uniform")}), attention_on_answer(probe)])
    assert series["step"] == [s for s, _ in snapshots]
    first, last = series["attention on answer: L0H0"][0], series["attention on answer: L0H0"][-1]
    assert last > first + 0.4  # attention on the minimum rises
    assert series["accuracy: uniform"][-1] > series["accuracy: uniform"][0] + 0.5
    assert formation_step(series["step"], series["attention on answer: L0H0"]) is not None


def test_a_formation_fail_says_how_far_the_structure_had_come():
    series = {"step": [0, 10, 20, 30], "s": [0.0, 0.2, 0.9, 1.0], "a": [0.0, 1.0, 1.0, 1.0]}
    assert formation_gap(series, "s", "a") == (10, "formed at steps 20 and 10, 1 snapshot(s) apart")  # a FAIL
    assert progress_at(series, "s", 10) == pytest.approx(0.2)  # at step 10 the structure was a fifth of the way
    settled_last = dict(series, s=[0.0, 0.2, 0.5, 1.0])  # it may form later still: later than the accuracy anyway
    assert formation_gap(settled_last, "s", "a") == (20, "s settles only at the last snapshot (step 30), a at step "
                                                         "10: at least 20 steps later")
    both_last = dict(settled_last, a=[0.0, 0.2, 0.5, 1.0])
    assert formation_gap(both_last, "s", "a") == (None, "s and a both settle only at the last snapshot (step 30)")
    assert formation_gap(dict(series, s=[0.5] * 4), "s", "a") == (None, "s barely moves over the snapshots")
