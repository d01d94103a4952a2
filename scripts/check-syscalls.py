#!/usr/bin/env python3
"""Proves the NixOS unit's sandbox against what aqueduct really does. Runs a full pipeline,
`aqueduct run --once` (ingest and load, dead letters, the metrics endpoint scraped while it
runs) against the local stack and the stand-in API under `strace -f`, and once more against
the secure stack (scripts/stack up --secure: TLS and SASL to Kafka, TLS and a login to
Cassandra), then checks:

  - every system call made is one the unit's SystemCallFilter (read from nix/module.nix)
    allows, the groups resolved into calls by `systemd-analyze syscall-filter`;
  - every socket's address family is in RestrictAddressFamilies;
  - no memory is mapped or protected writable and executable (MemoryDenyWriteExecute).

Prints one table of the calls made (count, verdict) and exits 0 when all are allowed, 1 when
one is not, 2 when it cannot run (no strace, systemd-analyze, binaries or stack).

Usage: scripts/check-syscalls.py [--bin DIR] [--trace FILE]
  --bin DIR     where aqueduct and randomuser-standin are [$CARGO_TARGET_DIR/debug]
  --trace FILE  keep strace's output there [a temporary file, deleted]
Needs: strace, systemd-analyze (Debian: strace, systemd), Kafka and Cassandra on the ports
of scripts/stack (AQUEDUCT_TEST_KAFKA / AQUEDUCT_TEST_CASSANDRA override them), and the
secure stack (AQUEDUCT_SECURE_STACK_DIR, AQUEDUCT_TEST_SECURE_KAFKA /
AQUEDUCT_TEST_SECURE_CASSANDRA; without it the secure run is skipped, but with CI=true).
"""

import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "nix/module.nix"


def fail(message: str, code: int = 2) -> None:
    print(f"check-syscalls: {message}", file=sys.stderr)
    sys.exit(code)


def unit_list(key: str) -> list[str]:
    """The strings of `KEY = [ ... ];` in the module's serviceConfig."""
    match = re.search(rf"\b{key} = \[(.*?)\];", MODULE.read_text(), re.S)
    if not match:
        fail(f"no `{key} = [ ... ];` in {MODULE}")
    return re.findall(r'"([^"]+)"', match.group(1))


