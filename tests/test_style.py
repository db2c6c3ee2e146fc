"""The code stays readable: no function runs past 50 lines, and shared/ names no task (each idea once, task-agnostic)."""
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 50


def python_files():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return [ROOT / f for f in tracked if (ROOT / f).is_file()] or sorted(ROOT.glob("**/*.py"))


def test_no_function_runs_past_fifty_lines():
    long = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 50 lines: " + "; ".join(long)


def test_shared_names_no_task():
    for path in (ROOT / "shared").rglob("*.py"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        tree = ast.parse(code)
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        docs = {ast.get_docstring(n, clean=False) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                                                ast.Module))}
        named = [s for s in strings - docs if "find_min" in s or "find_median" in s]
        assert not named, f"{path.relative_to(ROOT)} names a task outside its docstrings: {named}"
