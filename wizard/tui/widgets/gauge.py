"""A small picture of a proxy timeout against the server's ping settings (Backends step).

The grade is the one rule's (``wizard.heartbeat.Heartbeat.grade``, which the model, the probe
and diagnose ask too): at or below pingInterval every idle client drops (certain); up to
pingInterval + pingTimeout a client survives until a ping runs late (at risk); above the sum
is safe. The words next to the field come from the same rule (the Backends step); this only
draws where the value falls.
"""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from wizard.heartbeat import Grade, Heartbeat


class TimeoutGauge(Widget):
    """``━━━━━┿━━━━┿━━━━`` coloured by zone, with ``▲`` at the timeout; fits its width."""

    DEFAULT_CSS = """
    TimeoutGauge { height: 4; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._values: tuple[int, int, int] | None = None

    def show(self, timeout_s: int | None, interval_ms: int | None,
             ping_timeout_ms: int | None) -> None:
        if timeout_s is None or interval_ms is None or ping_timeout_ms is None:
            self._values = None
        else:
            self._values = (timeout_s, interval_ms, ping_timeout_ms)
        self.refresh()

    def render(self) -> Content:
        if self._values is None:
            return Content("")
        timeout_s, interval_ms, ping_timeout_ms = self._values
        width = max(self.content_size.width, 10)
        interval = interval_ms / 1000
        total = (interval_ms + ping_timeout_ms) / 1000
        scale = max(float(timeout_s), total) * 1.15 or 1.0

        def col(seconds: float) -> int:
            return min(width - 1, round(seconds / scale * (width - 1)))

        c_interval, c_total, c_timeout = col(interval), col(total), col(timeout_s)
        bar: list[tuple[str, str]] = []
        for x in range(width):
            style = "$error" if x < c_interval else "$warning" if x <= c_total else "$success"
            bar.append(("┿" if x in (c_interval, c_total) else "━", style))
        grade = Heartbeat(interval_ms, ping_timeout_ms).grade(timeout_s)
        zone = {Grade.CERTAIN: "drops", Grade.AT_RISK: "at risk", Grade.SAFE: "safe"}[grade]
        zone_style = {"drops": "$text-error", "at risk": "$text-warning",
                      "safe": "$text-success"}[zone]
        label = f"▲ {timeout_s} s: {zone}"
        if c_timeout + len(label) > width:  # no room on the right: point from the left
            label = f"{timeout_s} s: {zone} ▲"
            start = max(0, c_timeout - len(label) + 1)
        else:
            start = c_timeout
        pointer = Content.assemble(" " * start, (label, f"bold {zone_style}"))
        legend = [Content.styled(f"┿ {interval:g} s  pingInterval", "$text-muted"),
                  Content.styled(f"┿ {total:g} s  pingInterval + pingTimeout", "$text-muted")]
        return Content("\n").join([Content.assemble(*bar), pointer, *legend])
