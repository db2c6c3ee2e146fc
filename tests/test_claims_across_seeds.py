"""benchmarks/claims_across_seeds.py: the notebook's hypotheses on every checkpoint of a folder."""
import re
import shutil
import sys
from pathlib import Path

import pytest

from shared.claims import Claim

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from claims_across_seeds import across, checkpoints, main, rows  # noqa: E402

from shared.published import hypotheses_table


def test_the_committed_find_min_measured_as_its_notebook_measures_it(tmp_path):
    shutil.copy(ROOT / "find_min/checkpoints/model.pt", tmp_path / "seed0.pt")
    (tmp_path / "seed1.pt").write_bytes(b"not a checkpoint")
    found = across("find_min", checkpoints(tmp_path, [0]), progress=False, size=200, uniform_size=2000)
    claims, measured = found[0]
    assert len(claims) >= 12 and all(c.verdict in ("holds", "FAILS", "not measured here") for c in claims)
    text = hypotheses_table(rows(found))
    for c in claims:  # each hypothesis's row counts its own verdict on the one seed
        count = {"holds": "1/1", "FAILS": "0/1"}.get(c.verdict, "0/0 (1 not measured)")
        row = next(line for line in text.splitlines() if line.startswith(f"| {c.key} | {c.op} "))
        assert f"| {count} |" in row, (c.key, row)
    assert claims[-1].key == "formation" and claims[-1].verdict == "not measured here"
    published = {r["key"] for r in rows(found) if r["verdict"] == "measured"}  # a measurement with no value: left out
    assert published == {m.key for m in measured if m.value is not None} and "formation_at_accuracy" not in published
    with pytest.raises(SystemExit, match="seed1.pt"):  # a malformed checkpoint: one line that names it
        across("find_min", checkpoints(tmp_path, [1]), progress=False)


def test_the_report_names_each_breaking_seed_and_its_value():
    claim = lambda value: Claim("edge", "a share", value, ">=", 0.5, "most", "%")
    found = {0: ([claim(0.9), Claim("other", "x", 1.0, "<", 2.0)], []),
             4: ([claim(0.2), Claim("other", "x", None, "<", 2.0)], [])}
    text = hypotheses_table(rows(found))
    assert text.startswith("1 of 2 seeds hold every hypothesis measured on them")
    assert "| edge | >= 50.00% | 1/2 | seed 4 (20.00%) |" in text
    assert "| other | < 2.000 | 1/1 (1 not measured) | - |" in text


def test_bad_folders_and_seeds_are_named(tmp_path):
    for args, message in [([str(tmp_path), "--seeds=0-2"], "for seed(s) 0, 1, 2"), ([str(tmp_path)], "no seed<k>.pt"),
                          ([str(tmp_path / "absent")], "is not a folder"), ([str(tmp_path), "--seeds=3-1"], "empty")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            main(["find_min", *args])
