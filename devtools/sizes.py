"""`make lint`'s size check: no function over 60 lines and no module over 400 in the given
trees, unless the module's docstring gives the reason in a line starting "Over 400 lines:"
(for a module) or the function's docstring one starting "Over 60 lines:".

A module that outgrows a screenful hides its structure; the limit makes splitting the default
and an exception a written decision. ruff and mypy have no line-count rule, hence this script.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULE_LINES = 400
FUNCTION_LINES = 60


def _explained(node: ast.AST, marker: str) -> bool:
    docstring = ast.get_docstring(node) if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)) else None
    return any(line.strip().startswith(marker) for line in (docstring or "").splitlines())


def oversized(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    found = []
    lines = len(text.splitlines())
    if lines > MODULE_LINES and not _explained(tree, "Over 400 lines:"):
        found.append(f"{path}: {lines} lines (limit {MODULE_LINES}; split it or say why in its docstring)")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES and not _explained(node, "Over 60 lines:"):
                found.append(f"{path}:{node.lineno}: {node.name} is {length} lines (limit {FUNCTION_LINES})")
    return found


def largest(roots: list[str]) -> tuple[tuple[int, str], tuple[int, str]]:
    """The largest module and the largest function, with their sizes in lines."""
    modules, functions = [(0, "")], [(0, "")]
    for root in roots:
        for path in Path(root).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            modules.append((len(text.splitlines()), str(path)))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                    functions.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return max(modules), max(functions)


def main(arguments: list[str]) -> int:
    """`python -m devtools.sizes [--largest] [ROOT…]` (services/ by default)."""
    report = "--largest" in arguments
    roots = [a for a in arguments if a != "--largest"] or ["services"]
    if report:
        (module_lines, module), (function_lines, function) = largest(roots)
        print(f"largest module: {module} ({module_lines} lines); largest function: {function} ({function_lines} lines)")
    problems = [problem for root in roots for path in sorted(Path(root).rglob("*.py")) for problem in oversized(path)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
