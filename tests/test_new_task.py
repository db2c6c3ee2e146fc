"""A third task by copying a folder, as a newcomer does it: find_min copied to find_max, its answer changed to the
maximum and nothing else, is swept (trained with the copy's training.py defaults and overrides, measured, its
mechanism classified) and the sweep's verifier decides it from the weights (its order statistic found from the
answer itself). The training script's own entry point is find_min's, run by tests/test_find_min.py."""
import shutil
import subprocess
import sys
from pathlib import Path

from shared.published import load_summary

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n=4", "--V=8", "--d_model=32", "--d_head=32", "--max_steps=300", "--batch_size=256", "--lr=1e-2",
        "--eval_every=50",
        # the architecture is pinned too: the user's edits at the top of training.py must not change this test's model
        "--n_layers=1", "--n_heads=1", "--d_mlp=None", "--normalization_type=None"]


def test_a_copied_folder_with_another_answer_is_a_new_task(tmp_path):
    ignore = shutil.ignore_patterns("checkpoints", "across_seeds", "*.ipynb", "__pycache__")
    for part in ("shared", "find_min"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=ignore)
    shutil.copytree(tmp_path / "find_min", tmp_path / "find_max")
    dataset = tmp_path / "find_max/dataset.py"
    dataset.write_text(dataset.read_text().replace("return values.min(dim=-1).values", "return values.max(dim=-1).values"))
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    swept = run("-m", "shared.tools.sweep", "find_max", "--seeds=0", *TINY, f"--folder={tmp_path / 'sweep'}")
    assert swept.returncode == 0 and "find_max" in swept.stderr, swept.stderr[-2000:]
    row = load_summary(tmp_path / "sweep/summary.csv")[0]
    assert row["uniform (100,000)"] >= 0.98 and row["mechanism"] == "one head selects in layer 0"  # it learned the max
    assert row["verified"] in ("proved", "refuted")  # the verifier's verdict, not "out of scope"
