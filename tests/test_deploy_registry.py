"""Every proxy kind is complete on the deploy side: a profile with every deploy field, a
marker anchor that stamps its own rendered config, a sandbox main config — no kind falls
through to another's."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace

import pytest

from wizard import sandbox
from wizard.deploy import HEADER, stamp
from wizard.model import DeploySpec, Layout, ProxyKind
from wizard.proxies import PROFILES
from wizard.proxies.base import ProxyProfile
from wizard.render import render

DEPLOY_FIELDS = ("daemon_binaries", "control_binaries", "stand_ins", "alt_site_dest",
                 "modules_query", "systemd_reload", "reload_without_systemd", "site_enabling",
                 "site_include",
                 "default_site_check", "unshadow_how", "reload_drop_warning", "marker_anchor",
                 "marker_line", "settle_quiet", "version_cmd")


def test_the_deploy_side_fields_have_no_defaults() -> None:
    """A profile that forgets one fails at import, not at the first deploy of that kind."""
    fields = {f.name: f for f in dataclasses.fields(ProxyProfile)}
    for name in DEPLOY_FIELDS:
        assert fields[name].default is dataclasses.MISSING, name
        assert fields[name].default_factory is dataclasses.MISSING, name


@pytest.mark.parametrize("kind", list(ProxyKind), ids=lambda k: k.value)
def test_every_kind_has_every_deploy_field(kind: ProxyKind) -> None:
    prof = PROFILES[kind]
    assert prof.kind == kind.value
    assert prof.daemon_binaries and prof.version_cmd
    assert "*" in prof.systemd_reload
    assert prof.unshadow_how
    drops = any(prof.reload_drops_websockets(replace(DeploySpec(), proxy=kind, layout=layout))
                for layout in Layout)  # Traefik: only the full layout's restart drops them
    assert (prof.reload_drop_warning != "") == drops, "a reload that drops WebSockets says so"
    re.compile(prof.marker_anchor)
    assert "{cid}" in prof.marker_line and "{header}" in prof.marker_line
    assert prof.settle_quiet >= 0
    for layout in Layout:
        assert isinstance(prof.default_site_check(80, layout), list)
    assert kind in sandbox.SETUPS


@pytest.mark.parametrize("kind", list(ProxyKind), ids=lambda k: k.value)
def test_each_marker_line_lands_in_its_own_config(kind: ProxyKind) -> None:
    text = render(DeploySpec(proxy=kind)).text
    stamped = stamp(kind, text)
    assert stamped.config_id is not None
    line = PROFILES[kind].marker_line.format(indent="", header=HEADER, cid=stamped.config_id)
    assert line.strip() in stamped.text
