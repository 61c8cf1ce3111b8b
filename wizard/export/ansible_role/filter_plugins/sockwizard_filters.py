"""Jinja2 filters the exported role needs to render exactly what ``sockwizard render`` does.

Shipped by ``sockwizard export ansible`` in the role's ``filter_plugins/`` (stdlib only; Ansible
loads it on the controller). The templates are sockwizard's own, copied verbatim; these filters
supply what sockwizard's Python adds around them:

- ``sockwizard_host_spec``: the exported spec with the host's overrides (host variables named
  like spec fields: ``server_name``, ``listen_port``, ``backends``, ...), type-checked, plus the
  derived values the templates read (``spec.sticky``, ``spec.tls``, ...) and their context
  (``upstream``, ``listen_host``, Apache's ``modules``). Mirrors ``wizard.model.DeploySpec``
  and ``wizard.render.engine``; a test renders through Ansible and compares byte for byte.
- ``sockwizard_finish``: ``wizard.render.engine._tidy`` then ``wizard.deploy.marker.stamp``.
- ``regex_escape``: sockwizard's (Apache RewriteRule), not Ansible's ``re.escape``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

# Host variables a host may set, with the check each value must pass (hostile input: every
# value ends up in a config file, so only plain tokens get through).
_NAME = re.compile(r"^[A-Za-z0-9*.-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$")
_PATHV = re.compile(r"^/[A-Za-z0-9._/-]{0,1023}$")
_BACKEND = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}$")


def _port(v: Any) -> int:
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
        raise ValueError("must be a port from 1 to 65535")
    return v


def _seconds(v: Any) -> int:
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 86400:
        raise ValueError("must be a whole number of seconds (1-86400)")
    return v


def _match(rx: re.Pattern[str], what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, str) or not rx.fullmatch(v):
            raise ValueError(f"must be {what}")
        return v
    return check


def _backends(v: Any) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or len(items) > 64:
        raise ValueError("must be a list of 1-64 HOST:PORT strings")
    for item in items:
        if not isinstance(item, str) or not _BACKEND.fullmatch(item):
            raise ValueError(f"{str(item)[:60]!r} is not HOST:PORT")
        _port(item.rpartition(":")[2])
    return list(items)


HOST_FIELDS: dict[str, Callable[[Any], Any]] = {
    "server_name": _match(_NAME, "a host name"),
    "listen_address": _match(_NAME, "an IP address"),
    "listen_port": _port,
    "tls_port": _port,
    "backends": _backends,
    "tls_cert": _match(_PATHV, "an absolute file path"),
    "tls_key": _match(_PATHV, "an absolute file path"),
    "static_root": _match(_PATHV, "an absolute directory path"),
    "read_timeout": _seconds,
    "send_timeout": _seconds,
}


def host_spec(exported: Mapping[str, Any], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """The spec for one host: exported values, the host's overrides, the derived values."""
    fields = dict(exported["fields"])
    for name, check in HOST_FIELDS.items():
        if name in hostvars and hostvars[name] is not None:
            try:
                fields[name] = check(hostvars[name])
            except ValueError as exc:
                raise ValueError(f"host variable {name}: {exc}") from None
    if (fields["tls_cert"] is None) != (fields["tls_key"] is None):
        raise ValueError("host variables tls_cert and tls_key go together")
    for name in ("read_timeout", "send_timeout"):
        if fields[name] * 1000 <= fields["ping_interval_ms"] + fields["ping_timeout_ms"]:
            raise ValueError(f"host variable {name} must exceed pingInterval + pingTimeout")
    spec = dict(fields)
    server_path = fields["server_path"] or fields["path"]
    name = fields["server_name"] or ""
    spec.update(
        scope={"value": fields["scope"]},
        effective_server_path=server_path,
        rewrites_path=server_path != fields["path"],
        sticky=len(fields["backends"]) > 1,
        tls=fields["tls_cert"] is not None,
        server_host=f"[{name}]" if ":" in name else name,
        ping_sum_s=(fields["ping_interval_ms"] + fields["ping_timeout_ms"]) / 1000,
        apache_has_upgrade_param=exported["apache_has_upgrade_param"],
    )
    addr = fields["listen_address"]
    listen_host = "*" if addr is None else (f"[{addr}]" if ":" in addr else addr)
    modules = exported["modules"][f"tls={spec['tls']} sticky={spec['sticky']}"]
    return {"spec": spec,
            "upstream": "socketio_nodes" if spec["sticky"] else fields["backends"][0],
            "listen_host": listen_host,
            "listen_prefix": "" if addr is None else listen_host + ":",
            "modules": modules, "all_modules": ["mpm_event", *modules]}


def finish(text: str, anchor: str, line: str, header: str) -> str:
    """Tidy the rendered text as sockwizard does, then add the config marker."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"([{>])\n\n", r"\1\n", text)
    text = re.sub(r"\n\n([ \t]*\}\n)", r"\n\1", text)
    text = text.strip("\n") + "\n"
    cid = hashlib.sha256(text.encode()).hexdigest()[:12]
    rx = re.compile(anchor)
    out = []
    for one in text.splitlines(keepends=True):
        out.append(one)
        m = rx.match(one)
        if m is not None:
            indent = m.groupdict().get("indent") or ""
            out.append(line.format(indent=indent, header=header, cid=cid))
    return "".join(out)


def regex_escape(path: str) -> str:
    return re.sub(r"([.+*?()\[\]^$|])", r"\\\1", path)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"sockwizard_host_spec": host_spec, "sockwizard_finish": finish,
                "regex_escape": regex_escape}
