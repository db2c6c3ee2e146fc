"""Decide a checkpoint right on every input from its weights (shared.verify), from the command line.

    python -m shared.tools.verify <task>/checkpoints/model.pt   # prints the verdict; exit 0 proved, 1 refuted, 2 out of scope
"""
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint
from ..tasks import task_of
from ..verify import verify


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\n\nusage: python -m shared.tools.verify CHECKPOINT", file=sys.stderr)
        return 2
    try:
        model = load_checkpoint(argv[0])
        task = task_of(model)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verdict = verify(model, task)
    print("\n".join(verdict.lines()))
    return verdict.exit_code


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the task folders, from anywhere
    raise SystemExit(main())
