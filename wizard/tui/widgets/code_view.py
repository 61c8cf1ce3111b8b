"""A read-only, highlighted view of a config, a snippet or a diff (preview, deploy, findings).

Why Pygments (through Textual's ``Content`` spans) and not ``TextArea``: TextArea highlights
with tree-sitter, which has no grammar for nginx or Apache configs (and none is installed
here), so those would show as plain text. Pygments has real lexers for nginx
(``NginxConfLexer``), Apache (``ApacheConfLexer``), JavaScript, Python, TOML and diffs; Caddy
has none, so a small Caddyfile lexer lives below. The token styles are Textual's own
``HighlightTheme`` (``$text-accent``, ``$text-success``...), so the colours follow the light
and dark themes instead of a fixed Pygments palette.
"""

from __future__ import annotations

from typing import Any

# Pygments ships no type information (no types-Pygments in the project's deps).
from pygments.lexer import RegexLexer, bygroups  # type: ignore[import-untyped]
from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]
from pygments.token import (  # type: ignore[import-untyped]
    Comment,
    Keyword,
    Name,
    Number,
    Punctuation,
    String,
    Text,
    Whitespace,
)
from pygments.util import ClassNotFound  # type: ignore[import-untyped]
from textual.app import ComposeResult
from textual.containers import ScrollableContainer
from textual.content import Content, Span
from textual.highlight import HighlightTheme
from textual.widgets import Static

# Rendered.syntax / Snippet.language -> Pygments lexer alias.
_ALIASES = {"nginx": "nginx", "apache": "apacheconf", "javascript": "javascript",
            "python": "python", "toml": "toml", "diff": "diff", "text": "text", "yaml": "yaml"}


class CaddyfileLexer(RegexLexer):  # type: ignore[misc]
    """Enough of the Caddyfile grammar to read a generated file at a glance."""

    # Pygments reads these class attributes as they are.
    name = "Caddyfile"
    aliases = ["caddyfile"]  # noqa: RUF012
    tokens = {  # noqa: RUF012
        "root": [
            (r"[ \t]*#.*\n", Comment.Single),
            # A site address (or the global options block) at the start of a line.
            (r"^(\S+)([ \t]*)(\{)", bygroups(Name.Tag, Whitespace, Punctuation)),
            (r"^[ \t]*\{", Punctuation),
            # A directive: the first word of an indented line.
            (r"^([ \t]+)([a-z_][a-z0-9_]*)", bygroups(Whitespace, Keyword)),
            (r"\{[A-Za-z_][A-Za-z0-9_.\-]*\}", Name.Variable),  # {path}, {http.request.uri}
            (r"@[A-Za-z0-9_]+", Name.Decorator),  # named matchers
            (r'"[^"\n]*"', String.Double),
            (r"(?<![\w.:/])\d+(ms|s|m|h)?(?![\w.:/])", Number),
            (r"[{}]", Punctuation),
            (r"\n", Whitespace),
            (r"[ \t]+", Whitespace),
            (r"[^\s{}\"#]+", Text),
            (r"#.*\n", Comment.Single),
        ],
    }


def lexer_for(language: str) -> Any:
    """The Pygments lexer for a Rendered.syntax / Snippet.language name (plain text if unknown)."""
    options = {"stripnl": False, "ensurenl": True}
    if language == "caddyfile":
        return CaddyfileLexer(**options)
    try:
        return get_lexer_by_name(_ALIASES.get(language, language), **options)
    except ClassNotFound:
        return get_lexer_by_name("text", **options)


def warm_lexers() -> None:
    """Load every lexer the wizard uses and compile its patterns (Pygments does both on first
    use, ~10-40 ms a lexer); the app calls this in a thread while the first step is read."""
    for language in (*_ALIASES, "caddyfile"):
        highlight("x\n", language)


def highlight(code: str, language: str) -> Content:
    """``code`` as Textual Content styled with the theme's highlight styles."""
    code = "\n".join(line.expandtabs(4) for line in code.splitlines())
    styles = HighlightTheme.STYLES
    spans: list[Span] = []
    start = 0
    for token_type, token in lexer_for(language).get_tokens(code):
        end = start + len(token)
        kind = token_type
        while kind is not None:
            style = styles.get(kind)
            if style:
                spans.append(Span(start, end, style))
                break
            kind = kind.parent
        start = end
    content = Content(code, spans=spans).stylize_before("$text")
    if language == "diff":  # Pygments' diff tokens map to headings; colour +/- lines plainly
        content = _colour_diff(code, content)
    return content


def _colour_diff(code: str, content: Content) -> Content:
    offset = 0
    for line in code.split("\n"):
        end = offset + len(line)
        if line.startswith("+") and not line.startswith("+++"):
            content = content.stylize("$text-success on $success-muted", offset, end)
        elif line.startswith("-") and not line.startswith("---"):
            content = content.stylize("$text-error on $error-muted", offset, end)
        elif line.startswith("@@"):
            content = content.stylize("$text-accent", offset, end)
        offset = end + 1
    return content


def numbered(content: Content) -> Content:
    """Prefix each line with a dim line number, like an editor's gutter."""
    lines = content.split("\n", allow_blank=True)
    width = len(str(len(lines)))
    gutter = [Content.styled(f"{n:>{width}} ", "$text-muted") for n in range(1, len(lines) + 1)]
    return Content("\n").join(Content.assemble(g, line) for g, line in zip(gutter, lines,
                                                                            strict=True))


class CodeView(ScrollableContainer, can_focus=True):
    """A scrollable, focusable, highlighted block of code (keyboard: arrows, page up/down)."""

    DEFAULT_CLASSES = "code-view"

    def __init__(self, code: str = "", language: str = "text", *, line_numbers: bool = True,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._code = code
        self._language = language
        self._line_numbers = line_numbers

    def compose(self) -> ComposeResult:
        yield Static(self._render_code(), classes="code")

    @property
    def code(self) -> str:
        return self._code

    def show(self, code: str, language: str | None = None) -> None:
        """Replace the code (and optionally the language) shown."""
        self._code = code
        if language is not None:
            self._language = language
        if self.is_mounted:
            self.query_one(".code", Static).update(self._render_code())

    def _render_code(self) -> Content:
        content = highlight(self._code, self._language)
        return numbered(content) if self._line_numbers else content
