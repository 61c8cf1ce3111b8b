"""Deploy the jobs of an inventory: ``--forks`` at a time, each its own transaction.

Called by ``sockwizard deploy --inventory`` (``wizard.commands.deploy``). Every job goes through
``wizard.deploy.deploy_host`` — the same connect, lock, backup, validate, reload, probe and
byte-for-byte restore as a single ``--host`` — in a thread pool of ``forks`` (the work waits on
the network). A job that fails (or raises) is that host's failed result, never another's.

Before fanning out, ``warm`` does once, in this thread, what every job would otherwise do at the
same moment: import the SSH and probe stacks (their lazy imports would serialise fifty threads
on the import lock) and compile the templates each distinct spec needs (Jinja2's cache has no
lock: fifty threads missing it at once compiled the same templates fifty times).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from wizard.deploy import DeployEvent, DeployResult, EventSink, deploy_host
from wizard.deploy.events import ignore
from wizard.deploy.preload import preload
from wizard.fleet.jobs import HostJob

MAX_FORKS = 200


def deploy_fleet(jobs: Sequence[HostJob], *, forks: int = 5,
                 on_event: EventSink = ignore) -> list[DeployResult]:
    """Results in the order of ``jobs``; ``forks`` transactions at once (1..MAX_FORKS)."""
    lock = threading.Lock()

    def sink(event: DeployEvent) -> None:
        with lock:  # one progress line at a time
            on_event(event)

    def one(job: HostJob) -> DeployResult:
        return deploy_host(job.target, job.spec, job.options, job.connect, on_event=sink)

    workers = max(1, min(forks, MAX_FORKS, len(jobs) or 1))
    if workers > 1:
        warm(jobs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sockwizard-fleet") as pool:
        return list(pool.map(one, jobs))


def warm(jobs: Sequence[HostJob]) -> None:
    """Import the lazy stacks and fill the template cache once, before the threads start
    (``wizard.deploy.preload``)."""
    preload(job.spec for job in jobs)
