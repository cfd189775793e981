#!/usr/bin/env python3
"""Benchmark chatapp against the Node socket.io reference server.

    npm ci --prefix benchmarks                    # once: ws + socket.io for the harness
    python3 benchmarks/run.py --scenario fanout --runs 3

For every run and variant it starts a fresh server per target (chatapp with a
new temporary SQLite db and rate limits raised out of the way, or
reference_server.js), runs the same loadgen.js scenario against it, and stops
it. Targets are interleaved (chatapp, node, chatapp, node, ...) so drift on the
machine hits both alike. Servers are pinned to --server-cpus and the load
generator to --loadgen-cpus with taskset when it exists.

Prints a table of medians and the chatapp/node ratio, and writes everything to
benchmarks/results/<scenario>-<time>.json. See benchmarks/README.md.

Standard library only, so any python3 can run it; --python picks the
interpreter that runs chatapp.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.js"
REFERENCE = BENCH_DIR / "reference_server.js"
#: The fixed stack alone, doing what the reference does (the ``floor`` target).
FLOOR = "stack_floor"
URL_RE = re.compile(r"https?://(localhost|\d+\.\d+\.\d+\.\d+):(\d+)")
RAISED_LIMITS = [
    "--message-burst",
    "1000000",
    "--message-rate",
    "1000000",
    "--event-burst",
    "1000000",
    "--event-rate",
    "1000000",
    "--ip-burst",
    "1000000000",
    "--ip-rate",
    "1000000000",
    "--max-connections-per-ip",
    "0",
    "--max-tcp-connections-per-ip",
    "0",
]

# Loadgen options per scenario. Each variant of a scenario is run against every
# target. duration/warmup are seconds; see loadgen.js --help for the rest.
SCENARIOS: dict[str, dict[str, Any]] = {
    "smoke": {
        "doc": "CI correctness check: 20 clients, 2 rooms, a few seconds; asserts, never measures speed",
        "loadgen": {
            "clients": 20,
            "rooms": 2,
            "senders": 2,
            "mode": "closed",
            "duration": 2,
            "warmup": 1,
            "drain": 5,
        },
        "deflate": "both",
        "runs": 1,
    },
    "fanout": {
        "doc": "1 room x 500 clients, 5 closed-loop senders: broadcast throughput",
        "loadgen": {
            "clients": 500,
            "rooms": 1,
            "senders": 5,
            "mode": "closed",
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "both",
    },
    "rooms": {
        "doc": "1000 clients in 50 rooms of 20, 1 message/s per room: latency at realistic load",
        "loadgen": {
            "clients": 1000,
            "rooms": 50,
            "senders": 5,
            "mode": "rate",
            "rate": 1,
            "duration": 30,
            "warmup": 3,
        },
        "deflate": "off",
    },
    "rooms-saturated": {
        "doc": "1000 clients in 50 rooms of 20, 2 closed-loop senders per room: many-room throughput",
        "loadgen": {
            "clients": 1000,
            "rooms": 50,
            "senders": 2,
            "mode": "closed",
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "off",
    },
    "rooms-small": {
        "doc": "1000 clients in 100 rooms of 10, 1 closed-loop sender per room: small-room throughput",
        "loadgen": {
            "clients": 1000,
            "rooms": 100,
            "senders": 1,
            "mode": "closed",
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "off",
    },
    "follow": {
        "doc": "1000 clients each in 10 of 100 rooms (one by connecting, 9 by subscribing; "
        "Node: one socket joining 10 rooms), 1 closed-loop sender per room: many rooms per connection",
        "loadgen": {
            "clients": 1000,
            "rooms": 100,
            "follow": 10,
            "senders": 1,
            "mode": "closed",
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "off",
    },
    "idle": {
        "doc": "10 000 idle connections in 100 rooms: connect rate and server memory per connection",
        "loadgen": {
            "clients": 10000,
            "rooms": 100,
            "mode": "idle",
            "duration": 5,
            "warmup": 0,
            "settle": 3,
            "connect-concurrency": 200,
            "connect-timeout": 300,
        },
        "deflate": "off",
    },
    "reconnect": {
        "doc": "10 000 connections in 100 rooms, 1 message/s per room for a while, then every "
        "connection dropped at once (a server restart) and reconnected, catching up with since",
        "loadgen": {
            "clients": 10000,
            "rooms": 100,
            "senders": 1,
            "mode": "rate",
            "rate": 1,
            "duration": 5,
            "warmup": 1,
            "settle": 1,
            "connect-concurrency": 200,
            "connect-timeout": 300,
            "reconnect": True,
        },
        "deflate": "off",
    },
    "fairness": {
        "doc": "a bystander's message-ack latency while 20 connections of one address ask for "
        "history pages of 100 long messages at their allowed rate: chatapp without and with them",
        "loadgen": {
            # The bystanders: 2 clients in a room, one sending 10 messages/s, from 127.0.0.2.
            "clients": 2,
            "rooms": 1,
            "senders": 1,
            "mode": "rate",
            "rate": 10,
            "duration": 20,
            "warmup": 3,
            "local-address": "127.0.0.2",
            # The other address (127.0.0.1): 100 messages of 2000 emoji (8 KB each, a page
            # of them about 800 KB), then pages of them asked for as fast as the server
            # allows (20 per second per connection).
            "preload": 100,
            "preload-size": 2000,
            "preload-char": "\U0001f600",
            "hog-limit": 100,
            "hog-rate": 20,
        },
        "variants": {"calm": {"hoggers": 0}, "attack": {"hoggers": 20}},
        # The reference keeps no history (its pages are empty): nothing to compare.
        "targets": ["chatapp"],
        # chatapp's own limits, but for the preloading sender's message rate.
        "chatapp_limits": ["--message-burst", "1000", "--message-rate", "1000"],
        "deflate": "off",
    },
    "cluster": {
        "doc": "2 chatapp processes sharing Redis (clients of every room spread over both) vs 1 process",
        "loadgen": {
            "clients": 1000,
            "rooms": 50,
            "senders": 2,
            "mode": "closed",
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "off",
    },
    "cluster-calm": {
        "doc": "the cluster's rooms at a fixed rate, about half of what 2 processes sustain here: "
        "local and remote delivery latency, and the server CPU a remote delivery adds, 2 processes vs 1",
        "loadgen": {
            "clients": 1000,
            "rooms": 50,
            "senders": 2,
            "mode": "rate",
            "rate": 22,
            "duration": 15,
            "warmup": 3,
        },
        "deflate": "off",
    },
}
CLUSTER_SCENARIOS = ("cluster", "cluster-calm")

# Metrics shown in the table (dotted paths into loadgen's JSON, plus the
# derived ones added by derive()). Everything numeric goes into the JSON file.
TABLE_METRICS = [
    "connected",
    "connect_rate",
    "connect_ms.p99",
    "sent",
    "acked",
    "lost",
    "duplicates",
    "deflate_negotiated",
    "msgs_per_s",
    "deliveries_per_s",
    "latency_ms.p50",
    "latency_ms.p90",
    "latency_ms.p99",
    "latency_ms.max",
    "ack_latency_ms.p50",
    "ack_latency_ms.p99",
    "ack_latency_ms.max",
    "hog.pages_per_s",
    "hog.limited_per_s",
    "server.cpu_util_measure",
    "deliveries_per_server_cpu_s",
    "server_cpu_us_per_delivery",
    "latency_local_ms.p50",
    "latency_local_ms.p99",
    "latency_remote_ms.p50",
    "latency_remote_ms.p99",
    "remote_share",
    "remote_p99_over_local_p99",
    "extra_cpu_us_per_remote_delivery",
    "server.rss_peak_kb",
    "server.mem_per_conn_bytes",
    "loadgen.cpu_util_measure",
    "server.cpu_util_connect",
    "loadgen.cpu_util_connect",
    "reconnect.rate",
    "reconnect.s",
    "reconnect.ms.p50",
    "reconnect.ms.p99",
    "reconnect.server_cpu_s",
    "reconnect.server_cpu_util",
    "reconnect.wrong_history",
    "loadgen.event_loop_delay_ms.p99",
    "machine.other_cpu_util",
]


class HarnessError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ servers --


@dataclass
class Server:
    """A server process we started, with its output copied to a log file."""

    name: str
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    lines: list[str] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = self.log_path.open("w", encoding="utf-8", errors="replace")
        logf.write("$ " + " ".join(self.cmd) + "\n")
        logf.flush()
        # Own process group, so stop() also reaches any workers it forks.
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        found: queue.Queue[str] = queue.Queue()
        lock = threading.Lock()

        def pump(stream: Any) -> None:
            # Keep draining for the server's whole life so a full pipe never blocks it.
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                with lock:
                    logf.write(line)
                    logf.flush()
                    self.lines.append(line.rstrip())
                    del self.lines[:-50]
                m = URL_RE.search(line)
                if m and m.group(2) != "0":
                    host = "127.0.0.1" if m.group(1) == "localhost" else m.group(1)
                    found.put(f"http://{host}:{m.group(2)}")
            stream.close()

        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=pump, args=(stream,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.url = found.get(timeout=0.1)
                return
            except queue.Empty:
                if self.proc.poll() is not None:
                    time.sleep(0.2)  # let the pumps copy the last lines
                    raise HarnessError(
                        f"{self.name} exited with code {self.proc.returncode} before listening:\n  "
                        + "\n  ".join(self.lines[-15:])
                        + f"\n  (command: {' '.join(self.cmd)})"
                    )
        self.stop()
        raise HarnessError(
            f"{self.name} printed no http://HOST:PORT line within {timeout:.0f}s; see {self.log_path}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def rejects_flag(line: str, flag: str) -> bool:
    """Whether an argparse/click usage error on this line names the flag."""
    return flag in line and ("unrecognized arguments" in line or "no such option" in line.lower())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping(url: str) -> bool:
    m = re.match(r"redis://(?:[^@/]*@)?([^:/]+)(?::(\d+))?", url)
    if not m:
        return False
    try:
        with socket.create_connection((m.group(1), int(m.group(2) or 6379)), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Netns:
    """Hosts of their own on this machine, for --netns: a network namespace per chatapp
    process and one for Redis, each joined by a veth pair to a bridge in the root
    namespace, where the load generator stays. What one process publishes crosses veth
    and the bridge to Redis and on to the other, as across a LAN's switch (without a
    wire's latency). Needs root and iproute2's `ip`."""

    BRIDGE = "chbench0"
    NET = "10.77.0"

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts

    def namespace(self, host: str) -> str:
        return f"chatapp-bench-{host}"

    def address(self, host: str) -> str:
        return f"{self.NET}.{11 + self.hosts.index(host)}"

    def wrap(self, host: str, cmd: list[str]) -> list[str]:
        # `ip netns exec` execs the command: the pid we get is the command's own.
        return ["ip", "netns", "exec", self.namespace(host), *cmd]

    def up(self) -> None:
        if not shutil.which("ip"):
            raise HarnessError("--netns needs iproute2's `ip`")
        self.down()  # what an interrupted run left
        self.ip("link", "add", self.BRIDGE, "type", "bridge")
        self.ip("addr", "add", f"{self.NET}.1/24", "dev", self.BRIDGE)
        self.ip("link", "set", self.BRIDGE, "up")
        for host in self.hosts:
            ns, veth = self.namespace(host), f"chb-{host}"
            self.ip("netns", "add", ns)
            self.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.ip("link", "set", veth, "master", self.BRIDGE, "up")
            self.ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            self.ip("-n", ns, "link", "set", "eth0", "up")
            self.ip("-n", ns, "link", "set", "lo", "up")
        log(
            "network namespaces: "
            + ", ".join(f"{self.namespace(h)} {self.address(h)}" for h in self.hosts)
            + f", load generator on {self.BRIDGE} {self.NET}.1"
        )

    def down(self) -> None:
        for host in self.hosts:
            self.ip("netns", "del", self.namespace(host), check=False)
        self.ip("link", "del", self.BRIDGE, check=False)

    @staticmethod
    def ip(*args: str, check: bool = True) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise HarnessError(f"ip {' '.join(args)}: {done.stderr.strip()}")


# -------------------------------------------------------------- the runner --


def python_env(*path: str) -> dict[str, str]:
    """The environment of a Python server: imports from ``path`` (empty entries left out),
    output unbuffered so that its URL line reaches our pipe at once."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    return env


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.results_dir = Path(args.results_dir)
        self.log_dir = self.results_dir / f"logs-{self.stamp}"
        self.tmp = Path(tempfile.mkdtemp(prefix="chatapp-bench-"))
        self.pin = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2 and not args.no_pin
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.started: list[Server] = []
        self.redis_server: Server | None = None
        self.redis_url_private = ""
        self.counter = 0
        self.netns = Netns(["a", "b", "redis"]) if args.netns else None

    # -- commands

    def pinned(self, cpus: str, cmd: list[str]) -> list[str]:
        # taskset execs the command, so the pid we get is the server's own.
        return ["taskset", "-c", cpus, *cmd] if self.pin else cmd

    def chatapp_server(
        self, label: str, db: str, redis_url: str | None = None, host: str | None = None
    ) -> Server:
        """A chatapp process; with ``host``, in that network namespace (--netns)."""
        a = self.args
        limits = SCENARIOS[a.scenario].get("chatapp_limits", RAISED_LIMITS)
        cmd = [a.python, "-m", a.chatapp_module, "--port", "0", "--db", db, *limits]
        if redis_url:
            cmd += ["--redis-url", redis_url]
        cmd += a.chatapp_arg
        if host and self.netns:
            cmd = self.netns.wrap(host, [*cmd, "--host", self.netns.address(host)])
        env = python_env(str(a.chatapp_root), os.environ.get("PYTHONPATH", ""))
        return Server(
            label, self.pinned(a.server_cpus, cmd), Path(a.chatapp_root), env, self.next_log(label)
        )

    def floor_server(self, label: str) -> Server:
        """The stack's floor (``stack_floor.py``), on chatapp's Python."""
        cmd = [self.args.python, "-m", FLOOR, "--port", "0"]
        env = python_env(str(BENCH_DIR))
        # From where chatapp runs, so that a relative --python means the same for both.
        cwd = Path(self.args.chatapp_root)
        return Server(
            label, self.pinned(self.args.server_cpus, cmd), cwd, env, self.next_log(label)
        )

    def node_server(self, label: str) -> Server:
        cmd = ["node", str(REFERENCE), "--port", "0"]
        if self.args.node_deflate is not None:
            cmd.append(f"--deflate={self.args.node_deflate}")
        return Server(
            label,
            self.pinned(self.args.server_cpus, cmd),
            BENCH_DIR,
            dict(os.environ),
            self.next_log(label),
        )

    def next_log(self, label: str) -> Path:
        self.counter += 1
        return self.log_dir / f"{self.counter:03d}-{label}.log"

    # -- preflight

    def check_prerequisites(self, targets: list[str]) -> None:
        if not shutil.which("node"):
            raise HarnessError("node is not on PATH")
        if not (BENCH_DIR / "node_modules" / "ws").is_dir():
            raise HarnessError(
                "benchmarks/node_modules is missing: run `npm ci --prefix benchmarks` first"
            )
        if any(t.startswith("chatapp") for t in targets):
            a = self.args
            probe = subprocess.run(
                [
                    a.python,
                    "-c",
                    f"import importlib.util, sys; sys.exit(importlib.util.find_spec({a.chatapp_module!r}) is None)",
                ],
                cwd=a.chatapp_root,
                env={**os.environ, "PYTHONPATH": str(a.chatapp_root)},
                capture_output=True,
                timeout=60,
                check=False,
            )
            if probe.returncode != 0:
                raise HarnessError(
                    f"`{a.python} -m {a.chatapp_module}` is not importable from {a.chatapp_root} "
                    "(chatapp not merged into this branch yet? wrong --python?). "
                    "Use --targets node to test the harness alone."
                )
        self.raise_fd_limit()

    def raise_fd_limit(self) -> None:
        # Children inherit it: loadgen and each server hold one fd per client.
        need = int(self.scenario_opts().get("clients", 0)) + 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = max(soft, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
        except (ValueError, OSError):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log(
                f"warning: could not raise the open-files limit to {target} (hard limit {hard}); raise `ulimit -n`"
            )

    def scenario_opts(self, variant: str | None = None) -> dict[str, Any]:
        scenario = SCENARIOS[self.args.scenario]
        opts = dict(scenario["loadgen"])
        opts.update(scenario.get("variants", {}).get(variant, {}))
        for key in ("clients", "rooms", "senders", "rate", "duration", "warmup"):
            value = getattr(self.args, key)
            if value is not None:
                opts[key] = value
        return opts

    # -- one measurement

    def run_loadgen(
        self, urls: list[str], pids: list[int], deflate: bool, label: str, variant: str
    ) -> dict[str, Any]:
        opts = self.scenario_opts(variant)
        cmd = [
            "node",
            str(LOADGEN),
            "--url",
            ",".join(urls),
            "--label",
            label,
            "--clk-tck",
            str(self.clk_tck),
        ]
        cmd += ["--server-pid", ",".join(str(p) for p in pids)]
        for key, value in opts.items():
            cmd += [f"--{key}"] if value is True else [f"--{key}", str(value)]
        if deflate:
            cmd.append("--deflate")
        connects = 2 if opts.get("reconnect") else 1
        budget = connects * float(opts.get("connect-timeout", 120)) + float(opts.get("settle", 1))
        budget += (
            float(opts.get("warmup", 2))
            + float(opts["duration"])
            + float(opts.get("drain", 5))
            + 60
        )
        log_path = self.next_log(f"loadgen-{label}")
        with log_path.open("w") as errf:
            try:
                proc = subprocess.run(
                    self.pinned(self.args.loadgen_cpus, cmd),
                    cwd=BENCH_DIR,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    stdin=subprocess.DEVNULL,
                    timeout=budget,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise HarnessError(
                    f"loadgen did not finish within {budget:.0f}s; see {log_path}"
                ) from None
        lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise HarnessError(f"loadgen exited {proc.returncode} without a result; see {log_path}")
        result: dict[str, Any] = json.loads(lines[-1])
        derive(result)
        return result

    def measure(self, target: str, deflate: bool, label: str, variant: str) -> dict[str, Any]:
        servers = self.start_target(target)
        try:
            time.sleep(0.5)  # let the server finish starting up before sampling its RSS
            return self.run_loadgen(
                [s.url for s in servers], [s.pid for s in servers], deflate, label, variant
            )
        finally:
            for s in servers:
                s.stop()

    def start_target(self, target: str) -> list[Server]:
        servers: list[Server] = []
        try:
            if target == "node":
                servers.append(self.node_server("node"))
            elif target == "floor":
                servers.append(self.floor_server("floor"))
            elif target == "chatapp":
                servers.append(
                    self.chatapp_server("chatapp", str(self.tmp / f"chatapp-{self.counter}.db"))
                )
            elif target in ("chatapp-1proc", "chatapp-2proc"):
                n = 1 if target == "chatapp-1proc" else 2
                db = self.args.cluster_db or str(self.tmp / f"cluster-{self.counter}.db")
                redis_url = self.ensure_redis()
                for i in range(n):
                    host = "ab"[i]
                    servers.append(self.chatapp_server(f"{target}-{i}", db, redis_url, host))
            else:
                raise HarnessError(f"unknown target {target}")
            # Start one at a time: several processes creating one fresh SQLite
            # schema at once is a startup race we do not want to benchmark.
            for s in servers:
                self.started.append(s)
                try:
                    s.start()
                except HarnessError as e:
                    if any(rejects_flag(line, "--redis-url") for line in s.lines):
                        raise HarnessError(
                            f"{e}\n  chatapp's usage error names --redis-url: it probably has no Redis support yet"
                        ) from None
                    raise
            return servers
        except BaseException:
            for s in servers:
                s.stop()
            raise

    def ensure_redis(self) -> str:
        """The Redis the cluster shares: --redis-url, or one of our own if nothing answers
        there; with --netns, one of our own in its namespace."""
        if self.netns:
            netns = self.netns
            return self.private_redis(
                netns.address("redis"), 6379, lambda cmd: netns.wrap("redis", cmd)
            )
        url: str = self.args.redis_url
        if redis_ping(url):
            return url
        if self.redis_server is None:
            log(f"no Redis at {url}; starting a private redis-server")
        return self.private_redis("127.0.0.1", free_port())

    def private_redis(
        self, host: str, port: int, wrap: Callable[[list[str]], list[str]] = list
    ) -> str:
        """A redis-server of our own without persistence at ``host:port``, started once."""
        if self.redis_server is None:
            if not shutil.which("redis-server"):
                raise HarnessError("no Redis to use, and redis-server is not installed")
            cmd = ["redis-server", "--bind", host, "--port", str(port), "--save", ""]
            cmd += ["--appendonly", "no", "--protected-mode", "no"]
            self.redis_server = Server(
                "redis", wrap(cmd), self.tmp, dict(os.environ), self.next_log("redis")
            )
            # redis-server does not print a URL; wait for it to answer instead.
            self.redis_server.proc = subprocess.Popen(
                self.redis_server.cmd,
                cwd=self.tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.redis_url_private = f"redis://{host}:{port}/0"
            for _ in range(50):
                if redis_ping(self.redis_url_private):
                    break
                time.sleep(0.1)
            else:
                raise HarnessError(f"private redis-server at {host}:{port} did not start")
        return self.redis_url_private

    def cleanup(self) -> None:
        for s in self.started:
            s.stop()
        if self.redis_server:
            self.redis_server.stop()
        if self.netns:
            self.netns.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the whole scenario

    def run(self) -> int:
        a = self.args
        scenario = SCENARIOS[a.scenario]
        # The ratio column is targets[0]/targets[1]: chatapp/node, or 2 processes/1 process.
        if a.scenario in CLUSTER_SCENARIOS:
            targets = ["chatapp-2proc", "chatapp-1proc"]
            if self.netns:
                self.netns.up()
        elif a.netns:
            raise HarnessError(f"--netns is for {', '.join(CLUSTER_SCENARIOS)}")
        elif a.targets:
            targets = a.targets.split(",")
        else:
            targets = list(scenario.get("targets", ["chatapp", "node"]))
        deflate_mode = a.deflate or scenario["deflate"]
        # A scenario's variants: its own (loadgen options), or deflate off / on.
        if "variants" in scenario:
            deflate = deflate_mode == "on"
            variants = [(name, deflate) for name in scenario["variants"]]
        else:
            variants = [
                ("deflate-on" if d else "deflate-off", d)
                for d in {"off": [False], "on": [True], "both": [False, True]}[deflate_mode]
            ]
        runs = a.runs if a.runs is not None else scenario.get("runs", 3)
        self.check_prerequisites(targets)
        log(f"scenario {a.scenario}: {scenario['doc']}")
        log(
            f"targets {targets}, runs {runs}, deflate {deflate_mode}, pinning {'servers->' + a.server_cpus + ' loadgen->' + a.loadgen_cpus if self.pin else 'off'}"
        )

        measurements: list[dict[str, Any]] = []
        failures: list[str] = []
        for run in range(1, runs + 1):
            for variant, deflate in variants:
                for target in targets:  # interleaved: A, B, A, B, ...
                    label = f"{a.scenario}-{variant}-{target}-run{run}"
                    log(f"run {run}/{runs} {variant} {target} ...")
                    result = self.measure(target, deflate, label, variant)
                    problems = correctness_problems(result, self.scenario_opts(variant))
                    measurements.append(
                        {
                            "run": run,
                            "variant": variant,
                            "target": target,
                            "problems": problems,
                            "result": result,
                        }
                    )
                    log(
                        "  "
                        + one_line(result)
                        + (f"  PROBLEMS: {'; '.join(problems)}" if problems else "")
                    )
                    failures += [f"{label}: {p}" for p in problems]

        summary = summarise(measurements, targets)
        if a.scenario in CLUSTER_SCENARIOS:
            add_remote_cost(summary, targets)
        print_table(a.scenario, summary, targets)
        if "variants" in scenario and len(targets) == 1:
            print_variants(a.scenario, summary, targets[0])
        saturated = [
            f"{m['variant']} {m['target']} run{m['run']}"
            for m in measurements
            if (m["result"].get("loadgen") or {}).get("cpu_util_measure", 0) > 0.9
        ]
        busy = [
            f"{m['variant']} {m['target']} run{m['run']} ({(m['result'].get('machine') or {}).get('other_cpu_util')})"
            for m in measurements
            if (m["result"].get("machine") or {}).get("other_cpu_util", 0) > 0.3
        ]
        if busy:
            print(
                "\nnote: something besides the server and the load generator used >0.3 of a core in: "
                + ", ".join(busy)
                + ".\n      Another workload probably competed with these runs: rerun them on a quiet machine."
            )
        if saturated:
            print(
                "\nnote: the load generator used >90% of its core in: "
                + ", ".join(saturated)
                + ".\n      Those throughput numbers may be limited by the load generator (a lower bound for that server)."
            )
        out = self.write_results(measurements, summary, targets, runs, deflate_mode)
        print(f"\nresults: {out}\nserver and loadgen logs: {self.log_dir}")
        if failures:
            print("\nCORRECTNESS FAILURES:\n  " + "\n  ".join(failures))
            return 1
        print(
            "\ncorrectness: all runs connected every client, acked every message, lost 0, duplicated 0"
        )
        return 0

    def write_results(
        self,
        measurements: list[dict[str, Any]],
        summary: dict[str, Any],
        targets: list[str],
        runs: int,
        deflate: str,
    ) -> Path:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / f"{self.args.scenario}-{self.stamp}.json"
        node_version = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        doc = {
            "scenario": self.args.scenario,
            "description": SCENARIOS[self.args.scenario]["doc"],
            "started": self.stamp,
            "targets": targets,
            "ratio": f"{targets[0]}/{targets[1]}" if len(targets) > 1 else None,
            "runs": runs,
            "deflate": deflate,
            "loadgen_options": self.scenario_opts(),
            "variants": SCENARIOS[self.args.scenario].get("variants"),
            "machine": {
                "cpus": os.cpu_count(),
                "pinned": self.pin,
                "server_cpus": self.args.server_cpus if self.pin else None,
                "loadgen_cpus": self.args.loadgen_cpus if self.pin else None,
                "node": node_version,
                "chatapp_python": self.args.python,
                "chatapp_module": self.args.chatapp_module,
            },
            "summary": summary,
            "measurements": measurements,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path


# ------------------------------------------------------------ evaluation --


def derive(r: dict[str, Any]) -> None:
    """Add metrics computed from loadgen's raw numbers."""
    server = r.get("server") or {}
    cpu = server.get("cpu_s_measure")
    if cpu and r.get("deliveries_per_s") is not None and r.get("measured_s"):
        # Work per unit of server CPU: comparable even when a server is not saturated.
        deliveries = r["deliveries_per_s"] * r["measured_s"]
        r["deliveries_per_server_cpu_s"] = round(deliveries / cpu, 1)
        if deliveries:
            r["server_cpu_us_per_delivery"] = round(cpu * 1e6 / deliveries, 3)
    local, remote = r.get("latency_local_ms") or {}, r.get("latency_remote_ms") or {}
    if local.get("n") and remote.get("n"):
        r["remote_share"] = round(remote["n"] / (local["n"] + remote["n"]), 3)
        if local.get("p99"):
            r["remote_p99_over_local_p99"] = round(remote["p99"] / local["p99"], 3)


def add_remote_cost(summary: dict[str, Any], targets: list[str]) -> None:
    """The server CPU a remote delivery adds (the listening process decoding what Redis
    brought and delivering it again), from 2 processes vs 1 carrying the same load:
    (CPU per delivery with 2 - with 1) / the share of deliveries that were remote."""
    for metrics in summary.values():
        per = metrics.get("server_cpu_us_per_delivery") or {}
        share = (metrics.get("remote_share") or {}).get(targets[0])
        two, one = per.get(targets[0]), per.get(targets[1])
        if share and two is not None and one is not None:
            extra = round((two - one) / share, 3)
            metrics["extra_cpu_us_per_remote_delivery"] = {targets[0]: extra, targets[1]: None}


def correctness_problems(r: dict[str, Any], opts: dict[str, Any]) -> list[str]:
    problems = []
    if r.get("error"):
        problems.append(f"error: {r['error']}")
    if r.get("connected") != opts["clients"]:
        problems.append(
            f"connected {r.get('connected')} of {opts['clients']} ({r.get('connect_error_reasons')})"
        )
    if r.get("acked") != r.get("sent"):
        problems.append(
            f"acked {r.get('acked')} != sent {r.get('sent')} (nacks: {r.get('nack_reasons')})"
        )
    for key in ("lost", "duplicates", "disconnects"):
        if r.get(key):
            problems.append(f"{key} {r[key]}")
    if opts.get("mode") != "idle" and not r.get("sent"):
        problems.append("no message was sent")
    hoggers = int(opts.get("hoggers") or 0)
    if hoggers:
        hog = r.get("hog") or {}
        if hog.get("connected") != hoggers or hog.get("disconnects"):
            problems.append(
                f"hoggers: {hog.get('connected')} of {hoggers} connected, "
                f"{hog.get('disconnects')} disconnected"
            )
        if hog.get("errors"):
            problems.append(f"hoggers got errors: {hog.get('error_reasons')}")
    return problems


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[key] = float(v)
        elif isinstance(v, dict) and k not in ("config",):
            out.update(flatten(v, key + "."))
    return out


def summarise(measurements: list[dict[str, Any]], targets: list[str]) -> dict[str, Any]:
    """Per variant: median of every numeric metric per target, and targets[0]/targets[1]."""
    summary: dict[str, Any] = {}
    for variant in dict.fromkeys(m["variant"] for m in measurements):
        per_target: dict[str, dict[str, float]] = {}
        for target in targets:
            rows = [
                flatten(m["result"])
                for m in measurements
                if m["variant"] == variant and m["target"] == target
            ]
            keys = sorted({k for row in rows for k in row if not k.startswith("server.pids")})
            per_target[target] = {
                k: statistics.median(row[k] for row in rows if k in row) for k in keys
            }
        metrics: dict[str, Any] = {}
        for key in sorted({k for t in per_target.values() for k in t}):
            entry: dict[str, Any] = {t: per_target[t].get(key) for t in targets}
            if len(targets) == 2:
                a, b = entry[targets[0]], entry[targets[1]]
                entry["ratio"] = round(a / b, 3) if a is not None and b not in (None, 0) else None
            metrics[key] = entry
        summary[variant] = metrics
    return summary


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 1e12:
        return f"{int(v):,}"
    return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"


def print_table(scenario: str, summary: dict[str, Any], targets: list[str]) -> None:
    for variant, metrics in summary.items():
        cols = [*targets, "ratio"] if len(targets) == 2 else targets
        print(
            f"\n{scenario} / {variant}: medians"
            + (f", ratio = {targets[0]}/{targets[1]}" if len(targets) == 2 else "")
        )
        rows = [(m, [fmt(metrics[m].get(c)) for c in cols]) for m in TABLE_METRICS if m in metrics]
        width = max(len(m) for m, _ in rows) if rows else 10
        cw = (
            [max(len(c), *(len(v[i]) for _, v in rows)) for i, c in enumerate(cols)]
            if rows
            else [10] * len(cols)
        )
        print(f"  {'metric':<{width}}  " + "  ".join(f"{c:>{cw[i]}}" for i, c in enumerate(cols)))
        for m, vals in rows:
            print(f"  {m:<{width}}  " + "  ".join(f"{v:>{cw[i]}}" for i, v in enumerate(vals)))


def print_variants(scenario: str, summary: dict[str, Any], target: str) -> None:
    """One target's medians side by side, a column per variant (e.g. calm / attack)."""
    names = list(summary)
    rows = [
        (m, [fmt((summary[v].get(m) or {}).get(target)) for v in names])
        for m in TABLE_METRICS
        if any(m in summary[v] for v in names)
    ]
    if not rows:
        return
    width = max(len(m) for m, _ in rows)
    cw = [max(len(n), *(len(vals[i]) for _, vals in rows)) for i, n in enumerate(names)]
    print(f"\n{scenario}: {target}, medians per variant")
    print(f"  {'metric':<{width}}  " + "  ".join(f"{n:>{cw[i]}}" for i, n in enumerate(names)))
    for m, vals in rows:
        print(f"  {m:<{width}}  " + "  ".join(f"{v:>{cw[i]}}" for i, v in enumerate(vals)))


def one_line(r: dict[str, Any]) -> str:
    lat = r.get("latency_ms") or {}
    ack = r.get("ack_latency_ms") or {}
    srv = r.get("server") or {}
    lg = r.get("loadgen") or {}
    hog = r.get("hog") or {}
    return (
        f"connected {r.get('connected')} ({fmt(r.get('connect_rate'))}/s) sent {r.get('sent')} acked {r.get('acked')} "
        f"lost {r.get('lost')} dup {r.get('duplicates')} | {fmt(r.get('deliveries_per_s'))} deliveries/s "
        f"p50 {fmt(lat.get('p50'))} p99 {fmt(lat.get('p99'))} ms, ack p50 {fmt(ack.get('p50'))} p99 {fmt(ack.get('p99'))} ms "
        f"| server cpu {fmt(srv.get('cpu_util_measure'))} "
        f"peak rss {fmt(srv.get('rss_peak_kb'))} kB | loadgen cpu {fmt(lg.get('cpu_util_measure'))}"
        + (
            f" | hog pages {fmt(hog.get('pages_per_s'))}/s refused {fmt(hog.get('limited_per_s'))}/s"
            if hog.get("hoggers")
            else ""
        )
    )


# ------------------------------------------------------------------- main --


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios:\n" + "\n".join(f"  {k:<16} {v['doc']}" for k, v in SCENARIOS.items()),
    )
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--runs", type=int, help="runs per target and variant (default 3; smoke 1)")
    p.add_argument(
        "--targets",
        help="comma-separated: chatapp,node (default: both, fairness: chatapp; ignored by the "
        "cluster scenarios); floor is stack_floor.py, the stack alone doing what node does",
    )
    p.add_argument(
        "--deflate",
        choices=["off", "on", "both"],
        help="clients offer permessage-deflate (default per scenario)",
    )
    p.add_argument(
        "--node-deflate",
        type=int,
        metavar="THRESHOLD",
        help="start the reference server with permessage-deflate on (socket.io's default is off); "
        "frames below THRESHOLD bytes stay uncompressed (ws's default is 1024, 0 compresses all)",
    )
    p.add_argument(
        "--python", default=sys.executable, help="interpreter that runs chatapp (default: this one)"
    )
    p.add_argument(
        "--chatapp-root",
        type=Path,
        default=REPO_ROOT,
        help="directory to run chatapp from (default: repo root)",
    )
    p.add_argument(
        "--chatapp-module", default="chatapp", help="module run with -m (default chatapp)"
    )
    p.add_argument(
        "--chatapp-arg", action="append", default=[], help="extra argument for chatapp (repeatable)"
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="cluster: shared Redis (started privately if absent)",
    )
    p.add_argument(
        "--cluster-db",
        help="cluster: --db for both processes, e.g. postgresql://127.0.0.1:5432/test "
        "(default: a fresh shared SQLite file)",
    )
    p.add_argument("--server-cpus", default="0", help="taskset cpu list for servers (default 0)")
    p.add_argument(
        "--loadgen-cpus", default="1", help="taskset cpu list for the load generator (default 1)"
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument(
        "--netns",
        action="store_true",
        help="cluster scenarios: each chatapp process and Redis in a network namespace of "
        "its own, joined by veth and a bridge (root, iproute2)",
    )
    p.add_argument("--results-dir", default=str(BENCH_DIR / "results"))
    for key, typ in (
        ("clients", int),
        ("rooms", int),
        ("senders", int),
        ("rate", float),
        ("duration", float),
        ("warmup", float),
    ):
        p.add_argument(f"--{key}", type=typ, help=f"override the scenario's loadgen --{key}")
    args = p.parse_args(argv)
    args.chatapp_root = args.chatapp_root.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runner = Runner(args)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return runner.run()
    except HarnessError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        return 130
    finally:
        runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
