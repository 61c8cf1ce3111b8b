"""Fleets: the hosts of an Ansible inventory, a ``--limit`` pattern, and one deploy per host.

Called by ``sockwizard deploy --inventory FILE [--limit PATTERN] [--forks N]``
(``wizard.commands.deploy``). One file serves sockwizard and Ansible: ``inventory`` reads
Ansible's INI and YAML formats (checked against ``ansible-inventory --list`` in the tests),
``limit`` selects hosts with Ansible's pattern syntax, ``jobs`` turns each host's variables into
an SSH target and a spec validated by the model (any spec field may be a host variable), and
``run`` deploys them, each its own guarded transaction: a failing host never touches the others.
Sits beside ``wizard.deploy``'s callers (above deploy, model and spec_file).
"""

from wizard.fleet.inventory import Inventory, load_inventory, parse_inventory
from wizard.fleet.jobs import HostJob, jobs_for
from wizard.fleet.limit import select
from wizard.fleet.run import deploy_fleet

__all__ = ["HostJob", "Inventory", "deploy_fleet", "jobs_for", "load_inventory",
           "parse_inventory", "select"]
