"""benchmarks/claims_across_seeds.py: the notebook's claims on every checkpoint of a folder."""
import re
import shutil
import sys
from pathlib import Path

import pytest

from shared.claims import Claim

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from claims_across_seeds import across, checkpoints, main, report  # noqa: E402


def test_the_committed_find_min_holds_every_claim_as_its_notebook_says(tmp_path):
    shutil.copy(ROOT / "find_min/checkpoints/model.pt", tmp_path / "seed0.pt")
    (tmp_path / "seed1.pt").write_bytes(b"not a checkpoint")
    found = across("find_min", checkpoints(tmp_path, [0]), progress=False)
    assert len(found[0]) >= 15 and all(c.holds for c in found[0])
    text = report(found)
    assert text.startswith("1 of 1 seeds hold every claim") and f"| 0 | {len(found[0])}/{len(found[0])} | - |" in text
    with pytest.raises(SystemExit, match="seed1.pt"):  # a malformed checkpoint: one line that names it
        across("find_min", checkpoints(tmp_path), progress=False)


def test_the_report_names_each_failing_claim_and_its_range():
    claim = lambda value: Claim("edge", "a share", value, ">=", 0.5, "%")
    found = {0: [claim(0.9), Claim("other", "x", 1.0, "<", 2.0)], 4: [claim(0.2), Claim("other", "x", None, "<", 2.0)]}
    text = report(found)
    assert text.startswith("1 of 2 seeds hold every claim")
    assert "| 4 | 0/2 | edge, other |" in text and "| 0 | 2/2 | - |" in text
    assert "| edge | >= 50.00% | 20.00% | 90.00% | 1/2 |" in text and "| other | < 2.000 | 1.000 | 1.000 | 1/2 |" in text


def test_bad_folders_and_seeds_are_named(tmp_path):
    for args, message in [([str(tmp_path), "--seeds=0-2"], "for seed(s) 0, 1, 2"), ([str(tmp_path)], "no seed<k>.pt"),
                          ([str(tmp_path / "absent")], "is not a folder"), ([str(tmp_path), "--seeds=3-1"], "empty")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            main(["find_min", *args])
