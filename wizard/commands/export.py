"""``sockwizard export ansible``: write a role + playbook that deploy with Ansible's machinery.

The work is ``wizard.export.export_ansible``; this module only reads the spec flags and prints
what was written (stderr) and how to run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wizard.commands._flags import add_command, add_spec_options, spec_from_args
from wizard.errors import ExitCode


def register(sub: Any) -> None:
    p = add_command(
        sub, "export", help="write the deploy for another engine (ansible)",
        description="Write a self-contained Ansible role and playbook that perform sockwizard's "
                    "guarded deploy: the same templates (per-host variables), write with "
                    "validate and backup, reload via a handler, a Socket.IO probe, and "
                    "block/rescue restoring the backup. ansible-core is not needed to export.",
        examples="examples:\n  sockwizard export ansible --spec site.toml -o deploy/\n"
                 "  ansible-playbook -i hosts.ini deploy/site.yml --check --diff")
    p.add_argument("engine", choices=["ansible"], help="the engine to export for")
    add_spec_options(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="a new (or empty) directory for the playbook and role")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wizard.export import export_ansible

    files = export_ansible(spec_from_args(args), args.output)
    print(f"wrote {len(files)} files under {args.output}; run:\n"
          f"  ansible-playbook -i INVENTORY {args.output / 'site.yml'} [--check --diff]",
          file=sys.stderr)
    return ExitCode.OK
