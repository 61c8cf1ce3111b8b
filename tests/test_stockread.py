"""The stock check's reads riding on the detect script (wizard.deploy.stockread), fast: the
script run by a real /bin/sh on files in tmp_path, and its parser fed hostile answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from wizard.deploy import readback, stockread
from wizard.deploy.detect import Overrides, detect_script, first_guess, parse_facts
from wizard.model import Backend, DeploySpec, Layout, ProxyKind

NGINX = DeploySpec(proxy=ProxyKind.NGINX, backends=(Backend("127.0.0.1", 3000),))


def test_what_is_read_comes_from_the_profile_for_the_destination() -> None:
    dest = first_guess(NGINX, Overrides())
    assert stockread.wanted(NGINX, dest) == (["/etc/nginx/nginx.conf"],
                                             ["/etc/nginx/sites-enabled/default"])
    named = DeploySpec(proxy=ProxyKind.NGINX, server_name="chat.example")
    assert stockread.wanted(named, dest) == (["/etc/nginx/nginx.conf"], [])  # nothing shadows
    assert stockread.wanted(NGINX, "/srv/other/site.conf") == ([], ["/etc/nginx/sites-enabled/"
                                                                    "default"])
    caddy = DeploySpec(proxy=ProxyKind.CADDY)
    # The Caddyfile is both the main config and the default site's file: read once.
    assert stockread.wanted(caddy, first_guess(caddy, Overrides())) == (
        ["/etc/caddy/Caddyfile"], [])
    full = DeploySpec(proxy=ProxyKind.NGINX, layout=Layout.FULL)
    assert stockread.lines(full, first_guess(full, Overrides())) == []
    # A given --dest: no stock check, so the detect script reads nothing for it.
    assert stockread.SECTION not in detect_script(NGINX, dest, stock=False)


def run_lines(spec: DeploySpec, dest: str, tmp: Path, files: list[str],
              links: list[str]) -> stockread.StockReads:
    """The section's shell, for paths in ``tmp`` (the profile's own paths swapped out)."""
    script = "\n".join(stockread.lines(spec, dest))
    wanted_files, wanted_links = stockread.wanted(spec, dest)
    for real, ours in zip(wanted_files + wanted_links, files + links, strict=True):
        script = script.replace(real, ours)
    out = subprocess.run(["sh", "-c", "echo @@version; echo 1.0\n" + script],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return stockread.parse(out, dest)


def test_the_shell_reads_files_and_links_and_prints_only_safe_targets(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    main.write_bytes(b"http {\n}\n\x00\xff")
    good = tmp_path / "good"
    os.symlink("../sites-available/default", good)
    dest = first_guess(NGINX, Overrides())
    got = run_lines(NGINX, dest, tmp_path, [str(main)], [str(good)])
    assert got.files == {str(main): main.read_bytes()}
    assert got.links == {str(good): "../sites-available/default"}
    assert got.for_dest(dest) is got and got.for_dest("/etc/elsewhere.conf").files == {}

    for name, target in (("nl", "../a\n@@sw stock link x y"), ("space", "../a b"),
                         ("dollar", "$(reboot)"), ("long", "x" * 300)):
        os.symlink(target, tmp_path / name)
        got = run_lines(NGINX, dest, tmp_path, [str(tmp_path / "absent.conf")],
                        [str(tmp_path / name)])
        assert got.links == {str(tmp_path / name): ""}, name  # refused, not read again
        assert got.files == {str(tmp_path / "absent.conf"): None}
    plain = tmp_path / "plain"
    plain.write_text("server {}\n")
    assert run_lines(NGINX, dest, tmp_path, [str(good)], [str(plain)]) == stockread.StockReads(
        dest, {}, {str(plain): ""})  # a file through a symlink is not framed: read apart


def test_the_parser_leaves_out_what_does_not_check_out() -> None:
    frame = "\n".join(["@@sw file 3 " + "0" * 64, "YWJj", "@@sw end"])  # wrong sha256
    out = ("@@version\n1.0\n\n@@sw stock\n@@sw stock file /etc/nginx/nginx.conf\n"
           f"{frame}\n@@sw stock link /l {'y' * 256}\n")
    got = stockread.parse(out, "/d")
    assert got.files == {} and got.links == {"/l": ""}
    # Only the last section counts: earlier output (the version's) cannot stand in for it.
    forged = ("@@version\n\n@@sw stock\n@@sw stock link /l forged\n\n@@sw stock\n"
              "@@sw stock link /l real\n")
    assert stockread.parse(forged, "/d").links == {"/l": "real"}
    assert stockread.parse("@@version\n1.0\n", "/d") == stockread.StockReads("/d")
    # The version text stops at the section.
    facts = parse_facts("@@version\nnginx/1.22.1\n\n@@sw stock\n@@sw stock link /l x\n", "/d")
    assert facts.version_text == "nginx/1.22.1" and facts.stock.links == {"/l": "x"}
    big = readback.MAX_BYTES + 1
    assert stockread.parse(f"\n@@sw stock\n@@sw stock file /m\n@@sw file {big} {'0' * 64}\n"
                           "QQ==\n@@sw end\n", "/d").files == {}
