"""Exports: sockwizard's deploy, written for another engine.

``ansible``: ``sockwizard export ansible`` writes a self-contained role and playbook that run
the same guarded transaction with Ansible's own machinery (the same Jinja2 templates, per-host
variables, validate + backup, a handler reload, a Socket.IO probe, block/rescue restore).
Above ``wizard.render`` (it ships its templates), below ``wizard.commands``.
"""

from wizard.export.ansible import export_ansible

__all__ = ["export_ansible"]
