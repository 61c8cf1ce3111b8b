#!/usr/bin/env python3
"""Write an SVG of every wizard step (and its error states) into screenshots/.

Drives the real app with Textual's ``run_test`` and a Pilot: the same screens, CSS and core
calls a user gets. Where a step would talk to a live host (deploy, probe, findings), the scene
feeds the screen recorded core results (a ``DeployResult``, its events, a ``ProbeReport``)
through the same methods the live path uses, so the pictures are the same on every run.
``tests/test_tui_snapshots.py`` imports SCENES from here and compares them with committed
snapshots; the README embeds the SVGs.

    python3 scripts/screenshots.py            # the step scenes + the real runs (live_screens)
    python3 scripts/screenshots.py 05-preview # only these; `live` for the real runs
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import Input, Static  # noqa: E402

from wizard.deploy import (  # noqa: E402
    DeployResult,
    Notice,
    Outcome,
    Step,
    StepFinished,
    StepStarted,
)
from wizard.errors import ExitCode  # noqa: E402
from wizard.findings import Finding  # noqa: E402
from wizard.model import Backend, DeploySpec  # noqa: E402
from wizard.probe import ProbeReport, Stage  # noqa: E402
from wizard.probe.wire import Handshake  # noqa: E402
from wizard.remote import InMemoryRemote  # noqa: E402
from wizard.tui.app import SockwizardApp  # noqa: E402
from wizard.tui.screens.deploy import DeployScreen  # noqa: E402
from wizard.tui.screens.diagnose import FindingsScreen  # noqa: E402
from wizard.tui.screens.modals import ErrorModal, HostKeyModal  # noqa: E402
from wizard.tui.state import (  # noqa: E402
    Connection,
    Mode,
    TargetChoice,
    TargetKind,
    WizardState,
)
from wizard.tui.widgets.deploy_log import DeployLog  # noqa: E402
from wizard.tui.widgets.probe_view import ProbeView  # noqa: E402

SIZE = (110, 36)
OUT = ROOT / "screenshots"
HOST = "deploy@chat.example.com:22"
DEST = "/etc/nginx/conf.d/sockwizard.conf"
FINGERPRINT = "SHA256:q0dA1gq2vU3QmP6oJm8q3b9JxC5yHk4Ztq0wZkS0gC8"

# -- recorded core results ------------------------------------------------------------------

HANDSHAKE = Handshake("Yx3zq1pK0bXgqL7fAAAB", ("websocket",), 25000, 20000, 1_000_000, 4)

GOOD_STAGES = (
    Stage("tcp", True, 0.4, "connected to 203.0.113.7:443"),
    Stage("tls", True, 11.2, "TLSv1.3, certificate for chat.example.com valid"),
    Stage("polling", True, 6.9, 'sid Yx3zq1pK0bXgqL7fAAAB, upgrades ["websocket"], '
                               "pingInterval 25000, pingTimeout 20000"),
    Stage("websocket", True, 4.1, "101 Switching Protocols; 2probe -> 3probe"),
    Stage("socketio", True, 8.6, "connected on websocket, namespace /"),
)

GOOD_REPORT = ProbeReport("https://chat.example.com", "/socket.io/", True, "websocket",
                          HANDSHAKE, GOOD_STAGES, ())

TIMEOUT_FINDING = Finding(
    "read-timeout-too-short", "error",
    "The proxy's read timeout (30 s) is below pingInterval + pingTimeout (45 s): idle clients "
    "get \"transport close\"",
    "/etc/nginx/sites-enabled/chat:31 proxy_read_timeout 30s; live handshake pingInterval "
    "25000 ms, pingTimeout 20000 ms",
    "In the Socket.IO location set `proxy_read_timeout 60s;` and `proxy_send_timeout 60s;`, "
    "then `nginx -t && nginx -s reload`.")
UPGRADE_FINDING = Finding(
    "websocket-upgrade-blocked", "error",
    "The WebSocket upgrade is blocked: 400 Bad request (Engine.IO code 3)",
    'websocket: GET /socket.io/?EIO=4&transport=websocket -> 400 {"code":3,"message":'
    '"Bad request"}',
    "Forward the upgrade on the Socket.IO route: proxy_http_version 1.1; proxy_set_header "
    "Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;")

BAD_STAGES = (
    GOOD_STAGES[0], GOOD_STAGES[1], GOOD_STAGES[2],
    Stage("websocket", False, 3.2, '400 Bad Request {"code":3,"message":"Bad request"}'),
    Stage("socketio", True, 41.7, "connected, but stayed on polling (the upgrade failed)"))
BAD_REPORT = ProbeReport("https://chat.example.com", "/socket.io/", False, "polling",
                         HANDSHAKE, BAD_STAGES, (UPGRADE_FINDING,))
# What diagnose finds on a host whose nginx config it read over SSH.
DIAGNOSED = replace(BAD_REPORT, findings=(UPGRADE_FINDING, TIMEOUT_FINDING))


def _events(outcome: str) -> list[Any]:
    """The events of one deploy, as wizard.deploy emits them (times fixed for the picture)."""
    host = HOST
    done: list[tuple[Step, str, Any, float, str, str]] = [
        (Step.DETECT, "what the host has", "ok", 0.212, f"{DEST}; debian, systemd, nginx "
         "1.22.1", ""),
        (Step.DIFF, "compare with the file on the host", "ok", 0.006, "changed: +12 -4 lines",
         ""),
        (Step.BACKUP, "back up the current config", "ok", 0.088,
         "/var/backups/sockwizard/20250114T101502.118Z-etc_nginx_conf.d_sockwizard.conf", ""),
        (Step.UPLOAD, "upload to a temp file beside the target", "ok", 0.004,
         "/etc/nginx/conf.d/.sockwizard.conf.sockwizard-3f9a01c2.tmp (1731 bytes)", ""),
        (Step.RENAME, f"rename over {DEST}", "ok", 0.002, DEST, ""),
    ]
    events: list[Any] = []
    for step, title, status, seconds, detail, output in done:
        events += [StepStarted(host, step, title),
                   StepFinished(host, step, status, seconds, detail, output)]
    if outcome == "rolled-back":
        events += [
            StepStarted(host, Step.VALIDATE, "nginx -t"),
            StepFinished(host, Step.VALIDATE, "failed", 0.013, "the checker refused the config",
                         'nginx: [emerg] "proxy_read_timeout" directive invalid value in '
                         f"{DEST}:31\nnginx: configuration file /etc/nginx/nginx.conf test "
                         "failed"),
            StepStarted(host, Step.RESTORE, f"put the previous {DEST} back"),
            StepFinished(host, Step.RESTORE, "ok", 0.005,
                         "from /var/backups/sockwizard/20250114T101502.118Z-etc_nginx_conf.d_"
                         "sockwizard.conf (verified byte for byte)"),
            StepStarted(host, Step.RECHECK, "nginx -t"),
            StepFinished(host, Step.RECHECK, "ok", 0.012, "nginx -t"),
        ]
        return events
    events += [
        StepStarted(host, Step.VALIDATE, "nginx -t"),
        StepFinished(host, Step.VALIDATE, "ok", 0.013, "nginx -t"),
        StepStarted(host, Step.RELOAD, "nginx -s reload"),
        StepFinished(host, Step.RELOAD, "ok", 0.021, "nginx -s reload"),
        StepStarted(host, Step.SETTLE, "wait until https://chat.example.com:443 serves config "
                                       "8c5673e4fd6a"),
        StepFinished(host, Step.SETTLE, "ok", 0.341,
                     "HTTP 400 with X-Sockwizard-Config: 8c5673e4fd6a after 9 answer(s)"),
        StepStarted(host, Step.PROBE, "probe https://chat.example.com:443 (path /socket.io/)"),
        StepFinished(host, Step.PROBE, "ok", 0.047, "Socket.IO connected on websocket"),
        StepStarted(host, Step.DONE, "done"),
        StepFinished(host, Step.DONE, "ok", 0.0, f"{DEST} serves config 8c5673e4fd6a"),
    ]
    return events


def _result(outcome: str) -> DeployResult:
    steps = tuple(e for e in _events(outcome) if isinstance(e, StepFinished))
    if outcome == "rolled-back":
        return DeployResult(
            host=HOST, outcome=Outcome.ROLLED_BACK, exit_code=ExitCode.VALIDATE_ROLLED_BACK,
            title=f"Validation failed on {HOST}: the checker refused the new config. The "
                  f"previous {DEST} was put back byte for byte at once; nothing was reloaded.",
            hint="Fix what the checker says above (run `nginx -t` on the host to see it "
                 "again), then deploy again.",
            detail='nginx: [emerg] "proxy_read_timeout" directive invalid value in '
                   f"{DEST}:31",
            failed_step=Step.VALIDATE, dest=DEST, steps=steps,
            backup="/var/backups/sockwizard/20250114T101502.118Z-etc_nginx_conf.d_sockwizard.conf")
    return DeployResult(
        host=HOST, outcome=Outcome.DEPLOYED, exit_code=ExitCode.OK,
        title=f"Deployed to {HOST}: {DEST} is live and the probe passed over WebSocket.",
        dest=DEST, steps=steps, probe=GOOD_REPORT, config_id="8c5673e4fd6a",
        backup="/var/backups/sockwizard/20250114T101502.118Z-etc_nginx_conf.d_sockwizard.conf")


# -- scenes ---------------------------------------------------------------------------------

SPEC = DeploySpec(backends=(Backend("127.0.0.1", 3000),), server_name="chat.example.com")
TWO_BACKENDS = replace(SPEC, backends=(Backend("10.0.0.11", 3000), Backend("10.0.0.12", 3000)))
CHOICE = TargetChoice(kind=TargetKind.SSH, host="chat.example.com", user="deploy")


def _connection() -> Connection:
    remote = InMemoryRemote(name=HOST)
    remote.on(r".", exit_status=0)
    return Connection(CHOICE, remote, "chat.example.com")


def _ssh_config() -> Path:
    """A small ~/.ssh/config so the Target step shows its host list."""
    path = Path(tempfile.gettempdir()) / "sockwizard-screenshots-ssh_config"
    path.write_text("Host chat-prod\n  HostName 203.0.113.7\n  User deploy\n\n"
                    "Host chat-staging\n  HostName 203.0.113.8\n  User deploy\n")
    return path


Before = Callable[[Pilot[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Scene:
    """One picture: how to build the app, and what to do before the shot."""

    name: str
    title: str
    make: Callable[[], SockwizardApp]
    before: Before | None = None


async def settle(pilot: Pilot[Any], done: Callable[[], bool] | None = None) -> None:
    """Wait until the scene is ready (``done``), let it paint, stop blinking cursors."""
    for _ in range(400):
        if done is None or done():
            break
        await pilot.pause(0.05)
    else:
        raise RuntimeError("scene never became ready")
    await pilot.pause()
    for field in pilot.app.screen.query(Input).results(Input):
        field.cursor_blink = False
    await pilot.pause()


def _at(step: int, state: WizardState | None = None, **kw: Any) -> Callable[[], SockwizardApp]:
    return lambda: SockwizardApp(state=state or WizardState(spec=SPEC), start_at=step,
                                 ssh_config=_ssh_config(), **kw)


async def _start(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ == "StartScreen")


async def _bad_timeout(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ == "BackendsScreen")
    field = pilot.app.screen.query_one("#read_timeout", Input)
    field.focus()
    field.value = "30"
    await settle(pilot)


async def _target_ssh(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ == "TargetScreen")
    await pilot.press("down", "enter")
    host = pilot.app.screen.query_one("#host", Input)
    host.value = "chat-prod"
    host.focus()
    await settle(pilot)


async def _host_key(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ == "TargetScreen")
    pilot.app.push_screen(HostKeyModal("[203.0.113.7]:22", "ssh-ed25519", FINGERPRINT,
                                       "/home/you/.ssh/known_hosts"))
    await settle(pilot, lambda: isinstance(pilot.app.screen, HostKeyModal))


def _deploy_replay(outcome: str) -> Before:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot, lambda: isinstance(pilot.app.screen, DeployScreen)
                     and not pilot.app.screen.planning)
        screen = pilot.app.screen
        assert isinstance(screen, DeployScreen)
        log = screen.query_one(DeployLog)
        log.clear()
        for event in _events(outcome):
            log.handle(event)
        if outcome != "rolled-back":
            log.handle(Notice(HOST, Step.RELOAD, "info",
                              "nginx keeps serving old connections until they close."))
        screen.show_result(_result(outcome))
        await settle(pilot)
        log.scroll_home(animate=False)
        await settle(pilot)

    return before


async def _findings(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: isinstance(pilot.app.screen, FindingsScreen)
                 and pilot.app.screen.report is not None)
    screen = pilot.app.screen
    view = screen.query_one(ProbeView)
    view.reset("")
    view.show_report(DIAGNOSED)
    screen.query_one("#probe-url", Static).update(
        f"{DIAGNOSED.url}  (path {DIAGNOSED.path}; host access: {HOST})")
    await settle(pilot)


async def _error(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ == "TargetScreen")
    pilot.app.push_screen(ErrorModal(
        "Authentication failed for deploy@203.0.113.7",
        "Tried: ~/.ssh/id_ed25519, ssh-agent (2 keys). Check the user name, pass the right "
        "key, or load it into ssh-agent.",
        "Server answers:\nAuthentication failed (publickey)."))
    await settle(pilot, lambda: isinstance(pilot.app.screen, ErrorModal))


def _verdict_state(report: ProbeReport) -> WizardState:
    result = replace(_result("deployed"), probe=report)
    return WizardState(spec=replace(SPEC, tls_cert="/etc/ssl/chat.pem",
                                    tls_key="/etc/ssl/chat.key"),
                       target=replace(CHOICE, probe_url="https://chat.example.com"),
                       connection=_connection(), deploy_report=result)


def _light() -> SockwizardApp:
    app = _at(4)()
    app.theme = "textual-light"
    return app


DIAGNOSE = WizardState(mode=Mode.DIAGNOSE, spec=SPEC, probe_url="https://chat.example.com",
                       target=TargetChoice(kind=TargetKind.NONE))

SCENES: dict[str, Scene] = {scene.name: scene for scene in (
    Scene("01-start", "Start", _at(0), _start),
    Scene("02-proxy", "Proxy", _at(1)),
    Scene("03-path-custom", "Path & scope, custom path",
          _at(2, WizardState(spec=replace(SPEC, path="/chat/socket.io/")))),
    Scene("04-backends-sticky", "Backends & timeouts, two backends",
          _at(3, WizardState(spec=TWO_BACKENDS))),
    Scene("04b-backends-bad-timeout", "Backends & timeouts, a timeout that drops clients",
          _at(3), _bad_timeout),
    Scene("05-preview", "Preview", _at(4)),
    Scene("05b-preview-light", "Preview, light theme", _light),
    Scene("06-target-ssh", "Target over SSH", _at(5), _target_ssh),
    Scene("06b-host-key", "Unknown host key", _at(5), _host_key),
    Scene("06c-error", "An error, in one place", _at(5), _error),
    Scene("07-deploy", "Deploy", _at(6, WizardState(spec=SPEC, target=CHOICE,
                                                    connection=_connection())),
          _deploy_replay("deployed")),
    Scene("07b-deploy-rolled-back", "Deploy, rolled back",
          _at(6, WizardState(spec=SPEC, target=CHOICE, connection=_connection())),
          _deploy_replay("rolled-back")),
    Scene("08-verdict", "Probe & verdict", _at(7, _verdict_state(GOOD_REPORT))),
    Scene("08b-verdict-findings", "Probe & verdict with findings",
          _at(7, _verdict_state(BAD_REPORT))),
    Scene("09-diagnose-url", "Diagnose: URL & path", _at(2, DIAGNOSE)),
    Scene("10-diagnose-findings", "Diagnose: findings",
          _at(3, replace(DIAGNOSE, probe_url="http://127.0.0.1:9")), _findings),
)}


async def _default_before(pilot: Pilot[Any]) -> None:
    await settle(pilot, lambda: type(pilot.app.screen).__name__ not in ("Backdrop",))


def before_of(scene: Scene) -> Before:
    return scene.before or _default_before


async def shoot(scene: Scene, out: Path) -> Path:
    app = scene.make()
    async with app.run_test(size=SIZE) as pilot:
        await before_of(scene)(pilot)
        path = out / f"{scene.name}.svg"
        app.save_screenshot(path.name, str(out))
    return path


# Scenes fed recorded results: the snapshot tests' (tests/test_tui_snapshots.py), not the
# README's — its deploy, rollback, verdict and diagnosis pictures are real runs (live_screens).
RECORDED = {"07-deploy", "07b-deploy-rolled-back", "08-verdict", "08b-verdict-findings",
            "10-diagnose-findings"}


def main(argv: list[str]) -> int:
    OUT.mkdir(exist_ok=True)
    names = [n for n in argv if n != "live"] if argv else [n for n in SCENES
                                                           if n not in RECORDED]
    for name in names:
        path = asyncio.run(shoot(SCENES[name], OUT))
        print(f"wrote {path.relative_to(ROOT)}")
    if not argv or "live" in argv:
        sys.path.insert(0, str(ROOT / "scripts"))
        import live_screens

        live_screens.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
