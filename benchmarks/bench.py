"""Training speed of both tasks, the turn of the user's loop (training.py, then the notebook), and the cost of our
hook machinery against plain PyTorch and TransformerLens.

    python benchmarks/bench.py              # about 15 minutes on 2 CPU cores
    python benchmarks/bench.py --seeds=10   # seeds 0-9 instead of 0-4

For each task, with the default hyperparameters of its training.py:
  * a training run per seed (stopped at 99.9% held-out): steps/s, and the seconds to 99% and 99.9% as the median
    and the maximum over the seeds (one seed is an anecdote);
  * `python <task>/training.py --seed=S` per seed, as a user runs it (a fresh process, to its own stopping
    target, the report and the save included): wall seconds, median and maximum, and the steps it took;
  * one execution of the task's analyze.ipynb on the committed checkpoint, headless as the tests run it, also as a
    ratio to the reference (300 plain AdamW steps, batch 512, of a 2-layer d_model-64 transformer on median batches,
    measured in the same run): find_median's target is at most 2.3x;
  * the time of one training step (forward, backward, AdamW) of our model with no hooks attached, as a ratio
    to a plain PyTorch model of the same sizes (fused qkv projection, scaled_dot_product_attention, no
    hook points), and to TransformerLens' HookedTransformer when transformer_lens (<4) is installed.
Ratios are medians over interleaved repetitions, so both sides see the same machine load.
"""
import importlib
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.model import Transformer  # noqa: E402
from shared.published import hyperparameters  # noqa: E402
from shared.tools.experiment import model_config  # noqa: E402
from shared.tools.train import make_optimizer, train  # noqa: E402
from shared.tables import markdown_table  # noqa: E402


