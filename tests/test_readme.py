from pathlib import Path

import pytest
from readme_tables import ROOT, blocks, current_run_ids, pattern, run_ids


def test_readme_tables_are_computed_and_current():
    readme = (ROOT / "README.md").read_text()
    documented, current = run_ids(readme), current_run_ids()
    retrained = [name for name in current if documented.get(name) not in (None, current[name])]
    if retrained:
        pytest.skip(f"{', '.join(retrained)}: the checkpoint was retrained since README documented run "
                    f"{documented[retrained[0]]}; run python tests/readme_tables.py to document this run")
    computed = {name: body for name, body in blocks().items() if pattern(name).search(readme)}
    assert len(computed) >= 2, "README.md documents the committed checkpoints' tables"  # a new task may add its own
    for name, body in computed.items():
        match = pattern(name).search(readme)
        assert match.group(2).strip() == body.strip(), f"README.md's {name} table is stale: run python tests/readme_tables.py"


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt && python find_min/training.py" in readme
    assert "python -m pytest" in readme
    assert "python -m pytest" in Path(ROOT / ".ci/run").read_text()
