"""Node: JavaScript text helpers for the http-proxy reader (``wizard.diagnose.readers.node``):
comments blanked with offsets kept, a balanced ``{...}`` and a small arithmetic expression
(timeouts like ``60 * 1000``) evaluated without ``eval``. Pure.
"""

from __future__ import annotations

import ast
import operator
import re


def blank_comments(text: str) -> str:
    """Replace // and /* */ comments with spaces (offsets and line numbers are kept)."""
    out = list(text)
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "'\"`":
            quote = c
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            for j in range(i, end):
                out[j] = " "
            i = end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        i += 1
    return "".join(out)


def balanced(text: str, start: int) -> str:
    """The ``{...}`` starting at ``start`` (a best effort that respects string quotes)."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1
    return text[start:]


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def arith(expr: str) -> float | None:
    expr = expr.replace("_", "")
    # A timeout is a short expression: a long one (digits beyond int's limit, deep parens)
    # is refused before the parser sees it.
    if len(expr) > 100 or not re.fullmatch(r"[\d\s.+\-*/()]+", expr):
        return None
    try:
        tree = ast.parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](ev(node.left), ev(node.right)))
        raise ValueError("unsupported")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