class PlainTransformer(nn.Module):
    """The reference: the same architecture written plainly, with no hook points and a fused qkv weight."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.embed = nn.Embedding(cfg.d_vocab, d)
        self.pos = nn.Parameter(torch.randn(cfg.n_ctx, d))
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * H * dh) for _ in range(cfg.n_layers))
        self.out = nn.ModuleList(nn.Linear(H * dh, d) for _ in range(cfg.n_layers))
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(d, cfg.d_mlp), nn.ReLU(), nn.Linear(cfg.d_mlp, d))
                                  for _ in range(cfg.n_layers)) if cfg.d_mlp else None
        self.unembed = nn.Linear(d, cfg.d_vocab_out)

    def forward(self, tokens):
        B, P = tokens.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        x = self.embed(tokens) + self.pos[:P]
        for l in range(self.cfg.n_layers):
            q, k, v = self.qkv[l](x).view(B, P, 3 * H, dh).transpose(1, 2).split(H, dim=1)
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out[l](z.transpose(1, 2).reshape(B, P, H * dh))
            if self.mlps is not None:
                x = x + self.mlps[l](x)
        return self.unembed(x)


def step_seconds(model, batches, steps, last_only=False):
    """Seconds per training step (forward, backward, AdamW as shared.train makes it)."""
    opt = make_optimizer(model, lr=1e-4)
    t0 = time.perf_counter()
    for tokens, targets in batches[:steps]:
        logits = model(tokens, last_only=True) if last_only else model(tokens)
        loss = F.cross_entropy(logits[:, -1], targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def step_ratios(cfg, task, batch_size, reps=7, steps=30):
    """{name: median over reps of (its step time / the plain model's)} with interleaved repetitions, and our
    training step's median time. Every model computes the logits at every position, except "ours, last
    position", which is our step as shared.train runs it (the loss reads only the last position)."""
    gen = torch.Generator().manual_seed(0)
    batches = [task.sample_batch(batch_size, gen) for _ in range(steps)]
    models = {"ours": (Transformer(cfg), False), "ours, last position": (Transformer(cfg), True),
              "plain": (PlainTransformer(cfg), False)}
    try:
        from shared.interop import to_hooked_transformer
        models["TransformerLens"] = (to_hooked_transformer(Transformer(cfg)).train(), False)
    except ImportError:
        pass
    for m, last in models.values():
        step_seconds(m.train(), batches, 5, last)  # warm-up
    times = {name: [] for name in models}
    for _ in range(reps):
        for name, (m, last) in models.items():
            times[name].append(step_seconds(m, batches, steps, last))
    plain = times["plain"]
    return ({name: statistics.median(t / p for t, p in zip(ts, plain)) for name, ts in times.items()},
            statistics.median(times["ours, last position"]))


def first_reaching(history, threshold):
    for acc, seconds, step in zip(history["eval_accuracy"], history["seconds"], history["step"]):
        if acc >= threshold:
            return seconds, step
    return math.nan, None


def time_to_target(name, seed):
    """(seconds to 99%, seconds to 99.9%, step at 99.9%, steps/s) of one default training run with `seed`,
    stopped at 99.9% held-out: the benchmark's measure, not training.py's stopping rule."""
    p = {**hyperparameters(vars(importlib.import_module(f"{name}.training"))), "seed": seed}
    task = importlib.import_module(f"{name}.dataset").task(p["n"], p["V"])
    model = Transformer(model_config(task, p))
    history = train(model, task, {**p, "target_accuracy": 0.999}, progress=False)
    t99, _ = first_reaching(history, 0.99)
    t999, s999 = first_reaching(history, 0.999)
    return t99, t999, s999, history["stopped_at"] / history["seconds"][-1]


def training_script_run(name, seed):
    """(wall seconds, steps, target reached) of `python <task>/training.py --seed=seed` in a fresh process, saving
    to a temporary folder (no snapshots, so nothing committed is touched)."""
    from shared.checkpoint import load_checkpoint
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model.pt"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / name / "training.py"), f"--seed={seed}", f"--out={out}",
                        "--snapshots=0"], check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        history = load_checkpoint(out, task=name).metadata["history"]
    return seconds, history["stopped_at"], history["target_reached"] is not None


def notebook_seconds(name):
    """Wall seconds of one headless execution of <task>/analyze.ipynb (a fresh copy, from its folder)."""
    import nbformat
    from nbclient import NotebookClient
    path = ROOT / name / "analyze.ipynb"
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


def reference_seconds(steps: int = 300, batch: int = 512) -> float:
    """The host's speed: seconds for 300 AdamW steps of a plain 2-layer transformer (d_model 64, one head, MLP 256)
    on median batches of n = 7, V = 64: the unit the notebook's speed target is stated in."""
    from shared.model import Config
    cfg = Config(n_layers=2, n_heads=1, d_model=64, d_head=64, d_mlp=256, n_ctx=8, d_vocab=65, d_vocab_out=64)
    model = PlainTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = torch.randint(0, 64, (batch, 7), generator=gen)
        loss = F.cross_entropy(model(torch.cat([x, torch.full((batch, 1), 64)], 1))[:, -1], x.sort(1).values[:, 3])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def loop_row(name, seeds, reference):
    """The user's loop for one task: training.py per seed, then one notebook execution (and its ratio to the
    reference)."""
    runs = [training_script_run(name, seed) for seed in seeds]
    seconds = [r[0] for r in runs]
    notebook = notebook_seconds(name)
    return [name, f"{statistics.median(seconds):.1f} s", f"{max(seconds):.1f} s",
            f"{statistics.median(r[1] for r in runs):.0f}", f"{sum(r[2] for r in runs)}/{len(runs)}",
            f"{notebook:.1f} s", f"{notebook / reference:.2f}x"]


def bench_task(name, seeds):
    """The row of one task (median and maximum over seeds) and its per-seed rows."""
    p = hyperparameters(vars(importlib.import_module(f"{name}.training")))
    task = importlib.import_module(f"{name}.dataset").task(p["n"], p["V"])
    cfg = model_config(task, p)
    ratios, step_time = step_ratios(cfg, task, p["batch_size"])
    runs = {seed: time_to_target(name, seed) for seed in seeds}
    t99, t999 = [r[0] for r in runs.values()], [r[1] for r in runs.values()]
    missed = [seed for seed, r in runs.items() if math.isnan(r[1])]
    worst = f"{max(t999):.1f} s" if not missed else f"not reached (seeds {missed})"
    row = [name, f"{cfg.n_layers}L {cfg.n_heads}H d{cfg.d_model}{' MLP ' + str(cfg.d_mlp) if cfg.d_mlp else ''}",
           f"{statistics.median(r[3] for r in runs.values()):.0f}", f"{statistics.median(t99):.1f} s",
           f"{statistics.median(t999):.1f} s", worst, f"{step_time * 1000:.1f} ms", f"{ratios['ours']:.2f}x",
           f"{ratios['ours, last position']:.2f}x",
           f"{ratios['TransformerLens']:.2f}x" if "TransformerLens" in ratios else "not installed"]
    return row, [[name, seed, f"{r[1]:.1f} s", r[2]] for seed, r in runs.items()]


def main():
    torch.set_flush_denormal(True)
    seeds = range(5)
    for arg in sys.argv[1:]:
        if arg.startswith("--seeds="):
            seeds = range(int(arg.split("=", 1)[1]))
    reference = reference_seconds()
    results = {name: bench_task(name, seeds) for name in ("find_min", "find_median")}
    loop = [loop_row(name, seeds, reference) for name in ("find_min", "find_median")]
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; seeds 0-{len(seeds) - 1} "
          f"of each default recipe; the reference (300 plain AdamW steps) took {reference:.1f} s\n")
    print(markdown_table(["task", "model", "steps/s", "to 99%, median", "to 99.9%, median", "to 99.9%, max",
                          "training step", "ours / plain", "ours, last position / plain", "TransformerLens / plain"],
                         [row for row, _ in results.values()], "ll" + "r" * 8) + "\n")
    print(markdown_table(["task", "seed", "to 99.9% held-out", "step"],
                         [line for _, per_seed in results.values() for line in per_seed], "lrrr") + "\n")
    print("The user's loop: `python <task>/training.py --seed=S` to its own stopping target (a fresh process, the report "
          "and the save included), then one execution of `analyze.ipynb` (target for find_median: at most 2.3x the "
          "reference).\n")
    print(markdown_table(["task", "training.py, median", "training.py, max", "steps, median", "stopping target met",
                          "notebook", "notebook / reference"], loop))


if __name__ == "__main__":
    main()
