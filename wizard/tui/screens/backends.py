"""Step 4: the Socket.IO servers, the timeouts (checked live against the ping settings), where
the proxy listens, TLS, and the few settings only one proxy has.

Every message next to a field is the model's (``check_raw`` -> ``build_spec``); the read
timeout's reason and smallest safe value are ``model.timeout_problem``'s words.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Static

from wizard.model import DeploySpec, ProxyKind
from wizard.tui.screens.shared import SpecFormScreen
from wizard.tui.services import Services
from wizard.tui.state import WizardState
from wizard.tui.widgets.field import Field, ModelCheck, check_raw, problem_for
from wizard.tui.widgets.gauge import TimeoutGauge

# How each template keeps a client on one backend (what the rendered config will contain).
STICKY_HOW = {
    ProxyKind.NGINX: "an upstream with `hash $remote_addr consistent` (same client address, "
                     "same backend)",
    ProxyKind.APACHE: "a balancer with a SERVERID cookie (`stickysession`) for the http:// and "
                      "ws:// routes",
    ProxyKind.CADDY: "`lb_policy cookie` on reverse_proxy",
    ProxyKind.NODE: "a hash of the client address in proxy.js",
    ProxyKind.TRAEFIK: "a `sticky.cookie` on the service's loadBalancer",
}

# Text fields of this screen: model field name -> (label, hint).
_TEXT_FIELDS: dict[str, tuple[str, str]] = {
    "read_timeout": ("Read timeout (s)", ""),
    "send_timeout": ("Send timeout (s)", "How long a write to a client may stall."),
    "ping_interval_ms": ("pingInterval ms", ""),
    "ping_timeout_ms": ("pingTimeout ms", ""),
    "server_name": ("Server name", "The site's domain, e.g. chat.example.com (optional)."),
    "listen": ("Listen on [ADDR:]PORT", "Where the proxy accepts clients."),
    "tls_cert": ("TLS certificate (path on the host)", "Optional; with a key, adds HTTPS."),
    "tls_key": ("TLS key (path on the host)", ""),
    "tls_port": ("HTTPS port", ""),
    "stream_close_delay": ("stream_close_delay (s, Caddy 2.7+)",
                           "Keeps WebSockets open across reloads; empty: off."),
    "apache_version": ("Apache version on the host",
                       "Empty: 2.4.47 or newer (ProxyPass upgrade=websocket); older versions "
                       "get the mod_proxy_wstunnel recipe."),
}
_OPTIONAL = {"server_name", "tls_cert", "tls_key", "stream_close_delay", "apache_version"}
_PROXY_ONLY = {"stream_close_delay": ProxyKind.CADDY, "apache_version": ProxyKind.APACHE}


def _initial(spec: DeploySpec, name: str) -> str:
    if name == "listen":
        if spec.listen_address is None:
            return str(spec.listen_port)
        host = f"[{spec.listen_address}]" if ":" in spec.listen_address else spec.listen_address
        return f"{host}:{spec.listen_port}"
    value = getattr(spec, name)
    return "" if value is None else str(value)


def _number(value: Any) -> int | None:
    """A typed whole number, for drawing only (the model judges the value)."""
    text = str(value or "")
    return int(text) if text.isdigit() else None


class BackendsScreen(SpecFormScreen):
    FORM_TITLE = "Backends & timeouts"
    STEP_HELP = ("Where your Socket.IO servers run, and how long the proxy may keep an idle "
                 "connection open.")

    def __init__(self, state: WizardState, index: int, services: Services) -> None:
        super().__init__(state, index, services)
        self._rows = 0  # ids of backend rows only grow, so a removed row's id is never reused

    # -- layout -----------------------------------------------------------------------------

    def _field(self, name: str) -> Field:
        label, hint = _TEXT_FIELDS[name]
        if name == "read_timeout":
            hint = ""
        return Field(label, Input(_initial(self.state.spec, name), id=name,
                                  validators=[self._check(name)]),
                     hint=hint, id=f"field-{name}")

    def compose_body(self) -> ComposeResult:
        spec = self.state.spec
        with Horizontal(id="columns"):
            with Vertical(classes="column"):
                with Vertical(id="backends-panel", classes="panel") as panel:
                    panel.border_title = "Socket.IO servers (HOST:PORT)"
                    with Vertical(id="backend-rows"):
                        for backend in spec.backends:
                            yield self._backend_row(str(backend))
                    yield Button("+ Add a server", id="add-backend", compact=True)
                    yield Static(id="sticky-note", classes="note")
                with Vertical(id="site-panel", classes="panel") as site:
                    site.border_title = "Where the proxy listens"
                    for name in ("listen", "server_name", "tls_cert", "tls_key", "tls_port"):
                        yield self._field(name)
            with Vertical(classes="column"):
                with Vertical(id="timeouts-panel", classes="panel") as timeouts:
                    timeouts.border_title = "Timeouts"
                    yield self._field("read_timeout")
                    yield TimeoutGauge(id="gauge")
                    with Horizontal(classes="pair"):
                        yield self._field("ping_interval_ms")
                        yield self._field("ping_timeout_ms")
                    yield Static("What your Socket.IO server announces (defaults 25000 and "
                                 "20000).", classes="muted hint")
                    yield self._field("send_timeout")
                with Vertical(id="proxy-panel", classes="panel") as extra:
                    extra.border_title = f"Only for {spec.proxy.value}"
                    if spec.proxy is ProxyKind.NGINX:
                        yield Checkbox("proxy_buffering on", spec.proxy_buffering,
                                       id="proxy_buffering")
                        yield Static("On is nginx's default; off is common advice for "
                                     "long-polling (responses reach clients at once).",
                                     classes="muted")
                    elif spec.proxy is ProxyKind.CADDY:
                        yield self._field("stream_close_delay")
                    elif spec.proxy is ProxyKind.APACHE:
                        yield self._field("apache_version")
                    else:
                        yield Static("Nothing extra: proxy.js is the whole config.",
                                     classes="muted")

    def _backend_row(self, value: str) -> Horizontal:
        index = self._rows
        self._rows += 1
        return Horizontal(
            Input(value, placeholder="127.0.0.1:3000", id=f"backend-{index}",
                  classes="backend", validators=[self._check_backend(index)]),
            Button("✕", id=f"remove-{index}", classes="remove", compact=True,
                   tooltip="Remove this server"),
            classes="backend-row", id=f"row-{index}",
        )

    def on_mount(self) -> None:
        self._refresh()
        self.query(".backend").first(Input).focus()

    # -- form -------------------------------------------------------------------------------

    def _backend_inputs(self) -> list[Input]:
        return list(self.query("#backend-rows Input.backend").results(Input))

    def _visible_fields(self) -> list[str]:
        proxy = self.state.spec.proxy
        return [n for n in _TEXT_FIELDS if _PROXY_ONLY.get(n, proxy) is proxy]

    def raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"backends": [i.value.strip() for i in self._backend_inputs()]}
        for name in self._visible_fields():
            value = self.query_one(f"#{name}", Input).value.strip()
            # An empty optional field clears it (None); an empty required one is a problem the
            # model reports, rather than silently keeping the old value.
            raw[name] = (value or None) if name in _OPTIONAL else value
        for box in self.query("#proxy_buffering").results(Checkbox):
            raw["proxy_buffering"] = box.value
        return raw

    def _check_backend(self, index: int) -> ModelCheck:
        def problem(_value: str) -> str | None:
            if not self.is_mounted:
                return None
            position = [i.id for i in self._backend_inputs()].index(f"backend-{index}")
            return problem_for(check_raw(self.raw(), self.state.spec)[1], f"backends[{position}]")

        return ModelCheck(problem)

    def _refresh(self) -> DeploySpec | None:
        raw = self.raw()
        spec, problems = check_raw(raw, self.state.spec)
        for name in self._visible_fields():
            self.query_one(f"#field-{name}", Field).set_problem(problem_for(problems, name))
        interval, timeout = _number(raw.get("ping_interval_ms")), _number(
            raw.get("ping_timeout_ms"))
        if "read_timeout" not in problems and interval is not None and timeout is not None:
            self.query_one("#field-read_timeout .field-message", Static).update(
                f"✓ more than pingInterval + pingTimeout ({(interval + timeout) / 1000:g} s)")
            self.query_one("#field-read_timeout .field-message").display = True
        self._show_gauge(raw)
        self._show_backend_problems(problems)
        self.set_status("" if spec else "Fix the fields marked in red.")
        return spec

    def _show_gauge(self, raw: dict[str, Any]) -> None:
        self.query_one("#gauge", TimeoutGauge).show(
            *(_number(raw.get(n)) for n in ("read_timeout", "ping_interval_ms",
                                            "ping_timeout_ms")))

    def _show_backend_problems(self, problems: dict[str, str]) -> None:
        inputs = self._backend_inputs()
        lines = []
        for position, _ in enumerate(inputs):
            why = problems.get(f"backends[{position}]")
            if why:
                lines.append(f"#{position + 1}: {why}")
        if "backends" in problems:
            lines.append(problems["backends"])
        note = self.query_one("#sticky-note", Static)
        if lines:
            note.update("\n".join(lines))
            note.add_class("-problem")
            return
        note.remove_class("-problem")
        if len(inputs) > 1:
            how = STICKY_HOW[self.state.spec.proxy]
            note.update(
                f"{len(inputs)} servers: Socket.IO needs sticky sessions — every request of one "
                "client must reach the same server, or it gets 400 \"Session ID unknown\". "
                f"The config uses {how}.")
        else:
            note.update("One server. Add more to balance clients across them "
                        "(sticky sessions are added for you).")

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._refresh()

    @on(Button.Pressed, "#add-backend")
    async def _add(self) -> None:
        row = self._backend_row("")
        await self.query_one("#backend-rows").mount(row)
        row.query_one(Input).focus()
        self._refresh()

    @on(Button.Pressed, ".remove")
    async def _remove(self, event: Button.Pressed) -> None:
        if len(self._backend_inputs()) == 1:
            self.notify("At least one Socket.IO server is needed.", severity="warning")
            return
        index = (event.button.id or "").removeprefix("remove-")
        await self.query_one(f"#row-{index}").remove()
        self._refresh()

    # -- answers ----------------------------------------------------------------------------

