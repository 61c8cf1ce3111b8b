"""``sockwizard export ansible``: a self-contained role + playbook doing sockwizard's deploy.

Called by ``wizard.commands.export``. Writes into ``DIR``::

    site.yml                         the playbook (hosts: all, become)
    roles/sockwizard/defaults/main.yml   the spec, the destination, the checker and the reload
    roles/sockwizard/templates/<kind>/   sockwizard's own templates, copied byte for byte
    roles/sockwizard/templates/sockwizard.conf.j2   the entry: sets the templates' context
    roles/sockwizard/{tasks,handlers,vars,meta}/    the guarded transaction (ansible_role/)
    roles/sockwizard/library/sockwizard_probe.py    the Socket.IO probe (stdlib only)
    roles/sockwizard/filter_plugins/    host spec, tidy + marker, regex_escape

Host variables named like spec fields (``server_name``, ``listen_port``, ``backends``, ...)
override the exported spec per host, and ``sockwizard_dest`` / ``sockwizard_validate_cmd`` /
``sockwizard_reload_cmd`` / ``sockwizard_probe_url`` the commands: the same names
``sockwizard deploy --inventory`` reads. Needs nothing from ansible-core to run.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from wizard import __version__
from wizard.errors import BadInput
from wizard.model import DeploySpec, ProxyKind
from wizard.proxies import profile
from wizard.render import templates_dir

ROLE_FILES = Path(__file__).resolve().parent / "ansible_role"
HEADER = "X-Sockwizard-Config"  # wizard.deploy.marker.HEADER (export sits beside deploy)

PLAYBOOK = """---
# Written by sockwizard {version}: `ansible-playbook -i INVENTORY site.yml [--check --diff]`.
- name: Deploy the Socket.IO proxy config, guarded (sockwizard)
  hosts: all
  become: true
  gather_facts: false
  roles:
    - role: sockwizard
"""


def export_ansible(spec: DeploySpec, out: Path) -> list[Path]:
    """Write the playbook and role for ``spec`` under ``out``; return the files written."""
    import yaml

    spec = spec.validated()
    if spec.proxy is ProxyKind.NODE:
        raise BadInput("The Ansible export covers the config-file proxies (nginx, apache, "
                       "caddy, haproxy), not node.",
                       "Deploy the node proxy with `sockwizard deploy`.")
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty.",
                       "Give a new or empty directory with -o; nothing was written.")
    prof = profile(spec.proxy)
    role = out / "roles" / "sockwizard"
    shutil.copytree(ROLE_FILES, role, ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    kind = spec.proxy.value
    shutil.copytree(templates_dir() / kind, role / "templates" / kind)
    defaults = {
        "sockwizard_export": _export_vars(spec),
        "sockwizard_template": prof.templates[spec.layout],
        "sockwizard_version": __version__,
        "sockwizard_dest": prof.default_dest[spec.layout],
        "sockwizard_validate_cmd": prof.validate_cmd[spec.layout],
        "sockwizard_reload_cmd": prof.reload_cmd[spec.layout],
        "sockwizard_probe": True,
        "sockwizard_probe_url": "",
        "sockwizard_probe_timeout": 5,
        "sockwizard_settle_timeout": 20,
    }
    (role / "defaults").mkdir(exist_ok=True)
    (role / "defaults" / "main.yml").write_text(
        f"---\n# Written by sockwizard {__version__}: the spec and the host's commands. Set any "
        "of these (or a spec\n# field such as server_name, listen_port, backends) per host "
        "in the inventory.\n" + yaml.dump(defaults, Dumper=_dumper(), sort_keys=False, width=1000)
        + _unsafe("sockwizard_marker", {"anchor": prof.marker_anchor, "line": prof.marker_line,
                                        "header": HEADER}))
    (out / "site.yml").write_text(PLAYBOOK.format(version=__version__))
    return sorted(p for p in out.rglob("*") if p.is_file())


def _unsafe(name: str, values: dict[str, str]) -> str:
    """A mapping of strings Ansible must not template (regexes with ``{#`` in them):
    ``!unsafe`` + a JSON string, which is a YAML double-quoted scalar."""
    import json

    return f"{name}:\n" + "".join(f"  {k}: !unsafe {json.dumps(v)}\n"
                                    for k, v in values.items())


def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Lists indented under their key, as yamllint (ansible-lint) wants them."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    return Dumper


def _export_vars(spec: DeploySpec) -> dict[str, Any]:
    """The spec as plain data, and what depends on host-overridable fields, precomputed."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "backends":
            value = [str(b) for b in value]
        elif hasattr(value, "value"):
            value = value.value
        fields[f.name] = value
    modules = {}
    for tls in (False, True):
        for sticky in (False, True):
            variant = dataclasses.replace(
                spec, tls_cert=spec.tls_cert or "/x.pem" if tls else None,
                tls_key=spec.tls_key or "/x.key" if tls else None,
                backends=spec.backends * 2 if sticky else spec.backends[:1])
            modules[f"tls={tls} sticky={sticky}"] = profile(spec.proxy).modules(variant)
    return {"fields": fields, "modules": modules,
            "apache_has_upgrade_param": spec.apache_has_upgrade_param}
