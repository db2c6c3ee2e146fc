"""benchmarks/hypotheses_across_seeds.py: a notebook executed by papermill on every checkpoint of a folder, as the
sweep's jobs (submitit, two at a time), and the table of every hypothesis on every seed built from their records. The
notebook here is a small one with a `checkpoint` parameter whose record depends on the checkpoint it is given."""
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import hypotheses_across_seeds  # noqa: E402
from hypotheses_across_seeds import main  # noqa: E402

RECORD = '''
from pathlib import Path
from IPython.display import display
seed, size = int(Path(checkpoint).stem[4:]), Path(checkpoint).stat().st_size
display({"application/json": {"run_id": f"run{seed}", "measurements": [{"key": "bytes", "value": size, "unit": ""}],
         "hypotheses": [{"key": "even", "value": seed % 2, "op": "<", "threshold": 1, "why": "even seeds", "unit": "",
                         "note": "", "verdict": "holds" if seed % 2 < 1 else "FAILS"}]},
         "text/plain": "the record"}, raw=True)
'''


@pytest.fixture
def notebook(tmp_path):
    """A notebook that displays a hypotheses record (shared.hypotheses's shape) read off its checkpoint's name."""
    parameters = nbformat.v4.new_code_cell("checkpoint = None", metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(RECORD)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "fixture.ipynb")
    return tmp_path / "fixture.ipynb"


def test_every_seed_executed_as_a_job_and_tabled(tmp_path, notebook, capsys, monkeypatch):
    monkeypatch.setattr(hypotheses_across_seeds, "reference_seconds", lambda: 1.0)  # the unit; not what is tested
    folder = tmp_path / "seeds"
    folder.mkdir()
    for seed in (0, 1, 2):
        (folder / f"seed{seed}.pt").write_bytes(b"x" * (seed + 1))
    main(["find_min", str(folder), "--seeds=0-1", f"--notebook={notebook}"])
    out = capsys.readouterr().out
    assert out.startswith("1 of 2 seeds hold every hypothesis measured on them")
    assert "| even | < 1 | 1/2 | seed 1 (1) |" in out and "| bytes | 2 | 1 | 2 | 2 |" in out
    assert "2 of 2 notebooks executed" in out
    assert sorted(p.name for p in folder.glob("*.ipynb")) == ["seed0.ipynb", "seed1.ipynb"]  # each executed copy kept
    assert len(list((folder / "logs").glob("*_log.out"))) == 2  # one submitit job per seed


def test_bad_folders_and_seeds_are_named(tmp_path):
    for args, message in [([str(tmp_path), "--seeds=0-2"], "for seed(s) 0, 1, 2"), ([str(tmp_path)], "no seed<k>.pt"),
                          ([str(tmp_path / "absent")], "is not a folder"), ([str(tmp_path), "--seeds=3-1"], "empty")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            main(["find_min", *args])
