"""README is the front door: the two commands, a 'try it' block that runs as written, a layout table that names
every module and folder there is, and no figure a retrain would make stale."""
import re
import subprocess
import sys
from pathlib import Path

from conftest import try_it_answers, try_it_block

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_names_the_two_commands():
    assert "pip install -r requirements.txt && python find_min/training.py" in README
    assert "python -m pytest" in README
    assert "python -m pytest" in (ROOT / ".ci/run").read_text()


def test_the_try_it_block_runs_as_written():
    block = try_it_block()
    run = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert try_it_answers("find_min") in run.stdout and "L0H0: SEP's attention" in run.stdout


def test_the_layout_names_every_module_and_nothing_that_is_gone():
    for folder in ("shared", "shared/tools"):
        for module in sorted((ROOT / folder).glob("*.py")):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in README, f"README's layout does not name {folder}/{module.name}"
    for name in re.findall(r"`((?:shared|benchmarks|find_\w+)/[\w/.]*)`", README):
        assert (ROOT / name).exists(), f"README names {name}, which does not exist"


def test_no_figure_a_retrain_would_change():
    assert not re.search(r"20\d\d-\d\d-\d\d", README), "a dated figure: it belongs in a notebook"
    assert not re.search(r"\d+\.\d+%", README), "a measured percentage: it belongs in a notebook, which recomputes it"
