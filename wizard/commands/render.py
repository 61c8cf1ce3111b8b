"""``sockwizard render``: print (or write) the config for a spec. stdout carries only data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wizard.commands._flags import add_command, add_spec_options, spec_from_args
from wizard.errors import ExitCode


def register(sub: Any) -> None:
    p = add_command(
        sub, "render", help="print the proxy config for a spec",
        description="Render the reverse-proxy config for a Socket.IO server.")
    add_spec_options(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write the config here instead of stdout")
    p.add_argument("--snippets", action="store_true",
                   help="also print the matching server/client path settings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wizard.render import render

    spec = spec_from_args(args)
    rendered = render(spec)
    extra = ""
    if args.snippets:
        extra = _snippet_comment(spec, "//" if rendered.syntax == "javascript" else "#")
    if args.output:
        _write(args.output, rendered.text)
        if extra:
            sys.stdout.write(extra.lstrip("\n"))
        print(f"wrote {args.output} ({len(rendered.text)} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(rendered.text + extra)
    return ExitCode.OK


def _snippet_comment(spec: Any, mark: str) -> str:
    """The snippets as comments in the config's own syntax, so stdout stays a valid config."""
    from wizard.render import format_snippets

    if not spec.path_is_custom:
        lines = ["Default path /socket.io/: the server and clients need no path setting."]
    else:
        lines = ["---- matching Socket.IO settings: server and clients must use these paths ----",
                 *format_snippets(spec).rstrip("\n").splitlines()]
    return "\n" + "\n".join(f"{mark} {line}".rstrip() for line in lines) + "\n"


def _write(path: Path, text: str) -> None:
    from wizard.errors import BadInput

    tmp = path.with_name(f".{path.name}.sockwizard-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # never leave a half-written file behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"Cannot write {path}: {exc.strerror}.",
                       "Check that the directory exists and is writable.") from None
