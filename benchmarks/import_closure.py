"""What a notebook loads of this repository: every module of the repository its kernel imports, with its lines.

    python benchmarks/import_closure.py find_median    # executes find_median/analyze.ipynb, then lists the modules

A reader who follows a notebook meets these files; the tools that run jobs (shared/tools/) should not be among them.
"""
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

LISTING = f"""
import json, sys
from pathlib import Path
root = Path({str(ROOT)!r})
found = {{}}
for name, module in sorted(sys.modules.items()):
    path = Path(getattr(module, "__file__", None) or "/").resolve()
    if root in path.parents and path.suffix == ".py" and path.is_file():
        found[str(path.relative_to(root))] = len(path.read_text().splitlines())
print(json.dumps(found))
"""


def closure(task: str) -> dict:
    """{file: lines} of every module of the repository the task's notebook has imported once executed."""
    path = ROOT / task / "analyze.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(LISTING))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return json.loads(nb.cells[-1].outputs[0]["text"])


def main(argv=None):
    tasks = (sys.argv[1:] if argv is None else argv) or ["find_min", "find_median"]
    for task in tasks:
        found = closure(task)
        print(f"{task}/analyze.ipynb loads {len(found)} modules of this repository, {sum(found.values()):,} lines:")
        for name, lines in sorted(found.items()):
            print(f"  {name}: {lines}")
        tools = [name for name in found if name.startswith("shared/tools/")]
        print(f"  tools among them: {', '.join(tools) or 'none'}")


if __name__ == "__main__":
    main()
