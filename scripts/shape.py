"""The code's shape in figures: the longest shipped functions and the largest shipped modules.

`python -m scripts.shape` prints them; `--check` exits 1 when a function is
longer than MAX_FUNCTION_LINES or a module larger than MAX_MODULE_LINES
(issue 13: a maintainer reads any function on one screen and any module in one sitting).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("function", "shim")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


@dataclass(frozen=True, slots=True)
class Span:
    where: str
    lines: int


def modules(root: Path = ROOT) -> list[Path]:
    return sorted(p for top in SHIPPED for p in (root / top).rglob("*.py"))


def module_sizes(paths: list[Path], root: Path = ROOT) -> list[Span]:
    return sorted(
        (Span(str(p.relative_to(root)), len(p.read_text().splitlines())) for p in paths),
        key=lambda s: -s.lines,
    )


def function_lengths(paths: list[Path], root: Path = ROOT) -> list[Span]:
    spans = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # From the first decorator to the last line: what a reader has to hold.
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                last = node.end_lineno or node.lineno
                spans.append(Span(f"{path.relative_to(root)}:{node.lineno} {node.name}", last - first + 1))
    return sorted(spans, key=lambda s: -s.lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when a limit is exceeded")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    paths = modules()
    funcs, mods = function_lengths(paths), module_sizes(paths)
    print(f"longest functions (limit {MAX_FUNCTION_LINES} lines):")
    for span in funcs[: args.top]:
        print(f"  {span.lines:4d}  {span.where}")
    print(f"largest modules (limit {MAX_MODULE_LINES} lines):")
    for span in mods[: args.top]:
        print(f"  {span.lines:4d}  {span.where}")
    over = [s for s in funcs if s.lines > MAX_FUNCTION_LINES] + [s for s in mods if s.lines > MAX_MODULE_LINES]
    if args.check and over:
        print(f"{len(over)} over the limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
