"""The plain values a proxy's fix snippets are written from, and the bundle of fix writers.

``wizard.diagnose`` turns a live config's facts into a :class:`FixSite` (places already worded,
e.g. "`upstream app` (/etc/nginx/conf.d/a.conf:3)"; the config lines to paste already rendered
from the proxy's template macros, ``templates/<kind>/_macros.j2``, by ``wizard.diagnose.fixtext``)
and asks the proxy's :class:`Fixes` for the finished fix; each ``wizard.proxies.<kind>`` module
words where the lines go. Pure: no facts, no templates, no I/O, so this layer imports neither
the diagnosis nor the renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wizard.findings import Edit

__all__ = ["Edit", "Fix", "FixSite", "Fixes", "Spot", "TimeoutFix", "edits_of", "insert_after",
           "listed", "replace_at", "worded"]


@dataclass(frozen=True)
class Spot:
    """One existing line in the live config: its file, line and text."""

    file: str
    line: int | None
    text: str

    @property
    def at(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True)
class FixSite:
    """Where a fix goes and what it names, as plain words and values."""

    path: str  # the Socket.IO path clients use
    backends: tuple[str, ...] = ()
    server: str = ""  # the answering server block / vhost / site, worded
    route: str = ""  # the route that handles the path, worded
    upstream: str = ""  # the proxy_pass / ProxyPass / reverse_proxy line, worded
    upstream_text: str | None = None  # that line's raw text
    upstream_path: str = "/"  # the path the backend sees
    backends_where: str = ""  # the upstream / balancer / BACKENDS block, worded
    affinity: str | None = None  # the balancing policy there now, if any
    scope: str = "the virtual host"  # Apache: the <VirtualHost> or main server, worded
    script: str = "the proxy script"  # node: the proxy script's file
    # The config text to paste, indented, rendered from the template macros (fixtext):
    route_lines: str = ""  # the Socket.IO route to the first backend
    sticky_lines: str = ""  # what keeps a client on one backend
    # The same places as lines of the live config (None: not known), for the fixes' edits:
    server_at: Spot | None = None
    route_at: Spot | None = None
    upstream_at: Spot | None = None
    backends_at: Spot | None = None

    @property
    def backend(self) -> str:
        """The backend a new route points at: the first one the config names."""
        return self.backends[0] if self.backends else "127.0.0.1:3000"


@dataclass(frozen=True)
class TimeoutFix:
    """A too-short idle timeout: the suggested seconds and what the config has now."""

    seconds: int  # the suggestion (wizard.heartbeat)
    directive: str  # the setting that decides it, e.g. "proxy_read_timeout", "timeout="
    site: FixSite
    existing: tuple[Spot, ...] = ()  # its lines (empty: the proxy's default applies)
    lines: str = ""  # the directive(s) at ``seconds``, indented, rendered (fixtext)

    def replace_or_add(self, add: str, opener: Spot | None) -> Fix:
        """For a timeout one directive decides (nginx, Caddy): replace the line that sets it
        now, one for one (a second one could be a duplicate the checker refuses, as ``nginx
        -t`` does), or else add it inside ``opener``; ``add`` words where ("In … add")."""
        if self.existing:
            e = self.existing[0]
            return Fix(f"Replace `{e.text}` ({e.file}:{e.line}) with:\n{self.lines}",
                       [replace_at(e, self.lines)])
        return Fix(f"{add}:\n{self.lines}", [insert_after(opener, self.lines)])


class Fix(str):
    """A fix's printed words that also carry the same change as config edits
    (``wizard.findings.Edit``), built by the writer from the same values as the words. A
    writer that returns a plain ``str`` (or a Fix without edits) gives a printed-only fix:
    client- and server-side fixes, and config changes sockwizard cannot place exactly."""

    edits: tuple[Edit, ...]

    def __new__(cls, text: str, edits: Sequence[Edit | None] = ()) -> Fix:
        fix = super().__new__(cls, text)
        # All or nothing: a fix with one edit it cannot place is printed only.
        fix.edits = () if any(e is None for e in edits) else tuple(e for e in edits if e)
        return fix


def edits_of(fix: str) -> tuple[Edit, ...]:
    """The edits a writer's fix carries (none for a plain string)."""
    return fix.edits if isinstance(fix, Fix) else ()


def replace_at(spot: Spot | None, new: str) -> Edit | None:
    """Replace ``spot``'s text on its line with ``new`` (None: the place is not known)."""
    if spot is None or spot.line is None or not spot.text:
        return None
    return Edit(spot.file, spot.line, spot.text, new)


def insert_after(opener: Spot | None, new: str) -> Edit | None:
    """Add ``new`` inside the block ``opener`` opens (the line ends with ``{``, or is an
    Apache ``<Section ...>``), right after that line (None: the place is not known)."""
    if opener is None or opener.line is None or not opener.text:
        return None
    text = opener.text.rstrip()
    if not (text.endswith("{") or (text.startswith("<") and not text.startswith("</"))):
        return None
    return Edit(opener.file, opener.line, opener.text, new, insert=True)


@dataclass(frozen=True)
class Fixes:
    """One proxy's fix writers: each returns the exact lines to change, with where."""

    route: Callable[[FixSite], str]  # no route forwards the path
    rewrite: Callable[[FixSite], str]  # the route rewrites the path away
    sticky: Callable[[FixSite], str]  # several backends, nothing keeps a client on one
    timeout: Callable[[TimeoutFix], str]  # the idle timeout is not above the ping sum


def worded(spot: Spot | None, missing: str = "the proxy's upstream setting") -> str:
    """"`text` (file:line)" for a place in the config, the way every fix names it."""
    if spot is None:
        return missing
    return f"`{spot.text}` ({spot.at})" if spot.text else spot.at


def listed(spots: tuple[Spot, ...], missing: str) -> str:
    """"file:line, file:line" for the lines a setting is on now."""
    return ", ".join(f"{s.file}:{s.line}" for s in spots) or missing
