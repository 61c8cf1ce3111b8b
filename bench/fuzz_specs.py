"""The long run of tests/test_spec_properties.py: N hypothesis examples per property.

    python bench/fuzz_specs.py [N] [--checker-sample M] [--seed S]

Flags and TOML files of any type go through ``wizard.cli.main`` (exit 0 or 2, never a
traceback); accepted specs at the edges of the model are rendered and compared with a plain
twin's directive structure; M of them per proxy go through the real checkers (nginx -t,
apache2 -t, caddy validate, node --check). Prints counts per property; exits 1 on the first
counterexample (hypothesis prints it, shrunk). Not a test and asserts no time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests.spec_strategies import (  # noqa: E402
    accepted_specs,
    check_outcome,
    directive_shape,
    plain_twin,
    render_argv,
    run_cli,
    toml_documents,
)
from tests.test_render_checkers import check  # noqa: E402
from wizard.model import DeploySpec, ProxyKind  # noqa: E402
from wizard.render import render  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=2000, help="examples per property")
    ap.add_argument("--checker-sample", type=int, default=25,
                    help="accepted specs per proxy sent to the real checker")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    counts: Counter[str] = Counter()
    opts = settings(max_examples=args.n, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

    def seeded(f: Any) -> Any:
        return seed(args.seed)(f) if args.seed is not None else f

    @seeded
    @opts
    @given(render_argv())
    def flags(argv: list[str]) -> None:
        code, out, err = run_cli(argv)
        check_outcome(code, out, err)
        counts[f"flags exit {code}"] += 1

    @seeded
    @opts
    @given(toml_documents())
    def toml(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "spec.toml"
            f.write_bytes(data)
            code, out, err = run_cli(["render", "--spec", str(f)])
        check_outcome(code, out, err)
        counts[f"toml exit {code}"] += 1

    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=x", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        tls = (str(cert), str(key))
        started = time.monotonic()
        flags()
        toml()
        for proxy in ProxyKind:
            run_proxy(proxy, tls, opts, args.checker_sample, seeded, counts)
    for name, n in sorted(counts.items()):
        print(f"{name:32} {n}")
    print(f"total {sum(counts.values())} examples in {time.monotonic() - started:.0f} s")
    return 0


def run_proxy(proxy: ProxyKind, tls: tuple[str, str], opts: settings, sample: int,
              seeded: Callable[[Any], Any], counts: Counter[str]) -> None:
    @seeded
    @opts
    @given(accepted_specs(proxy, tls))
    def shape(spec: DeploySpec) -> None:
        with tempfile.TemporaryDirectory() as w:
            assert directive_shape(proxy, render(spec).text, Path(w)) == \
                directive_shape(proxy, render(plain_twin(spec, tls)).text, Path(w))
        counts[f"{proxy.value} same directives"] += 1

    @seeded
    @settings(opts, max_examples=sample)
    @given(accepted_specs(proxy, tls))
    def checker(spec: DeploySpec) -> None:
        with tempfile.TemporaryDirectory() as w:
            ok, output = check(spec, render(spec).text, Path(w))
        assert ok, output
        counts[f"{proxy.value} real checker ok"] += 1

    shape()
    checker()


if __name__ == "__main__":
    raise SystemExit(main())