def group_calls(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a systemd group (`@system-service`), nested groups expanded."""
    seen = seen if seen is not None else set()
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= group_calls(item, seen) if item.startswith("@") else {item}
    return calls


def allowed_calls(filters: list[str]) -> set[str]:
    """systemd's semantics: the first entry not starting with `~` makes an allow-list; each
    `~` entry then removes its calls (nixpkgs renders the list as successive lines)."""
    allowed: set[str] = set()
    for entry in filters:
        if entry.startswith("~"):
            for item in entry[1:].split():
                allowed -= group_calls(item) if item.startswith("@") else {item}
        else:
            for item in entry.split():
                allowed |= group_calls(item) if item.startswith("@") else {item}
    return allowed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    fail(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def scrape_while(process: subprocess.Popen, port: int) -> int:
    """GET /metrics until the process ends; returns the number of answers."""
    answers = 0
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                r.read()
                answers += 1
        except OSError:
            pass
        time.sleep(0.2)
    return answers


def secure_settings() -> dict[str, str] | None:
    """The spec overrides that reach the secure stack, None when it has not been made."""
    stack = Path(os.environ.get("AQUEDUCT_SECURE_STACK_DIR", REPO / ".stack-secure"))
    secrets = stack / "secrets"
    if not (secrets / "made").exists():
        if os.environ.get("CI") == "true":
            fail(f"the secure stack is not there ({secrets}): scripts/stack up --secure")
        print(f"check-syscalls: SKIPPED the secure run: no secure stack at {secrets}")
        return None
    return dict(
        AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS=os.environ.get("AQUEDUCT_TEST_SECURE_KAFKA", "127.0.0.1:9094"),
        AQUEDUCT_KAFKA__TLS__CA_FILE=str(secrets / "ca.pem"),
        AQUEDUCT_KAFKA__SASL__MECHANISM="SCRAM-SHA-512",
        AQUEDUCT_KAFKA__SASL__USERNAME="aqueduct",
        AQUEDUCT_KAFKA__SASL__PASSWORD_FILE=str(secrets / "kafka-password"),
        AQUEDUCT_CASSANDRA__CONTACT_POINTS=f'["{os.environ.get("AQUEDUCT_TEST_SECURE_CASSANDRA", "127.0.0.1:9142")}"]',
        AQUEDUCT_CASSANDRA__TLS__CA_FILE=str(secrets / "ca.pem"),
        AQUEDUCT_CASSANDRA__USERNAME="aqueduct",
        AQUEDUCT_CASSANDRA__PASSWORD_FILE=str(secrets / "cassandra-password"),
    )


def traced_run(bin_dir: Path, trace: Path, secure: dict[str, str] | None = None) -> int:
    api_port, metrics_port = free_port(), free_port()
    standin = subprocess.Popen(
        [bin_dir / "randomuser-standin", f"127.0.0.1:{api_port}"], stdout=subprocess.DEVNULL
    )
    try:
        wait_listening(api_port, 10)
        run_id = f"{os.getpid()}_{int(time.time())}"
        env = dict(
            os.environ,
            AQUEDUCT_SOURCE__URL=f"http://127.0.0.1:{api_port}/api/?seed=syscalls&results=200&invalid=3",
            AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS=os.environ.get("AQUEDUCT_TEST_KAFKA", "127.0.0.1:9092"),
            AQUEDUCT_KAFKA__TOPIC=f"syscalls_{run_id}",
            AQUEDUCT_KAFKA__DEAD_LETTER_TOPIC=f"syscalls_{run_id}_dlq",
            AQUEDUCT_CASSANDRA__CONTACT_POINTS=f'["{os.environ.get("AQUEDUCT_TEST_CASSANDRA", "127.0.0.1:9042")}"]',
            AQUEDUCT_CASSANDRA__KEYSPACE=f"syscalls_{run_id}",
            AQUEDUCT_METRICS__ADDRESS=f"127.0.0.1:{metrics_port}",
            AQUEDUCT_LOG="info",
        )
        env.update(secure or {})
        command = ["strace", "-f", "-qq", "-o", str(trace), bin_dir / "aqueduct", "run", "--once"]
        aqueduct = subprocess.Popen([*command, REPO / "pipelines/users.toml"], env=env)
        scraper = threading.Thread(target=lambda: print(f"metrics answered {scrape_while(aqueduct, metrics_port)} scrapes"))
        scraper.start()
        code = aqueduct.wait(timeout=300)
        scraper.join()
        if code != 0:
            fail(f"aqueduct run --once exited {code} under strace (see its log above)", 1)
        return code
    finally:
        standin.terminate()
        standin.wait()


CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)\(")
SOCKET = re.compile(r"^\d+\s+socket(?:pair)?\((AF_[A-Z0-9]+)")
WX_MAP = re.compile(r"^\d+\s+(?:mmap|mprotect|pkey_mprotect)\(.*PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    parser.add_argument("--bin", type=Path, default=Path(target) / "debug")
    parser.add_argument("--trace", type=Path)
    args = parser.parse_args()
    for tool in ("strace", "systemd-analyze"):
        if not shutil.which(tool):
            fail(f"{tool} is not installed (Debian: apt-get install strace systemd)")
    for binary in ("aqueduct", "randomuser-standin"):
        if not (args.bin / binary).exists():
            fail(f"no {args.bin / binary}: build first (cargo build --workspace)")

    filters = unit_list("SystemCallFilter")
    families = set(unit_list("RestrictAddressFamilies"))
    allowed = allowed_calls(filters)

    trace = args.trace or Path(tempfile.mkstemp(prefix="aqueduct-strace-")[1])
    try:
        traced_run(args.bin, trace)
        lines = trace.read_text(errors="replace").splitlines()
        if (secure := secure_settings()) is not None:
            traced_run(args.bin, trace, secure)
            lines += trace.read_text(errors="replace").splitlines()
        counts: collections.Counter[str] = collections.Counter()
        used_families: set[str] = set()
        wx = []
        for line in lines:
            if "resumed>" in line:
                continue  # the first half of the call was counted
            if m := CALL.match(line):
                counts[m.group(1)] += 1
            if m := SOCKET.match(line):
                used_families.add(m.group(1))
            if WX_MAP.match(line):
                wx.append(line)
    finally:
        if not args.trace:
            trace.unlink(missing_ok=True)

    denied = sorted(call for call in counts if call not in allowed)
    print(f"SystemCallFilter = {' '.join(filters)} (systemd {systemd_version()}: {len(allowed)} calls allowed)")
    print(f"{'system call':<24}{'calls':>10}  verdict")
    for call, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{call:<24}{n:>10}  {'allowed' if call in allowed else 'DENIED'}")
    print(f"{len(counts)} distinct calls, {sum(counts.values())} in all")
    problems = []
    if denied:
        problems.append(f"calls the filter denies: {', '.join(denied)}")
    if used_families - families:
        problems.append(f"socket families outside RestrictAddressFamilies: {', '.join(sorted(used_families - families))}")
    if wx:
        problems.append(f"writable and executable mappings (MemoryDenyWriteExecute): {wx[0]}")
    print(f"socket families used: {', '.join(sorted(used_families))} (allowed: {', '.join(sorted(families))})")
    for p in problems:
        print(f"check-syscalls: {p}", file=sys.stderr)
    if not problems:
        print("check-syscalls: every call, socket family and mapping is allowed by the unit")
    return 1 if problems else 0


def systemd_version() -> str:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if out else "?"


if __name__ == "__main__":
    sys.exit(main())
