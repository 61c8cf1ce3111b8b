"""The deploy history and what ``sockwizard rollback`` restores (wizard.deploy.history).

Three layers: the semantics as a table over records (pure); whole sequences of deploys and
rollbacks over LocalRemote (a real /bin/sh runs the backup, release and restore scripts on
files in tmp_path; the live checks are fakes) checking the file's bytes after each step; and
the history read back over an InMemoryRemote, whose index is hostile. The real-sshd versions
are in tests/test_deploy_ssh.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.test_deploy_unit import FakeChecks
from wizard import deploy
from wizard.deploy import DeployOptions, RollbackOptions, apply
from wizard.deploy.history import (
    MAX_BYTES,
    Choice,
    NoChoice,
    Record,
    append_lines,
    parse,
    rollback_choice,
    stack,
)
from wizard.errors import ExitCode
from wizard.model import Backend, DeploySpec, ProxyKind
from wizard.remote import CommandResult, InMemoryRemote, LocalRemote, RunRequest

pytestmark = pytest.mark.timeout(60)

OLD = b"# hand-written before sockwizard\n"
DEST = "/etc/nginx/conf.d/sock.conf"


# --------------------------------------------------------------------------------------------
# The semantics, as a table over records
# --------------------------------------------------------------------------------------------


def rec(ident: str, outcome: str = "deployed", kind: str = "deploy",
        undoes: tuple[str, ...] = (), dest: str = DEST) -> Record:
    """A record whose file goes from state ``before-<id>`` to ``<id>`` (by name)."""
    return Record(ident, f"t-{ident}", kind, dest, outcome, {"undoes": list(undoes)})


# history -> (ids a plain rollback undoes, the deploy whose config comes back) or the refusal
SEMANTICS: list[tuple[str, list[Record], tuple[list[str], str | None] | str]] = [
    ("one deploy: back to the file before it",
     [rec("A")], (["A"], None)),
    ("two deploys: back to the first",
     [rec("A"), rec("B")], (["B"], "A")),
    ("a failed deploy (rolled back) is never undone nor re-applied",
     [rec("A"), rec("B"), rec("C", "rolled back")], (["B"], "A")),
    ("after rolling back B, the next rollback undoes A (not the failed C, not B)",
     [rec("A"), rec("B"), rec("C", "rolled back"), rec("R1", kind="rollback", undoes=("B",))],
     (["A"], None)),
    ("everything rolled back: nothing left",
     [rec("A"), rec("R1", kind="rollback", undoes=("A",))], "Nothing to roll back"),
    ("a rollback that itself failed changed nothing",
     [rec("A"), rec("B"), rec("R1", "rolled back", kind="rollback", undoes=("B",))],
     (["B"], "A")),
    ("unchanged and failed-before-change deploys are not changes",
     [rec("A"), rec("B", "unchanged"), rec("C", "failed"), rec("D", "rollback failed")],
     (["A"], None)),
    ("a deploy after a rollback: back to what was live then",
     [rec("A"), rec("B"), rec("R1", kind="rollback", undoes=("B",)), rec("C")], (["C"], "A")),
    ("a kept (failed, --no-rollback) config is never returned to: both undone",
     [rec("A"), rec("K", "kept"), rec("D")], (["D", "K"], "A")),
    ("--to undid several at once",
     [rec("A"), rec("B"), rec("C"), rec("R1", kind="rollback", undoes=("C", "B"))],
     (["A"], None)),
    ("another file's history does not count",
     [rec("A"), rec("X", dest="/etc/other.conf"),
      rec("R1", kind="rollback", undoes=("X",), dest="/etc/other.conf")], (["A"], None)),
]


@pytest.mark.parametrize(("name", "records", "expected"), SEMANTICS,
                         ids=[s[0] for s in SEMANTICS])
def test_what_a_rollback_undoes(name: str, records: list[Record],
                                expected: tuple[list[str], str | None] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(NoChoice, match=expected):
            rollback_choice(records)
        return
    choice = rollback_choice(records)
    assert ([r.id for r in choice.undo], choice.to.id if choice.to else None) == expected


TO: list[tuple[str, list[Record], str, list[str] | str]] = [
    ("back two deploys", [rec("A"), rec("B"), rec("C")], "A", ["C", "B"]),
    ("a unique prefix names it", [rec("A1234"), rec("B")], "A123", ["B"]),
    ("the current config", [rec("A"), rec("B")], "B", "already has the config"),
    ("a failed deploy", [rec("A"), rec("C", "rolled back"), rec("B")], "C", "never became"),
    ("a rolled-away deploy",
     [rec("A"), rec("B"), rec("R1", kind="rollback", undoes=("B",))], "B", "R1"),
    ("a kept config", [rec("A"), rec("K", "kept"), rec("B")], "K", "failed its checks"),
    ("a rollback", [rec("A"), rec("B"), rec("R1", kind="rollback", undoes=("B",))], "R1",
     "is a rollback"),
    ("an unknown id", [rec("A")], "zzzz", "No deploy"),
]


@pytest.mark.parametrize(("name", "records", "to", "expected"), TO, ids=[t[0] for t in TO])
def test_rollback_to(name: str, records: list[Record], to: str,
                     expected: list[str] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(NoChoice, match=expected):
            rollback_choice(records, to=to)
        return
    choice = rollback_choice(records, to=to)
    assert [r.id for r in choice.undo] == expected and choice.to is not None


def test_an_unknown_outcome_counts_only_when_the_next_state_starts_from_its_bytes() -> None:
    a, b = "a" * 64, "b" * 64
    pending = Record("P", "t", "deploy", DEST, "pending", {"sha256": a, "new_sha256": b})
    took = Record("N", "t", "deploy", DEST, "deployed", {"sha256": b})
    didnt = Record("N", "t", "deploy", DEST, "deployed", {"sha256": a})
    assert [r.id for r in stack([pending, took], DEST)] == ["P", "N"]
    assert [r.id for r in stack([pending, didnt], DEST)] == ["N"]
    assert [r.id for r in stack([pending], DEST, lambda d: b)] == ["P"]
    assert stack([pending], DEST, lambda d: a) == []


# --------------------------------------------------------------------------------------------
# Parsing a hostile index
# --------------------------------------------------------------------------------------------


def line(**kw: Any) -> str:
    return json.dumps({"id": "abcd01", "time": "20260101T000000.000Z", "dest": DEST,
                       "kind": "deploy", "outcome": "deployed", **kw})


def test_parse_skips_what_is_not_a_record_and_checks_every_field() -> None:
    text = "\n".join([
        '{"id": "abcd01", "dest": "/etc/x.conf", "outcome": "deployed"',  # torn
        "[1, 2]", "null", "not json", '{"a": ' * 100000 + "1",  # deep nesting
        line(id="x; rm -rf /"), line(dest="relative"), line(kind="evil"),
        line(id="ok1", sha256="not-a-sha", undoes=[1, "x", {"y": 1}], config_id=12,
             by="a" * 10000),
        "x" * 20000,
    ])
    (record,) = parse(text)
    assert record.id == "ok1" and record.get("sha256") is None
    assert record.undoes == ("x",) and record.get("config_id") is None
    assert len(record.get("by")) == 4096


def test_companions_are_checked_and_a_rollback_puts_each_path_back_as_before_the_oldest(
) -> None:
    """A record's ``companions`` (main config / default site, wizard.deploy.companions) are
    type-checked; a rollback undoing several deploys that changed one path puts it back as
    it was before the oldest of them, from as it is after the newest."""
    main, link = "/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/default"
    sha = {n: n * 64 for n in "abc"}
    first = [{"path": main, "link": False, "backup": "/b/1", "sha256": sha["a"],
              "new_sha256": sha["b"]},
             {"path": link, "link": True, "old_target": "../x", "off_cmd": "a2dissite x"},
             {"path": "relative"}, "junk", {"path": "/etc/y", "sha256": "no", "on_cmd": 5}]
    later = [{"path": main, "link": False, "backup": "/b/2", "sha256": sha["b"],
              "new_sha256": sha["c"]}]
    records = parse("\n".join([line(id="A", companions=first), line(id="B"),
                               line(id="C", companions=later), line(id="D")]))
    assert [len(r.get("companions") or ()) for r in records] == [3, 0, 1, 0]
    assert records[0].get("companions")[2] == {"path": "/etc/y", "link": False}
    assert rollback_choice(records).companions == []  # undoes D alone
    assert rollback_choice(records, to="B").companions == later  # undoes D and C
    everything = Choice(DEST, tuple(reversed(records)), None)
    assert everything.companions == [{**later[0], "backup": "/b/1", "sha256": sha["a"]},
                                     first[1], {"path": "/etc/y", "link": False}]


def test_a_later_line_of_the_same_run_wins_and_an_index_cut_by_tail_loses_its_first_line(
) -> None:
    text = line(id="r1", outcome="pending") + "\n" + line(id="r1", outcome="rolled back")
    (record,) = parse(text)
    assert record.outcome == "rolled back" and record.what == "failed, rolled back"
    filler = "x" * (MAX_BYTES - len(text) - 5)
    cut = line(id="zz")[10:] + "\n" + filler + "\n" + text  # a partial first line
    assert [r.id for r in parse(cut[-MAX_BYTES:])] == ["r1"]


def test_appending_after_a_torn_line_never_merges_two_records(tmp_path: Path) -> None:
    index = tmp_path / "index.jsonl"
    index.write_text(line(id="one") + "\n" + line(id="two")[:30])  # a crash mid-append
    script = "\n".join(append_lines(str(index), json.loads(line(id="three"))))
    assert LocalRemote().run(script).ok
    assert [r.id for r in parse(index.read_text())] == ["one", "three"]


# --------------------------------------------------------------------------------------------
# Whole sequences over LocalRemote: the file's bytes after each step
# --------------------------------------------------------------------------------------------


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dest = root / "etc" / "conf.d" / "sock.conf"
        self.dest.parent.mkdir(parents=True)
        self.dest.write_bytes(OLD)
        self.checks = FakeChecks()
        self.configs: dict[str, bytes] = {}

    def deploy(self, name: str, **kw: Any) -> deploy.DeployResult:
        """Deploy config ``name`` (a backend port of its own); remember its bytes."""
        self.checks.probe_ok = kw.pop("probe_ok", True)
        port = 3000 + sum(map(ord, name)) % 1000
        spec = DeploySpec(proxy=ProxyKind.NGINX, backends=(Backend("127.0.0.1", port),),
                          listen_address="127.0.0.1", listen_port=8080)
        options = DeployOptions(dest=str(self.dest), validate_cmd="true", reload_cmd="true",
                                backup_dir=str(self.root / "backups"),
                                state_dir=self.root / "state",
                                probe_url="http://127.0.0.1:8080", **kw)
        result = apply(LocalRemote(), spec, options, checks=self.checks.checks())
        if result.outcome is deploy.Outcome.DEPLOYED:
            self.configs[name] = self.dest.read_bytes()
        return result

    def rollback(self, **kw: Any) -> deploy.DeployResult:
        options = RollbackOptions(backup_dir=str(self.root / "backups"),
                                  state_dir=self.root / "state", probe=False, **kw)
        return deploy.rollback(LocalRemote(), "local", options, checks=self.checks.checks())

    def has(self) -> str:
        now = self.dest.read_bytes() if self.dest.exists() else None
        if now == OLD:
            return "OLD"
        return next((n for n, b in self.configs.items() if b == now), repr(now)[:60])

    def history(self) -> list[Record]:
        return deploy.host_history(LocalRemote(), str(self.root / "backups"))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_rollback_twice_never_reapplies_a_failed_or_rolled_away_config(site: Site) -> None:
    """A, B, C fails its probe (rolled back); rollback -> A; rollback -> the file before A;
    rollback -> nothing left. (Before the history had outcomes, the second rollback put B
    back: C's backup.)"""
    assert site.deploy("A").ok and site.deploy("B").ok
    failed = site.deploy("C", probe_ok=False)
    assert failed.exit_code == ExitCode.PROBE_ROLLED_BACK and site.has() == "B"
    steps = []
    for _ in range(3):
        result = site.rollback()
        steps.append((site.has(), int(result.exit_code)))
    assert steps == [("A", 0), ("OLD", 0), ("OLD", int(ExitCode.BAD_INPUT))]
    whats = [(r.kind, r.what) for r in site.history()]
    assert whats == [("deploy", "deployed"), ("deploy", "deployed"),
                     ("deploy", "failed, rolled back"), ("rollback", "rolled back"),
                     ("rollback", "rolled back")]
    assert all(r.get("by") and r.get("ssh_user") for r in site.history())


def test_rollback_to_then_rollback_and_a_new_deploy(site: Site) -> None:
    for name in "ABC":
        assert site.deploy(name).ok
    a, b, _ = (r.id for r in site.history())
    assert site.rollback(to=a).ok and site.has() == "A"
    refused = site.rollback(to=b)  # rolled away from: never re-applied
    assert refused.exit_code == ExitCode.BAD_INPUT and "cannot come back" in refused.title
    assert site.has() == "A"
    assert site.deploy("D").ok
    assert site.rollback().ok and site.has() == "A"
    assert site.rollback().ok and site.has() == "OLD"


def test_a_rollback_that_fails_is_recorded_and_changes_nothing(site: Site) -> None:
    assert site.deploy("A").ok and site.deploy("B").ok
    failed = site.rollback(validate_cmd="false")
    assert failed.exit_code == ExitCode.VALIDATE_ROLLED_BACK and site.has() == "B"
    assert site.history()[-1].what == "rollback failed, undone"
    assert site.rollback().ok and site.has() == "A"


def test_a_kept_config_is_skipped_by_rollback(site: Site) -> None:
    assert site.deploy("A").ok
    kept = site.deploy("K", probe_ok=False, rollback=False)
    assert kept.outcome is deploy.Outcome.KEPT
    site.configs["K"] = site.dest.read_bytes()
    assert site.deploy("D").ok
    assert site.rollback().ok and site.has() == "A"


def test_dry_run_shows_the_diff_and_changes_nothing(site: Site) -> None:
    assert site.deploy("A").ok and site.deploy("B").ok
    before, index = site.dest.read_bytes(), (site.root / "backups" / "index.jsonl").read_bytes()
    plan = site.rollback(dry_run=True)
    assert plan.outcome is deploy.Outcome.PLANNED and plan.ok, plan.message()
    assert "would undo deploy" in plan.title and plan.diff.count("\n-") >= 1
    assert site.dest.read_bytes() == before
    assert (site.root / "backups" / "index.jsonl").read_bytes() == index


# --------------------------------------------------------------------------------------------
# Over an InMemoryRemote: the history as the host holds it (hostile bytes included)
# --------------------------------------------------------------------------------------------


def memory_host(index: str, files: dict[str, bytes]) -> InMemoryRemote:
    remote = InMemoryRemote(name="mem", files={"/b/index.jsonl": index.encode(), **files})

    def tail(request: RunRequest) -> CommandResult:
        data = remote.files.get("/b/index.jsonl", b"")[-MAX_BYTES:]
        return CommandResult(request.command, 0, data.decode("utf-8", "replace"), "", 0.0)

    remote.on(r"tail -c \d+ -- /b/index.jsonl", tail)
    remote.on(r"readlink -f", stdout=f"real={DEST}\ntype=file 644\n")
    return remote


def test_history_and_a_dry_run_rollback_over_an_in_memory_host() -> None:
    from hashlib import sha256

    a, b = b"config A\n", b"config B\n"
    entry = {"dest": DEST, "kind": "deploy", "validate_cmd": "nginx -t",
             "reload_cmd": "nginx -s reload", "proxy": "nginx"}
    rows = [
        {**entry, "id": "aaaa01", "outcome": "deployed", "sha256": sha256(OLD).hexdigest(),
         "backup": "/b/1", "new_sha256": sha256(a).hexdigest()},
        {**entry, "id": "bbbb02", "outcome": "deployed", "sha256": sha256(a).hexdigest(),
         "backup": "/b/2", "new_sha256": sha256(b).hexdigest()},
        {**entry, "id": "cccc03", "outcome": "rolled back", "sha256": sha256(b).hexdigest(),
         "backup": "/b/3"},
    ]
    index = "\n".join(json.dumps(r) for r in rows) + '\n{"torn": '
    remote = memory_host(index, {DEST: b, "/b/1": OLD, "/b/2": a, "/b/3": b})
    records = deploy.host_history(remote, "/b")
    assert [(r.id, r.what) for r in records] == [
        ("aaaa01", "deployed"), ("bbbb02", "deployed"), ("cccc03", "failed, rolled back")]
    plan = deploy.rollback(remote, "mem", RollbackOptions(backup_dir="/b", dry_run=True,
                                                          probe=False))
    assert plan.outcome is deploy.Outcome.PLANNED, plan.message()
    assert "-config B" in plan.diff and "+config A" in plan.diff
    assert remote.files[DEST] == b
    # The host's copy of A's backup was damaged: refused, nothing changed.
    remote.files["/b/2"] = b"tampered"
    refused = deploy.rollback(remote, "mem", RollbackOptions(backup_dir="/b", probe=False))
    assert refused.exit_code == ExitCode.BAD_INPUT and "damaged" in refused.title
    assert remote.files[DEST] == b and not any("mv" in c for c in remote.commands)


def test_an_unknown_proxy_in_the_history_is_bad_input_not_a_traceback() -> None:
    rows = [{"dest": DEST, "id": "aaaa01", "outcome": "deployed", "backup": None,
             "proxy": "evil", "validate_cmd": "true", "reload_cmd": "true"}]
    remote = memory_host(json.dumps(rows[0]), {DEST: b"x"})
    result = deploy.rollback(remote, "mem", RollbackOptions(backup_dir="/b"))
    assert result.exit_code == ExitCode.BAD_INPUT and "unknown proxy" in result.title


def test_history_records_are_json_safe() -> None:
    record = parse(line(id="q1", undoes="old-style"))[0]
    assert json.loads(json.dumps(record.to_dict()))["undoes"] == ["old-style"]
    assert replace(record, outcome="kept").what == "failed, kept (--no-rollback)"


def test_an_index_others_can_write_is_refused_not_read(tmp_path: Path) -> None:
    """A rollback runs the commands recorded in the index, so an index (or its directory)
    that another user could write is refused before anything is parsed from it."""
    from wizard.deploy.backups import read_history
    from wizard.errors import BadInput
    from wizard.remote import LocalRemote

    backups = tmp_path / "backups"
    backups.mkdir(mode=0o755)
    (backups / "index.jsonl").write_text('{"id": "x", "kind": "deploy", "dest": "/etc/a"}\n')
    (backups / "index.jsonl").chmod(0o644)
    assert [r.id for r in read_history(LocalRemote(), str(backups), sudo=False)] == ["x"]
    for path, mode in ((backups / "index.jsonl", 0o666), (backups, 0o777)):
        path.chmod(mode)
        with pytest.raises(BadInput, match="can be written by other users"):
            read_history(LocalRemote(), str(backups), sudo=False)
        path.chmod(0o644 if path.is_file() else 0o755)
