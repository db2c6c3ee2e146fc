"""`--name=value` overrides of the hyperparameters a script keeps as plain values at its top, as nanoGPT's, each checked
against the type of the value it replaces and a range (a bad one: one line, before anything runs); a recipe is a file
of plain assignments (`n_heads = 2`) named before them, as nanoGPT's config files, read and never run."""
import ast
import math
import sys
from pathlib import Path

from ..published import KINDS, hyperparameters

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse(name, raw, current, zero_ok=(), at_most=None, choices=None, types=None):
    """raw as hyperparameter `name`'s value (now `current`); a ValueError says what is expected instead."""
    if name in (choices or {}):
        options = {str(c): c for c in choices[name]}
        if raw not in options:
            raise ValueError("one of " + ", ".join(options))
        return options[raw]
    kind = (types or {}).get(name, type(current))
    if raw == "None" and (current is None or name in (types or {})):
        return None
    if kind is bool and raw.lower() not in BOOLEANS:
        raise ValueError("true or false")
    if kind not in (int, float):
        return BOOLEANS[raw.lower()] if kind is bool else raw  # a bool, or a free string
    low, high = 0 if name in zero_ok or kind is float else 1, (at_most or {}).get(name, math.inf)
    strict = kind is float and name not in zero_ok  # a float must be > 0, an int >= 1, unless 0 is allowed
    expected = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {low}" + (
        f" and <= {high}" if high < math.inf else "")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not (math.isfinite(value) and (value > low if strict else value >= low) and value <= high):
        raise ValueError(expected)
    return value


def recipe_overrides(path) -> list:
    """A recipe file's assignments as ['--name=value', ...], in order; one line (SystemExit) for anything else."""
    try:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as e:
        raise SystemExit(f"error: recipe {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    overrides = []
    for node in tree.body:
        try:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                raise ValueError
            value = ast.literal_eval(node.value)
            if type(value) not in KINDS:
                raise ValueError
        except ValueError:
            raise SystemExit(f"error: recipe {path}, line {node.lineno}: expected name = a number, string, True, "
                             "False or None") from None
        overrides.append(f"--{node.targets[0].id}={str(value).lower() if type(value) is bool else value}")
    return overrides


def apply_overrides(g: dict, argv=None, **limits) -> dict:
    """Override g's hyperparameters from argv (default sys.argv[1:]; a recipe file stands for its assignments, later
    arguments win) and return them all. limits (parse's): zero_ok, the numbers that may be 0 (others must be > 0);
    at_most, upper bounds; choices, the values a name allows; types, the type of a name whose default is None."""
    params, updates = hyperparameters(g), {}
    argv = [a for arg in (sys.argv[1:] if argv is None else argv)
            for a in (recipe_overrides(arg) if arg.endswith(".py") and not arg.startswith("--") else [arg])]
    if {"-h", "--help"} & set(argv):
        print("hyperparameters (override with --name=value):\n" + "\n".join(f"  --{k}={v}" for k, v in params.items()))
        raise SystemExit(0)
    for arg in argv:
        name, raw = arg[2:].split("=", 1) if arg.startswith("--") and "=" in arg else (None, arg)
        if name not in params:
            raise SystemExit(f"error: {arg!r}: expected --name=value" if name is None else
                             f"error: --{name}: unknown option; known: {', '.join(params)}")
        try:
            updates[name] = parse(name, raw, params[name], **limits)
        except ValueError as e:
            raise SystemExit(f"error: --{name}={raw}: expected {e}") from None
    g.update(updates)  # only once every value is checked
    return {**params, **updates}
