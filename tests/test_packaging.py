"""The repository installs as a package (`pip install -e .`): pyproject.toml lists `shared`, its tools and every task
folder, takes its dependencies from requirements.txt, and keeps pytest's path; README's Python snippet names no path
relative to the directory it runs in."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from shared.published import task_names

from conftest import try_it_answers, try_it_block

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_task_folder_is_a_package():
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    assert task_names() and set(task_names()) <= set(packages), f"pyproject.toml's packages lack a task: {packages}"
    assert {"shared", "shared.tools"} <= set(packages)
    for name in packages:
        assert (ROOT / name.replace(".", "/") / "__init__.py").is_file(), f"{name} is listed but is no package"


def test_the_install_reads_requirements_and_keeps_the_test_path():
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert "dependencies" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["pythonpath"] == ["."]


def test_the_readme_snippet_runs_from_another_directory(tmp_path):
    """What `pip install -e .` gives (the repository on the path), from a directory that is not the repository."""
    block = try_it_block()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert try_it_answers("find_min") in run.stdout
