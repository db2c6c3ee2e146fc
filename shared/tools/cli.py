"""`--name=value` overrides for hyperparameters kept as plain values at the top of a script (as nanoGPT).

A script defines its hyperparameters as module-level numbers, strings, booleans or None, then calls
apply_overrides(globals()). Each override is checked against the type of the value it replaces and a
range, and a bad one exits with a one-line message before anything has run or been written. A recipe is a
file of plain assignments (`n_heads = 2`) named before the overrides, as nanoGPT's config files are:
`python <task>/training.py <task>/recipes/<name>.py --seed=1`. It is read, never run: each line
must assign a literal to a known hyperparameter, checked like an override.
"""
import ast
import math
import sys
from pathlib import Path

from ..published import KINDS, hyperparameters

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _parse(name, raw, current, *, zero_ok, at_most, choices, types):
    def fail(allowed):
        raise SystemExit(f"error: --{name}={raw}: expected {allowed}")

    if name in choices:
        options = {("None" if c is None else str(c)): c for c in choices[name]}
        if raw not in options:
            fail("one of " + ", ".join(options))
        return options[raw]
    kind = types.get(name, type(current))
    if current is None or name in types:
        if raw == "None":
            return None
    low = ">= 0" if name in zero_ok else ">= 1" if kind is int else "> 0"
    high = f" and <= {at_most[name]}" if name in at_most else ""
    if kind is bool:
        if raw.lower() not in _TRUE + _FALSE:
            fail("true or false")
        return raw.lower() in _TRUE
    if kind is int:
        try:
            value = int(raw)
        except ValueError:
            fail(f"an integer {low}{high}")
        if value < (0 if name in zero_ok else 1) or (name in at_most and value > at_most[name]):
            fail(f"an integer {low}{high}")
        return value
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            fail(f"a number {low}{high}")
        ok_low = value >= 0 if name in zero_ok else value > 0
        if not math.isfinite(value) or not ok_low or (name in at_most and value > at_most[name]):
            fail(f"a number {low}{high}")
        return value
    return raw  # a free string


def recipe_overrides(path) -> list:
    """A recipe file's assignments as ['--name=value', ...], in order; one-line SystemExit when it is anything
    else than assignments of literals (numbers, strings, True/False, None)."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
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
        text = {True: "true", False: "false", None: "None"}.get(value, value) if type(value) in (bool, type(None)) \
            else value
        overrides.append(f"--{node.targets[0].id}={text}")
    return overrides


def expand_recipes(argv) -> list:
    """argv with every recipe file (an argument ending in .py) replaced by its assignments, in place: later
    arguments override earlier ones."""
    expanded = []
    for arg in argv:
        expanded += recipe_overrides(arg) if arg.endswith(".py") and not arg.startswith("--") else [arg]
    return expanded


def apply_overrides(g: dict, argv=None, *, zero_ok=(), at_most=None, choices=None, types=None) -> dict:
    """Override g's hyperparameters from argv (default sys.argv[1:]) and return them all.

    Numbers must be positive unless named in zero_ok; at_most gives upper bounds; choices lists the
    allowed values of a name; types gives the type of a name whose default is None (which "None" keeps).
    A recipe file in argv stands for its assignments (expand_recipes).
    """
    at_most, choices, types = at_most or {}, choices or {}, types or {}
    params = hyperparameters(g)
    argv = expand_recipes(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print("hyperparameters (override with --name=value):")
        for k, v in params.items():
            print(f"  --{k}={v}")
        raise SystemExit(0)
    updates = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"error: {arg!r}: expected --name=value")
        name, raw = arg[2:].split("=", 1)
        if name not in params:
            raise SystemExit(f"error: --{name}: unknown option; known: {', '.join(params)}")
        updates[name] = _parse(name, raw, params[name], zero_ok=zero_ok, at_most=at_most,
                               choices=choices, types=types)
    g.update(updates)
    params.update(updates)
    return params
