"""The one markdown table writer, and the number formats every table and sentence uses."""


def markdown_table(header, rows, align=None) -> str:
    """A markdown table: header [str], rows [[cell, ...]] (each cell str()'d, a '|' escaped so it cannot end the
    cell), align: one of 'l' / 'r' per column (default: the first column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row needs {len(header)} cells, as the header has")
    cell = lambda x: str(x).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, header)) + " |",
             "|" + "".join("---|" if a == "l" else "---:|" for a in align)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def pct(x, digits: int = 2) -> str:
    """0.9987 -> '99.87%'; None or NaN -> '-'."""
    return "-" if x is None or x != x else f"{x:.{digits}%}"


def num(x, digits: int = 3) -> str:
    """1.23456 -> '1.235'; None or NaN -> '-'."""
    return "-" if x is None or x != x else f"{x:.{digits}f}"
