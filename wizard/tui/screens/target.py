"""Step 6 (deploy) / 2 (diagnose): where — this machine or a host over SSH.

Connecting is the ``Connector`` the app hands over in ``Services`` (``wizard.remote.open_remote``:
this machine or SSH) in a thread worker. An unknown host key comes back as
``HostKeyUnknown``: its fingerprint is shown in a modal, and only an explicit "trust"
reconnects with ``accept_host_key`` (which records it). A ``sudo -n`` refusal
(``SudoPasswordRequired``) opens a masked field; the password goes into the Remote for this
session only and is never stored or shown.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widgets import Collapsible, Input, OptionList, RadioSet
from textual.widgets.option_list import Option

from wizard.errors import BadInput, HostKeyUnknown, SudoPasswordRequired
from wizard.proxies import profile
from wizard.render import render
from wizard.tui.screens.base import StepScreen
from wizard.tui.screens.modals import HostKeyModal
from wizard.tui.services import Services
from wizard.tui.state import Connection, Mode, Next, TargetChoice, TargetKind, WizardState
from wizard.tui.widgets.choice import Choice, Choices
from wizard.tui.widgets.field import Field


class TargetScreen(StepScreen):

    CSS_PATH = "forms.tcss"
    NEXT_LABEL = "Connect"
    STEP_HELP = "Where does the proxy run? sockwizard connects once and reuses the connection."

    _KIND_IDS: ClassVar[dict[str, TargetKind]] = {
        "kind-local": TargetKind.LOCAL, "kind-ssh": TargetKind.SSH, "kind-none": TargetKind.NONE,
        "kind-sandbox": TargetKind.SANDBOX}

    # -- layout -----------------------------------------------------------------------------

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__(state, index, services)
        self.config_hosts: list[str] = []

    def compose_body(self) -> ComposeResult:
        from wizard.remote import config_host_names  # loads paramiko: not at module import

        self.config_hosts = config_host_names(self.services.ssh_config)
        choice = self.state.target
        diagnose = self.state.mode is Mode.DIAGNOSE
        with Choices(id="kind") as kind:
            kind.border_title = "Target"
            yield Choice("This machine (the proxy runs here)",
                              value=choice.kind is TargetKind.LOCAL, id="kind-local")
            yield Choice("A host over SSH", value=choice.kind is TargetKind.SSH,
                              id="kind-ssh")
            if diagnose:
                yield Choice("No host access: only probe the URL",
                                  value=choice.kind is TargetKind.NONE, id="kind-none")
            else:
                yield Choice(
                    f"A sandbox here: a throwaway {profile(self.state.spec.proxy).title} and "
                    "a demo server",
                    value=choice.kind is TargetKind.SANDBOX, id="kind-sandbox")
        with Vertical(id="ssh-panel", classes="panel") as ssh:
            ssh.border_title = "SSH"
            yield Field("Host: [user@]host[:port], or a Host from ~/.ssh/config",
                        Input(choice.host, id="host", placeholder="deploy@203.0.113.7",
                              suggester=SuggestFromList(self.config_hosts)),
                        id="field-host")
            if self.config_hosts:
                hosts = OptionList(*(Option(h, id=f"host-{i}")
                                     for i, h in enumerate(self.config_hosts)),
                                   id="config-hosts")
                hosts.border_title = "Hosts in ~/.ssh/config"
                yield hosts
            with Horizontal(classes="pair"):
                yield Field("User", Input(choice.user, id="user",
                                          placeholder="from ~/.ssh/config, else your login"),
                            id="field-user")
                yield Field("Port", Input("" if choice.port is None else str(choice.port),
                                          id="port", placeholder="22", type="integer"),
                            id="field-port")
            yield Field("Private key file", Input(
                str(choice.identity or ""), id="identity",
                placeholder="ssh-agent, IdentityFile, ~/.ssh/id_ed25519…"), id="field-identity")
        with Vertical(id="sudo-panel", classes="panel hidden") as sudo:
            sudo.border_title = "sudo"
            yield Field("sudo password", Input(id="sudo-password", password=True),
                        hint="Used for this session only: never saved, logged or shown.",
                        id="field-sudo")
        yield from self._compose_overrides(choice, diagnose)

    def _compose_overrides(self, choice: TargetChoice, diagnose: bool) -> ComposeResult:
        spec = self.state.spec
        prof = profile(spec.proxy)
        # Diagnose mode: the checker and the reload the findings' "Apply this fix" uses.
        title = ("Apply this fix: overrides (containers, hosts without systemd, test rigs)"
                 if diagnose else "Overrides (containers, hosts without systemd, test rigs)")
        with Collapsible(title=title, id="overrides", collapsed=not any(
                (choice.dest, choice.validate_cmd, choice.reload_cmd, choice.probe_url))):
            if not diagnose:
                yield Field("Destination", Input(choice.dest or "", id="dest",
                                                 placeholder=render(spec).dest),
                            hint="Empty: detected on the host.", id="field-dest")
            yield Field("Validate command", Input(choice.validate_cmd or "", id="validate_cmd",
                                                  placeholder=prof.validate_cmd[spec.layout]),
                        hint="{config} is the file being checked.", id="field-validate_cmd")
            yield Field("Reload command", Input(choice.reload_cmd or "", id="reload_cmd",
                                                placeholder=prof.reload_cmd[spec.layout]),
                        id="field-reload_cmd")
            if not diagnose:
                yield Field("Probe URL", Input(choice.probe_url or "", id="probe_url",
                                               placeholder="http://HOST:PORT (from the target)"),
                            id="field-probe_url")

    def on_mount(self) -> None:
        self._show_kind()
        self.query_one("#kind", RadioSet).focus()

    # -- form -------------------------------------------------------------------------------

    def _kind(self) -> TargetKind:
        pressed = self.query_one("#kind", RadioSet).pressed_button
        return self._KIND_IDS.get(pressed.id or "", TargetKind.LOCAL) if pressed \
            else TargetKind.LOCAL

    def _show_kind(self) -> None:
        kind = self._kind()
        self.query_one("#ssh-panel").set_class(kind is not TargetKind.SSH, "hidden")
        for overrides in self.query("#overrides"):
            overrides.display = kind is not TargetKind.SANDBOX
        connects = kind in (TargetKind.LOCAL, TargetKind.SSH)
        self.set_next_label("Connect" if connects else "Next")

    @on(RadioSet.Changed, "#kind")
    def _kind_changed(self) -> None:
        self._show_kind()

    @on(OptionList.OptionSelected, "#config-hosts")
    def _host_picked(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#host", Input).value = str(event.option.prompt)
        self.query_one("#user", Input).focus()

    def _value(self, name: str) -> str:
        found = self.query(f"#{name}").results(Input)
        return next((i.value.strip() for i in found), "")

    def choice(self) -> TargetChoice:
        """The fields as a TargetChoice (BadInput for a port that is not a number)."""
        port_text = self._value("port")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise BadInput(f"Port {port_text!r} is not a number from 1 to 65535.",
                           "Leave it empty for 22 or the Port in ~/.ssh/config.")
        identity = self._value("identity")
        return TargetChoice(
            kind=self._kind(), host=self._value("host"), user=self._value("user"),
            port=int(port_text) if port_text else None,
            identity=Path(identity).expanduser() if identity else None,
            dest=self._value("dest") or None, validate_cmd=self._value("validate_cmd") or None,
            reload_cmd=self._value("reload_cmd") or None,
            probe_url=self._value("probe_url") or None,
        )

    def back_state(self) -> WizardState:
        try:
            return replace(self.state, target=self.choice())
        except BadInput:
            return self.state

    # -- connecting --------------------------------------------------------------------------

    def action_next(self) -> None:
        choice = self.choice_or_report()
        if choice is None:
            return
        if choice.kind in (TargetKind.NONE, TargetKind.SANDBOX):
            self.dismiss(Next(replace(self.state, target=choice, connection=None)))
            return
        if choice.kind is TargetKind.SSH and not choice.host:
            self.query_one("#field-host", Field).set_problem("Which host? e.g. deploy@10.0.0.5")
            self.query_one("#host", Input).focus()
            return
        self.query_one("#field-host", Field).set_problem(None)
        self.connect(choice)

    def choice_or_report(self) -> TargetChoice | None:
        try:
            return self.choice()
        except BadInput as exc:
            self.query_one("#field-port", Field).set_problem(exc.title)
            return None

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self, choice: TargetChoice) -> None:
        password = self.query_one("#sudo-password", Input).value or None
        accept: str | None = None
        connect = self.services.connector
        while True:
            self.set_status(f"Connecting to {choice.label}…")
            try:
                conn: Connection = await self.in_thread(
                    connect, choice, accept_host_key=accept, sudo_password=password)
                break
            except HostKeyUnknown as unknown:
                self.set_status("")
                trusted = await self.app.push_screen_wait(HostKeyModal(
                    unknown.host, unknown.key_type, unknown.fingerprint, unknown.known_hosts))
                if not trusted:
                    self.set_status("Host key refused: not connected.")
                    self.notify("Nothing was recorded or changed.", title="Host key refused",
                                severity="warning")
                    return
                accept = unknown.fingerprint
            finally:
                self.set_status("")
        try:
            # `sudo true` answers "does this host need a sudo password?" before any step would.
            await self.in_thread(conn.remote.run, "true", sudo=True, timeout=30)
        except SudoPasswordRequired as exc:
            conn.close()
            self._ask_sudo_password(exc.title)
            return
        except BaseException:
            conn.close()
            raise
        self.dismiss(Next(replace(self.state, target=choice, connection=conn)))

    def _ask_sudo_password(self, why: str) -> None:
        self.query_one("#sudo-panel").remove_class("hidden")
        field = self.query_one("#field-sudo", Field)
        field.set_problem(f"{why}. Enter it to continue (kept in memory for this session only).")
        password = self.query_one("#sudo-password", Input)
        password.value = ""
        password.focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        return [("Connect", "Connect to the target with these settings", self.action_next)]
