"""A real deploy over a slow link (issue #15 follow-up): the rename step is the host's own
span, far below the round trip, and the round trip is reported as what it is.

The rig's sshd behind ``tests.relay.Relay`` adding 50 ms each way (a 100 ms round trip); the
deploy runs as the rig's deploy user through passwordless sudo (root on the host: the script
reads ``/proc/timer_list``). The parsing itself is in ``test_host_clock``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests import rig
from tests.relay import Relay
from tests.test_deploy_ssh import Site, make_site  # noqa: F401  (the fixture)
from wizard.commands._print import Progress
from wizard.deploy import Notice, Outcome, Step
from wizard.model import ProxyKind

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, pytest.mark.timeout(120)]

DELAY = 0.15  # each way: a round trip (300 ms) far above any host step, even on a loaded CI box


@pytest.fixture
def slow_link(make_site: Callable[..., Site], sshd: rig.SshdInstance,  # noqa: F811
              tmp_path: Path) -> Iterator[tuple[Site, Relay, Path]]:
    site = make_site(ProxyKind.NGINX)
    relay = Relay((sshd.host, sshd.port), delay=DELAY).start()
    known = tmp_path / "known_hosts.relay"
    known.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{relay.port} "))
    yield site, relay, known
    relay.close()


def test_the_rename_is_its_own_span_and_the_round_trip_is_reported(
        slow_link: tuple[Site, Relay, Path]) -> None:
    site, relay, known = slow_link
    shown = io.StringIO()
    changed = replace(site.spec, ping_timeout_ms=site.spec.ping_timeout_ms + 1000)
    result = site.deploy(changed, target=f"{site.user}@127.0.0.1:{relay.port}",
                         connect={"known_hosts": known},
                         on_event=Progress(shown, show_host=False))
    print("\n" + shown.getvalue())
    assert result.outcome is Outcome.DEPLOYED, result.message()
    steps = {s.step: s for s in result.steps}
    rename = steps[Step.RENAME]
    # A rename is a mv and a few checks: far below the 100 ms round trip it used to absorb
    # (total - upload - backup - validate - reload: ~150 ms here before).
    assert rename.seconds < DELAY, rename
    assert rename.wait is not None and rename.wait >= 2 * DELAY, rename
    for step in (Step.BACKUP, Step.UPLOAD, Step.RENAME, Step.VALIDATE, Step.RELOAD):
        assert steps[step].resolution == pytest.approx(1e-9), steps[step]  # root's timer_list
        assert steps[step].seconds < 2 * DELAY, steps[step]
    assert steps[Step.VALIDATE].seconds > 0.0  # nginx -t, timed on the host
    data = json.loads(json.dumps(result.to_dict()))
    row = next(s for s in data["steps"] if s["step"] == "rename")
    assert row["ms"] == round(rename.seconds * 1000, 1) and row["resolution_ms"] == 1e-6, row
    assert row["wait_ms"] >= 2 * DELAY * 1000, row
    notes = [e.text for e in site.events if isinstance(e, Notice) and e.level == "info"]
    said = next(n for n in notes if n.startswith("the activation script answered"))
    assert "the round trip" in said and "counts in" not in said, said
    assert said in shown.getvalue()
