#!/usr/bin/env python3
"""Echo-server benchmark driver: Swisted vs. raw libuv (C) vs. SwiftNIO.

Python 3 standard library only. Builds the Benchmarks package in release mode,
then measures every server in interleaved rounds (for each test: for round in
1..R: for server in SERVERS: measure) with the server pinned to CPU 0 and the
load generator (our own epoll C program, echo-load) pinned to CPU 1, and writes
RESULTS.md, results.svg and results.json next to this file. The async servers'
CPU against swisted-echo is measured side by side (m_ab: both servers at once,
driven alternately by echo-load's A/B mode), steady where back-to-back windows
on a shared VM are not.

    python3 bench.py            # full run (well under 10 minutes once built)
    python3 bench.py --quick    # ~70 s subset on a quiet machine
    python3 bench.py --no-build # use the binaries already in .build/release

A server that is missing, fails to build, or fails a measurement shows up in the
tables as "n/a (reason)"; the run carries on.

To add a server, add one line to SERVERS below (name, SwiftPM product). It must
take `--port N [--host H]`, print `listening on PORT` once listening, and exit 0
on SIGTERM.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.path.join(HERE, ".build", "release")

# ---- the servers: adding one is one line: (name, SwiftPM executable product) ----
SERVERS = [
    ("uv-echo", "uv-echo"),
    ("swisted-echo", "swisted-echo"),
    ("nio-echo", "nio-echo"),
]
BASELINE = "uv-echo"        # ratios are relative to this one (the floor)
# Async echo servers (issue #9): measured in a table of their own, "Async echo",
# against Swisted's callback echo (ASYNC_BASELINE), in interleaved rounds with
# the servers of ASYNC_TABLE; also counted by the allocation counter, and
# swisted-async-echo by callgrind. Adding one is one line here plus its name in ASYNC_TABLE.
ASYNC_SERVERS = [
    ("swisted-async-echo", "swisted-async-echo"),
    ("swisted-actor-echo", "swisted-actor-echo"),
    ("nio-async-echo", "nio-async-echo"),
]
ASYNC_BASELINE = "swisted-echo"
# nio-echo is not in the async rounds (the echo table has it): rounds of noise
# on this machine move single measurements by 20-80 % while these servers'
# instruction counts differ by a few percent, so the time goes to more rounds.
ASYNC_TABLE = ["swisted-echo", "swisted-async-echo", "swisted-actor-echo", "nio-async-echo"]
LOADGEN = "echo-load"
# Reactor microbenchmarks (not servers): product per event-loop library.
MICROS = [("swisted", "swisted-micro"), ("nio", "nio-micro")]
MICRO_COUNT = 1_000_000
SERVER_CPU = "0"
LOAD_CPU = "1"
HOST = "127.0.0.1"

CALLGRIND_TRIPS = 20000
# Connects in flight while opening the idle connections. Note that a listen
# backlog of 50 (Swisted's default, as Twisted's) overflows on this machine even
# with one connect in flight when the client connects faster than the server
# accepts: the kernel drops the handshake's last ACK, the client sees the
# connection established, and the server gets it only after a SYN-ACK
# retransmission (1 s, 3 s, ...), if at all. uv-echo and nio-echo listen with 4096.
IDLE_INFLIGHT = 32
IDLE_ACCEPT_TIMEOUT = 45

FULL = dict(
    rounds=3,
    echo=[(1, 65536), (1, 1024), (50, 1024), (500, 256)],
    echo_seconds=3.0, echo_warmup=0.5,
    async_echo=[(1, 1024), (50, 1024), (1, 65536)], async_table=ASYNC_TABLE,
    async_rounds=3,  # throughput and latency; the CPU ratio comes from the A/B rounds below
    # A/B rounds (echo-load --port-b): the async server and swisted-echo run side
    # by side, driven alternately in 100 ms slices; each round is a fresh pair.
    ab_rounds=5, ab_slices=30, ab_slice_ms=100, ab_warmup=1.0,
    echo_ab_rounds=3,  # the same side by side for the callback servers against uv-echo
    callgrind=True, callgrind_rounds=1, callgrind_trips=CALLGRIND_TRIPS, callgrind_conns=2000,
    alloc_rounds=3, alloc_seconds=1.0,
    idle_conns=10000, idle_rounds=3,
    churn_seconds=2.0, churn_rounds=3, churn_conns=4, churn_size=64,
    retry_budget=8, quiet_wait_s=30.0,
)
QUICK = dict(
    rounds=3,
    echo=[(1, 1024), (50, 1024)],
    echo_seconds=1.0, echo_warmup=0.3,
    async_echo=[(50, 1024)], async_table=ASYNC_TABLE,
    ab_rounds=1, ab_slices=10, ab_slice_ms=100, ab_warmup=0.5, echo_ab_rounds=1,
    callgrind=True, callgrind_rounds=1, callgrind_trips=5000, callgrind_conns=500,
    callgrind_only=("uv-echo", "swisted"),  # name prefixes: nio-echo under valgrind is slow
    alloc_rounds=1, alloc_seconds=1.0,
    idle_conns=1000, idle_rounds=1,
    churn_seconds=1.0, churn_rounds=1, churn_conns=4, churn_size=64,
    retry_budget=4, quiet_wait_s=15.0,
)


class BenchError(Exception):
    """A measurement that could not be made; its text ends up in the table."""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def short(text, n=90):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------ building

def build(names):
    """Build everything in release mode. Returns {product: failure reason}."""
    cmd = ["swift", "build", "-c", "release", "--package-path", HERE]
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode == 0:
        return {}
    log(tail(r.stdout + r.stderr, 30))
    log("full build failed; building product by product")
    failures = {}
    products = [p for _, p in SERVERS + ASYNC_SERVERS] + [LOADGEN] + [p for _, p in MICROS]
    for p in dict.fromkeys(products):
        r = subprocess.run(cmd + ["--product", p], capture_output=True, text=True)
        if r.returncode != 0:
            failures[p] = first_error(r.stdout + r.stderr)
    # If even the products that do not use Swisted failed, the root package's
    # manifest is probably what breaks resolution: build them without the
    # swisted dependency.
    others = [p for p in failures if not p.startswith("swisted")]
    if others:
        log("retrying without the swisted dependency (SWISTED_BENCH_NO_SWISTED=1): " + ", ".join(others))
        env = dict(os.environ, SWISTED_BENCH_NO_SWISTED="1")
        for p in others:
            r = subprocess.run(cmd + ["--product", p], capture_output=True, text=True, env=env)
            if r.returncode == 0:
                del failures[p]
    for p, why in failures.items():
        log(f"build of {p} failed: {why}")
    return failures


def first_error(text):
    for line in text.splitlines():
        if "error:" in line:
            return short(line.strip(), 120)
    return short(text.strip().splitlines()[-1] if text.strip() else "unknown", 120)


def tail(text, n):
    return "\n".join(text.splitlines()[-n:])


# ------------------------------------------------------------------ processes

class Server:
    """One server process, pinned to SERVER_CPU, with RLIMIT_NOFILE raised."""

    def __init__(self, name, binary, prefix=(), env=None, start_timeout=20.0, settle=0.2):
        self.name = name
        self.binary = binary
        self.prefix = list(prefix)
        self.env = env
        self.start_timeout = start_timeout
        # Pause after "listening on": a server may print that before it has
        # installed its signal handlers (swisted-echo does: reactor.run installs
        # them), and a SIGTERM in that gap would kill it instead of stopping it.
        self.settle = settle
        self.proc = None
        self.port = None
        self.tmp = tempfile.mkdtemp(prefix="swisted-bench-")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        out = open(os.path.join(self.tmp, "stdout"), "w")
        err = open(os.path.join(self.tmp, "stderr"), "w")
        argv = ["taskset", "-c", SERVER_CPU] + self.prefix + [self.binary, "--port", "0", "--host", HOST]
        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile, env=self.env)
        out.close()
        err.close()
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            m = re.search(r"listening on (\d+)", self.read("stdout"))
            if m:
                self.port = int(m.group(1))
                time.sleep(self.settle)
                return
            if self.proc.poll() is not None:
                raise BenchError(f"exited {self.proc.returncode} before listening: {short(self.read('stderr'))}")
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait()
        raise BenchError("did not print 'listening on PORT' in time")

    def read(self, which):
        try:
            with open(os.path.join(self.tmp, which), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit code (or 'killed' if it did not exit)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "killed"

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError("no VmRSS")

    def nfds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def loadgen(args, timeout):
    argv = ["taskset", "-c", LOAD_CPU, bin_path(LOADGEN)] + [str(a) for a in args]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile)
    except subprocess.TimeoutExpired:
        raise BenchError("load generator timed out")
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        res = json.loads(line)
    except ValueError:
        raise BenchError(f"load generator failed (rc {r.returncode}): {short(r.stderr or r.stdout)}")
    return res


def bin_path(product):
    return os.path.join(BIN_DIR, product)


def check_exit(srv, rc, res):
    res["exit_code"] = rc
    if rc != 0:
        res["note"] = f"exit code {rc} after SIGTERM"


# ------------------------------------------------------------------ measurements

DISTURBED = 0.25          # other processes' CPU share above which a timed round is retried
RETRIES_PER_MEASUREMENT = 2
BUDGET = {"retries": 12, "quiet_wait_s": 60.0}   # per run, keeps the run time bounded


def busy_cores(interval=0.3):
    """CPU (in cores) the whole machine is using right now, from /proc/stat."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    hz = os.sysconf("SC_CLK_TCK")
    a = read()
    time.sleep(interval)
    return (read() - a) / hz / interval


def wait_for_quiet():
    """Before a timed measurement: wait (within the run's budget) until other
    processes leave the machine alone."""
    while BUDGET["quiet_wait_s"] > 0:
        b = busy_cores()
        if b <= DISTURBED:
            return
        log(f"  machine busy ({b:.2f} cores used by others); waiting")
        time.sleep(1.0)
        BUDGET["quiet_wait_s"] -= 1.3


def undisturbed(measure):
    """Run measure() on a quiet machine; while other processes used more than
    DISTURBED of the CPU during its window, run it again (bounded)."""
    wait_for_quiet()
    res = measure()
    tries = 0
    while (res.get("other_cpu_frac", 0) > DISTURBED and tries < RETRIES_PER_MEASUREMENT
           and BUDGET["retries"] > 0):
        tries += 1
        BUDGET["retries"] -= 1
        log(f"  other processes used {res['other_cpu_frac']:.2f} CPU during the window; retrying")
        wait_for_quiet()
        res = measure()
    if res.get("other_cpu_frac", 0) > DISTURBED:
        res["note"] = f"disturbed: other CPU {res['other_cpu_frac']:.2f}"
    return res


def m_echo(name, conns, size, seconds, warmup):
    return undisturbed(lambda: m_echo_once(name, conns, size, seconds, warmup))


def m_echo_once(name, conns, size, seconds, warmup):
    with Server(name, bin_path(name)) as s:
        res = loadgen(["--host", HOST, "--port", s.port, "--conns", conns, "--size", size,
                       "--seconds", seconds, "--warmup", warmup, "--server-pid", s.pid],
                      timeout=seconds + warmup + 60)
        check_exit(s, s.stop(), res)
    if res.get("round_trips", 0) == 0:
        raise BenchError(f"no round trips ({res.get('errors', '?')} errors)")
    if res.get("errors"):
        res["note"] = f"{res['errors']} errors"
    return res


def m_ab(name, base, conns, size, cfg):
    """Server CPU per round trip of `name` against `base`, both running at once
    (pinned to the same CPU) and driven alternately by echo-load's A/B mode:
    `ab_slices` slices of `ab_slice_ms` each, a trip's CPU from each server's
    process CPU clock (nanoseconds, every thread). The machine's drifts fall on
    both servers alike, so one round's ratio is steady to ~2 % where
    back-to-back windows vary by 20 % and more."""
    wait_for_quiet()
    seconds = 2 * cfg["ab_slices"] * cfg["ab_slice_ms"] / 1000 + cfg["ab_warmup"]
    with Server(base, bin_path(base)) as sb, Server(name, bin_path(name)) as sn:
        res = loadgen(["--host", HOST, "--port", sb.port, "--port-b", sn.port, "--pid", sb.pid,
                       "--pid-b", sn.pid, "--conns", conns, "--size", size, "--slices", cfg["ab_slices"],
                       "--slice-ms", cfg["ab_slice_ms"], "--warmup", cfg["ab_warmup"]],
                      timeout=seconds + 60)
        rc_b, rc_n = sb.stop(), sn.stop()
    if res.get("error"):
        raise BenchError(f"A/B: {res['error']} ({res.get('errors', '?')} errors)")
    out = {"cpu_ratio": res["ratio"], "pair_ratio_median": res["pair_ratio_median"],
           "server_cpu_us_per_rt": res["b"]["cpu_us_per_rt"], "base_cpu_us_per_rt": res["a"]["cpu_us_per_rt"],
           "round_trips": res["b"]["round_trips"], "base_round_trips": res["a"]["round_trips"]}
    if rc_b != 0 or rc_n != 0:
        out["note"] = f"exit codes {rc_b}/{rc_n} after SIGTERM"
    return out


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise BenchError("no totals in callgrind output")


def stripped_copy(name, tmpdir):
    """valgrind 3.19 cannot read the DWARF 5 debug info of Swift binaries, so it
    runs a copy without it (strip --strip-debug keeps the symbol table, so
    callgrind can still name functions)."""
    dst = os.path.join(tmpdir, name)
    subprocess.run(["strip", "--strip-debug", "-o", dst, bin_path(name)], check=True)
    return dst


def m_callgrind(name, trips, keep_dir, conns=2000):
    if not shutil.which("valgrind"):
        raise BenchError("valgrind not installed")
    tmpdir = tempfile.mkdtemp(prefix="swisted-cg-")
    try:
        binary = stripped_copy(name, tmpdir)
        totals = {}
        for label, n in (("idle", 0), ("run", trips), ("churn", conns)):
            out = os.path.join(tmpdir, f"callgrind.{label}.out")
            prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            t0 = time.time()
            with Server(name, binary, prefix=prefix, start_timeout=180, settle=1.0) as s:
                if label == "run":
                    res = loadgen(["--host", HOST, "--port", s.port, "--conns", 1, "--size", 1024,
                                   "--trips", n, "--warmup", 0], timeout=600)
                    if res.get("round_trips") != n:
                        raise BenchError(f"only {res.get('round_trips')} of {n} trips")
                elif label == "churn":
                    res = loadgen(["--host", HOST, "--port", s.port, "--churn", 1, "--conns", 1, "--size", 64,
                                   "--trips", n, "--warmup", 0], timeout=600)
                    if res.get("connections") != n:
                        raise BenchError(f"only {res.get('connections')} of {n} connections")
                rc = s.stop(timeout=120)
                if rc != 0:
                    raise BenchError(f"exit code {rc} under valgrind")
            totals[label] = callgrind_total(out)
            log(f"  callgrind {name} {label}: {totals[label]} Ir in {time.time() - t0:.1f}s")
            if keep_dir:
                suffix = "" if label == "run" else "." + label
                shutil.copy(out, os.path.join(keep_dir, f"callgrind.{name}{suffix}.out"))
        per = (totals["run"] - totals["idle"]) / trips
        return {"ir_idle": totals["idle"], "ir_run": totals["run"], "trips": trips, "ir_per_rt": per,
                "ir_churn": totals["churn"], "conns": conns,
                "ir_per_conn": (totals["churn"] - totals["idle"]) / conns}
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def malloccount_lib(tmpdir):
    src = os.path.join(HERE, "tools", "malloccount.c")
    so = os.path.join(tmpdir, "malloccount.so")
    r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", so, src], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("gcc failed: " + short(r.stderr))
    return so


def parse_counts(line):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def m_alloc(name, so, conns, size, seconds):
    """Allocations per round trip (echo) and per connection (churn: accept, one
    echo, close), from two separate server processes."""
    echo = alloc_window(name, so, ["--conns", conns, "--size", size, "--seconds", seconds], "round_trips")
    churn = alloc_window(name, so, ["--churn", seconds, "--conns", 4, "--size", 64], "connections")
    r = {"round_trips": echo["n"], "allocs": echo["allocs"], "frees": echo["free"],
         "allocs_per_rt": echo["allocs"] / echo["n"], "frees_per_rt": echo["free"] / echo["n"],
         "connections": churn["n"], "allocs_per_conn": churn["allocs"] / churn["n"],
         "frees_per_conn": churn["free"] / churn["n"], "detail_echo": echo, "detail_churn": churn}
    if echo["exit_code"] != 0 or churn["exit_code"] != 0:
        r["note"] = f"exit codes {echo['exit_code']}, {churn['exit_code']} after SIGTERM"
    r["exit_code"] = echo["exit_code"] if echo["exit_code"] != 0 else churn["exit_code"]
    return r


def alloc_window(name, so, load_args, count_key):
    tmpdir = tempfile.mkdtemp(prefix="swisted-mc-")
    try:
        out = os.path.join(tmpdir, "counts")
        env = dict(os.environ, LD_PRELOAD=so, MALLOCCOUNT_FILE=out)
        with Server(name, bin_path(name), env=env) as s:
            res = loadgen(["--host", HOST, "--port", s.port] + load_args +
                          ["--warmup", 0.3, "--server-pid", s.pid, "--alloc-signal"], timeout=120)
            deadline = time.time() + 5
            lines = []
            while time.time() < deadline:
                try:
                    with open(out) as f:
                        lines = f.read().splitlines()
                except OSError:
                    lines = []
                if len(lines) >= 2:
                    break
                time.sleep(0.02)
            rc = s.stop()
        if len(lines) < 2:
            raise BenchError("malloc counter did not report (LD_PRELOAD not honoured?)")
        n = res.get(count_key, 0)
        if not n:
            raise BenchError(f"no {count_key.replace('_', ' ')}")
        a, b = parse_counts(lines[0]), parse_counts(lines[1])
        d = {k: b[k] - a[k] for k in a}
        d["n"] = n
        d["exit_code"] = rc
        return d
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def wait_fds(s, target, cmp, timeout):
    deadline = time.time() + timeout
    last = s.nfds()
    while time.time() < deadline:
        last = s.nfds()
        if cmp(last, target):
            return last, True
        time.sleep(0.05)
    return last, False


def m_idle(name, n):
    with Server(name, bin_path(name)) as s:
        time.sleep(0.3)
        rss0, fd0 = s.rss_kib(), s.nfds()
        argv = ["taskset", "-c", LOAD_CPU, bin_path(LOADGEN), "--host", HOST, "--port", str(s.port),
                "--idle", str(n), "--inflight", str(IDLE_INFLIGHT)]
        t_conn = time.time()
        lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                              text=True, preexec_fn=raise_nofile)
        try:
            line = lg.stdout.readline()
            try:
                info = json.loads(line)
            except ValueError:
                raise BenchError("idle load generator failed: " + short(lg.stderr.read() if lg.poll() is not None else line))
            est = info["established"]
            if est < n:
                raise BenchError(f"only {est}/{n} connections established ({info['errors']} errors)")
            fds, ok = wait_fds(s, fd0 + est, lambda a, b: a >= b, IDLE_ACCEPT_TIMEOUT)
            if not ok:
                raise BenchError(f"server accepted only {fds - fd0}/{est} in {IDLE_ACCEPT_TIMEOUT} s")
            accept_s = time.time() - t_conn
            time.sleep(0.5)
            rss1 = s.rss_kib()
        finally:
            lg.send_signal(signal.SIGTERM)
            try:
                lg.wait(timeout=30)
            except subprocess.TimeoutExpired:
                lg.kill()
                lg.wait()
        fds_after, released = wait_fds(s, fd0, lambda a, b: a <= b, 15)
        rss2 = s.rss_kib()
        res = {"conns": n, "accept_s": accept_s, "rss0_kib": rss0, "rss1_kib": rss1, "rss_after_close_kib": rss2,
               "bytes_per_conn": (rss1 - rss0) * 1024 / n, "fd0": fd0, "fds_after_close": fds_after,
               "fds_released": released}
        check_exit(s, s.stop(), res)
    return res


def m_micro(name):
    """One run of a microbenchmark binary (its two threads on the two cores)."""
    product = dict(MICROS)[name]
    wait_for_quiet()
    r = subprocess.run(["taskset", "-c", f"{SERVER_CPU},{LOAD_CPU}", bin_path(product), str(MICRO_COUNT)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise BenchError(f"{product} exited {r.returncode}: {first_error(r.stdout + r.stderr)}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def m_churn(name, seconds, conns, size):
    return undisturbed(lambda: m_churn_once(name, seconds, conns, size))


def m_churn_once(name, seconds, conns, size):
    with Server(name, bin_path(name)) as s:
        time.sleep(0.2)
        fd0 = s.nfds()
        res = loadgen(["--host", HOST, "--port", s.port, "--churn", seconds, "--conns", conns,
                       "--size", size, "--warmup", 0.3, "--server-pid", s.pid], timeout=seconds + 60)
        fd1, ok = wait_fds(s, fd0, lambda a, b: a == b, 5)
        res.update({"fd_before": fd0, "fd_after": fd1, "fd_equal": ok})
        check_exit(s, s.stop(), res)
    if not res.get("connections"):
        raise BenchError(f"no connections ({res.get('connect_errors')} connect errors)")
    return res


# ------------------------------------------------------------------ orchestration

def run_interleaved(title, names, rounds, fn):
    """for round in 1..rounds: for server in names: fn(server). Returns {name: [result|BenchError]}."""
    out = {n: [] for n in names}
    for r in range(1, rounds + 1):
        for n in names:
            t0 = time.time()
            try:
                res = fn(n)
            except BenchError as e:
                res = e
            except Exception as e:  # a driver bug must not lose the whole run
                res = BenchError(f"{type(e).__name__}: {e}")
            out[n].append(res)
            log(f"[{title}] round {r} {n}: {summarize(res)} ({time.time() - t0:.1f}s)")
    return out


def summarize(res):
    if isinstance(res, BenchError):
        return f"FAILED: {res}"
    keys = ("cpu_ratio", "pair_ratio_median", "calllater_cancel_ns", "calllater_cancel_1k_pending_ns", "call_from_thread_ns", "rt_per_s", "p99_us", "server_cpu_us_per_rt", "loadgen_cpu_frac", "other_cpu_frac", "allocs_per_rt",
            "bytes_per_conn", "accept_s", "conn_per_s", "fd_equal", "ir_per_rt", "ir_per_conn", "allocs_per_conn",
            "note")
    return ", ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}"
                     for k in keys if k in res)


def med(results, key):
    """(median, n_ok, reason) over the successful rounds."""
    vals = [r[key] for r in results if not isinstance(r, BenchError) and r.get(key) is not None
            and not (isinstance(r[key], (int, float)) and r[key] < 0)]
    if not vals:
        errs = [str(r) for r in results if isinstance(r, BenchError)]
        return None, 0, (errs[0] if errs else "no data")
    return statistics.median(vals), len(vals), None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def na(reason):
    return f"n/a ({short(reason, 70)})"


def machine_info():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1).strip() if m else "unknown"
    except OSError:
        info["cpu"] = "unknown"
    info["cores"] = os.cpu_count()
    try:
        with open("/proc/loadavg") as f:
            info["loadavg"] = " ".join(f.read().split()[:3])
    except OSError:
        info["loadavg"] = "unknown"
    info["kernel"] = os.uname().release
    info["swift"] = cmd_out(["swift", "--version"]).splitlines()[0] if cmd_out(["swift", "--version"]) else "unknown"
    info["libuv"] = cmd_out(["pkg-config", "--modversion", "libuv"]).strip() or "unknown"
    info["nio"] = "unknown"
    try:
        with open(os.path.join(HERE, "Package.resolved")) as f:
            for pin in json.load(f).get("pins", []):
                if pin.get("identity") == "swift-nio":
                    info["nio"] = pin["state"].get("version", "unknown")
    except (OSError, ValueError):
        pass
    info["valgrind"] = cmd_out(["valgrind", "--version"]).strip() or "not installed"
    rev = cmd_out(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"]).strip()
    dirty = cmd_out(["git", "-C", os.path.dirname(HERE), "status", "--porcelain", "--", "Sources"]).strip()
    info["swisted_rev"] = (rev or "uncommitted") + (" (+ uncommitted changes)" if dirty else "")
    return info


def cmd_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~60 s subset")
    ap.add_argument("--no-build", action="store_true", help="do not run swift build")
    ap.add_argument("--servers", help="comma-separated subset of: " + ",".join(n for n, _ in SERVERS + ASYNC_SERVERS))
    ap.add_argument("--out", default=HERE, help="where RESULTS.md, results.svg, results.json go")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    BUDGET["retries"] = cfg["retry_budget"]
    BUDGET["quiet_wait_s"] = cfg["quiet_wait_s"]
    t_start = time.time()
    with open("/proc/loadavg") as f:
        loadavg_start = " ".join(f.read().split()[:3])

    servers = [n for n, _ in SERVERS]
    async_servers = list(cfg["async_table"])
    if args.servers:
        servers = [n for n in servers if n in args.servers.split(",")]
        async_servers = [n for n in async_servers if n in args.servers.split(",")]
    # Servers only in the async table (not in SERVERS).
    async_only = [n for n in async_servers if n not in servers and n in dict(ASYNC_SERVERS)]
    unavailable = {}
    if not args.no_build:
        failures = build(servers)
        for n, p in SERVERS + ASYNC_SERVERS:
            if p in failures:
                unavailable[n] = "build failed: " + failures[p]
        if LOADGEN in failures:
            sys.exit(f"cannot build the load generator: {failures[LOADGEN]}")
    for n, p in SERVERS + ASYNC_SERVERS:
        if n not in unavailable and not os.access(bin_path(p), os.X_OK):
            unavailable[n] = "not built"
    if not os.access(bin_path(LOADGEN), os.X_OK):
        sys.exit("echo-load is not built")
    for n in dict.fromkeys(servers + async_servers):
        if n in unavailable:
            log(f"{n}: {unavailable[n]}")
    live = [n for n in servers if n not in unavailable]
    async_live = [n for n in async_servers if n not in unavailable]
    async_only_live = [n for n in async_only if n not in unavailable]

    results = {"config": {k: v for k, v in cfg.items()}, "quick": args.quick, "servers": servers,
               "async_servers": async_servers, "unavailable": unavailable, "echo": {}, "echo_ab": {}, "async_echo": {}, "async_ab": {},
               "callgrind": {}, "alloc": {}, "idle": {}, "churn": {}, "micro": {}}

    # 1. echo throughput / latency / CPU
    for conns, size in cfg["echo"]:
        key = f"{conns}x{size}"
        results["echo"][key] = run_interleaved(
            f"echo {key}", live, cfg["rounds"],
            lambda n: m_echo(n, conns, size, cfg["echo_seconds"], cfg["echo_warmup"]))

    # 1a. the servers' CPU against uv-echo, side by side (A/B slices)
    echo_ab_live = [n for n in live if n != BASELINE]
    if BASELINE in live and echo_ab_live and cfg.get("echo_ab_rounds"):
        for conns, size in cfg["echo"]:
            key = f"{conns}x{size}"
            results["echo_ab"][key] = run_interleaved(
                f"echo A/B {key}", echo_ab_live, cfg["echo_ab_rounds"],
                lambda n: m_ab(n, BASELINE, conns, size, cfg))

    # 1b. async echo (issue #9): the async servers against swisted-echo, interleaved
    if async_live:
        for conns, size in cfg["async_echo"]:
            key = f"{conns}x{size}"
            results["async_echo"][key] = run_interleaved(
                f"async echo {key}", async_live, cfg.get("async_rounds", cfg["rounds"]),
                lambda n: m_echo(n, conns, size, cfg["echo_seconds"], cfg["echo_warmup"]))

        # 1c. the async servers' CPU against swisted-echo, side by side (A/B slices)
        ab_live = [n for n in async_live if n != ASYNC_BASELINE]
        if ASYNC_BASELINE in async_live and ab_live:
            for conns, size in cfg["async_echo"]:
                key = f"{conns}x{size}"
                results["async_ab"][key] = run_interleaved(
                    f"async A/B {key}", ab_live, cfg["ab_rounds"],
                    lambda n: m_ab(n, ASYNC_BASELINE, conns, size, cfg))

    # 2. allocations per round trip (LD_PRELOAD counter)
    alloc_live = live + async_only_live
    with tempfile.TemporaryDirectory(prefix="swisted-mcso-") as td:
        try:
            so = malloccount_lib(td)
            results["alloc"] = run_interleaved("alloc 1x1024", alloc_live, cfg["alloc_rounds"],
                                               lambda n: m_alloc(n, so, 1, 1024, cfg["alloc_seconds"]))
        except BenchError as e:
            results["alloc"] = {n: [e] for n in alloc_live}

    # 3. idle connections: RSS per connection
    results["idle"] = run_interleaved(f"idle {cfg['idle_conns']}", live, cfg["idle_rounds"],
                                      lambda n: m_idle(n, cfg["idle_conns"]))

    # 4. churn: connections/s, fds released
    results["churn"] = run_interleaved("churn", live, cfg["churn_rounds"],
                                       lambda n: m_churn(n, cfg["churn_seconds"], cfg["churn_conns"], cfg["churn_size"]))

    # 4b. reactor microbenchmarks (callLater+cancel, callFromThread), interleaved
    micro_live = [n for n, p in MICROS if os.access(bin_path(p), os.X_OK)]
    results["micro"] = run_interleaved("micro", micro_live, cfg["rounds"], m_micro)

    # 5. callgrind instructions per round trip (deterministic: one round each)
    cg_dir = os.path.join(args.out, "callgrind") if cfg["callgrind"] else None
    if cg_dir:
        os.makedirs(cg_dir, exist_ok=True)
        only = cfg.get("callgrind_only")
        # Of the async-only servers, only Swisted's: NIO under valgrind is slow, and nio-echo stands for it.
        cg_live = [n for n in live + [a for a in async_only_live if a.startswith("swisted")]
                   if not only or n.startswith(only)]
        results["callgrind"] = run_interleaved("callgrind", cg_live, cfg["callgrind_rounds"],
                                               lambda n: m_callgrind(n, cfg["callgrind_trips"], cg_dir,
                                                                       cfg["callgrind_conns"]))

    results["elapsed_s"] = time.time() - t_start
    results["machine"] = machine_info()
    results["machine"]["loadavg_start"] = loadavg_start
    results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=lambda o: {"error": str(o)})
    cg_names = list(results["callgrind"]) if cg_dir else []
    hot = hot_functions(cg_dir, cg_names, cfg["callgrind_trips"]) if cg_dir else {}
    hot_conn = hot_functions(cg_dir, cg_names, cfg["callgrind_conns"], "churn") if cg_dir else {}
    md = render_md(results, cfg, servers, hot, hot_conn, async_servers, async_only)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.svg"), "w") as f:
        f.write(render_svg(results, cfg, servers, async_servers))
    print(md)
    log(f"done in {time.time() - t_start:.0f}s; wrote RESULTS.md, results.svg, results.json in {args.out}")


# ------------------------------------------------------------------ callgrind hot spots

def annotate(path):
    """{function: self Ir} from callgrind_annotate."""
    txt = cmd_out(["callgrind_annotate", "--threshold=100", path])
    costs = {}
    for line in txt.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        if m and not m.group(2).startswith("PROGRAM TOTALS"):
            fn = tidy_symbol(m.group(2).strip())
            costs[fn] = costs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return costs


def demangle(names):
    if not names or not shutil.which("swift"):
        return names
    out = subprocess.run(["swift", "demangle", "--simplified", "--compact"],
                         input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def hot_functions(cg_dir, names, trips=CALLGRIND_TRIPS, label="run"):
    """Per round trip self cost of each function: (Ir in the run - Ir in the
    idle start/stop) / trips, so start-up work drops out. Returns
    {server: {"total": Ir/rt, "fns": {function: Ir/rt}}}."""
    out = {}
    if not shutil.which("callgrind_annotate"):
        return out
    for n in names:
        run = os.path.join(cg_dir, f"callgrind.{n}.out" if label == "run" else f"callgrind.{n}.{label}.out")
        idle = os.path.join(cg_dir, f"callgrind.{n}.idle.out")
        if not (os.path.exists(run) and os.path.exists(idle)):
            continue
        a, b = annotate(run), annotate(idle)
        fns = {f: (a[f] - b.get(f, 0)) / trips for f in a}
        out[n] = {"total": sum(fns.values()), "fns": {f: v for f, v in fns.items() if v >= 0.5}}
    return out


def hot_rows(fns, total, top):
    rows = sorted(((v, f) for f, v in fns.items() if v > 0), reverse=True)[:top]
    names = demangle([f for _, f in rows])
    return [(v, 100.0 * v / total if total else 0.0, f) for (v, _), f in zip(rows, names)]


def tidy_symbol(s):
    """'???:sym [/long/path/libfoo.so.1]' -> 'sym [libfoo.so.1]'."""
    s = re.sub(r"^\?\?\?:", "", s)
    s = re.sub(r"^\S*/[^:]*:", "", s)  # source path of glibc functions
    return re.sub(r"\[(/[^\]]*/)?([^/\]]+)\]$", r"[\2]", s).strip()


# ------------------------------------------------------------------ report

def ratio(v, base):
    if v is None or not base:
        return None
    return v / base


def paired_ratio(by, n, key, base, unavailable):
    """Server n against base on one figure: the median, over the rounds where
    both were measured, of the ratio within the round (the two ran back to back,
    so a slow drift of the machine cancels out); without such rounds, the ratio
    of the two medians. None when either is unavailable."""
    if n in unavailable or base in unavailable:
        return None
    def value(r):
        if isinstance(r, dict) and isinstance(r.get(key), (int, float)) and r[key] >= 0:
            return r[key]
        return None
    pairs = [(value(a), value(b)) for a, b in zip(by.get(n, []), by.get(base, []))]
    ratios = [a / b for a, b in pairs if a is not None and b]
    if ratios:
        return statistics.median(ratios)
    v, _, _ = med(by.get(n, []), key)
    b, _, _ = med(by.get(base, []), key)
    return ratio(v, b)


def ab_ratio(res, key, n, section="async_ab"):
    """(median, lowest, highest, rounds) of the A/B CPU ratio of server n in
    shape key of `section` ("async_ab" or "echo_ab"), over the rounds that
    produced one; None without any."""
    rs = [r["cpu_ratio"] for r in res.get(section, {}).get(key, {}).get(n, [])
          if isinstance(r, dict) and isinstance(r.get("cpu_ratio"), (int, float)) and r["cpu_ratio"] > 0]
    if not rs:
        return None
    return statistics.median(rs), min(rs), max(rs), len(rs)


def ab_medians(res, section, key, names, base):
    """{server: median A/B CPU ratio (None if not measured)} for one shape of
    an A/B section; `base` itself is 1."""
    return {n: 1.0 if n == base else (ab_ratio(res, key, n, section) or (None,))[0] for n in names}


def ab_table(L, res, section, base, cfg, cell, title, which):
    """Appends the table of an A/B section (m_ab rounds against `base`) to L."""
    L.append(title)
    L.append(f"Each round starts {base} and {which} fresh, both pinned to CPU {SERVER_CPU}; "
             f"the load generator (`echo-load --port-b`, CPU {LOAD_CPU}) keeps its connections to both and drives "
             f"one at a time, alternating, {cfg['ab_slices']} slices each of {cfg['ab_slice_ms']} ms after "
             f"{cfg['ab_warmup']} s of warm-up. A slice's server CPU is the server's process CPU clock "
             "(`clock_getcpuclockid`: every thread, nanoseconds) over the slice, trips in flight included. "
             f"Ratio = the server's CPU per round trip over {base}'s, over all slices of a round; "
             f"median over the rounds (fresh process pairs), with the lowest and highest round. "
             "Both servers meet the machine's drifts alike, so a round is steady to about ±2 % (an A/A check, "
             "swisted-echo against itself, gives 1.00); rounds differ more than that at 64 KiB, where the "
             "kernel's copies depend on where a process's buffers lie in memory.\n")
    L.append(f"| test | server | server CPU µs/rt | {base} CPU µs/rt | CPU ratio (median) | "
             "lowest – highest round | rounds |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for key, by in res[section].items():
        c, s_ = key.split("x")
        label = f"{c} conn × {human_size(int(s_))}"
        for n in by:
            r = ab_ratio(res, key, n, section)
            if r is None:
                errs = [str(e) for e in by[n] if isinstance(e, BenchError)]
                L.append(f"| {label} | {n} | n/a | n/a | {na(errs[0] if errs else 'no data')} | | 0 |")
                continue
            L.append(f"| {label} | {n} | {cell(by, n, 'server_cpu_us_per_rt', 2)} | "
                     f"{cell(by, n, 'base_cpu_us_per_rt', 2)} | **{r[0]:.2f}** | {r[1]:.2f} – {r[2]:.2f} | {r[3]} |")
    L.append("")


def render_md(res, cfg, servers, hot, hot_conn=None, async_servers=(), async_only=()):
    mi = res["machine"]
    un = res["unavailable"]
    L = []
    L.append("# Swisted echo benchmarks\n")
    if res["quick"]:
        L.append("**Quick run** (`make bench-quick`): a subset, short windows; use `make bench` for the real figures.\n")
    L.append(f"- Date: {res['date']}; whole run {res['elapsed_s']:.0f} s")
    L.append(f"- CPU: {mi['cpu']}, {mi['cores']} cores (VM); kernel {mi['kernel']}")
    L.append(f"- {mi['swift']}; libuv {mi['libuv']}; SwiftNIO {mi['nio']}; {mi['valgrind']}")
    L.append(f"- Swisted: {mi['swisted_rev']}")
    L.append(f"- Load average (1/5/15 min) before the run: {mi.get('loadavg_start', '?')} (before the build), "
             f"after: {mi.get('loadavg', '?')}")
    L.append(f"- Server pinned to CPU {SERVER_CPU}, load generator (`echo-load`, C/epoll) to CPU {LOAD_CPU}; "
             f"interleaved rounds (for each test: for round in 1..{cfg['rounds']}: for server: measure), "
             "a fresh server process per measurement; figures are medians over the rounds, and a ratio between two servers is the median of their per-round ratios (the two ran back to back in each round, so the machine's slow drift cancels out).")
    for n in dict.fromkeys(list(servers) + list(async_servers)):
        if n in un:
            L.append(f"- **{n}: n/a ({un[n]})**")
    timed = [r for g in list(res["echo"].values()) + list(res.get("async_echo", {}).values()) + [res["churn"]]
             for rs in g.values() for r in rs if not isinstance(r, BenchError)]
    dist = [r for r in timed if r.get("other_cpu_frac", 0) > DISTURBED]
    if dist:
        L.append(f"- **Warning: {len(dist)} of {len(timed)} timed measurements were disturbed by other processes "
                 f"(other CPU > {DISTURBED} of a core even after waiting and retrying); their throughput and "
                 "latency figures are not trustworthy. Instruction and allocation counts are unaffected.**")
    else:
        L.append(f"- No timed measurement was disturbed by other processes (other CPU ≤ {DISTURBED} of a core).")
    L.append("")

    def cell(results_by_server, n, key, digits=0, scale=1.0):
        if n in un:
            return na(un[n])
        rs = results_by_server.get(n)
        if not rs:
            return "n/a (not run)"
        v, k, why = med(rs, key)
        if v is None:
            return na(why)
        s = fmt(v * scale if isinstance(v, (int, float)) and not isinstance(v, bool) else v, digits)
        if k < len(rs):
            s += f" ({k}/{len(rs)} ok)"
        return s

    def ratio_cell(results_by_server, n, key, digits=2, base=BASELINE):
        r = paired_ratio(results_by_server, n, key, base, un)
        return "n/a" if r is None else f"{r:.{digits}f}"

    # echo
    L.append("## Echo: closed-loop round trips\n")
    L.append(f"Each connection sends S bytes, waits for all S back (checked byte for byte), repeats. "
             f"Window {cfg['echo_seconds']} s after {cfg['echo_warmup']} s warm-up. "
             "Server CPU = utime+stime of the server from /proc/PID/stat over exactly the measured window "
             "(read by the load generator at its window edges; 10 ms tick resolution), divided by round trips. "
             "MB/s is payload echoed per second (one direction). "
             "Load-gen CPU is the load generator's own CPU share of the window (1.0 = one core saturated); "
             "other CPU is what the rest of the machine used meanwhile (all CPUs' busy time from /proc/stat minus "
             "server and load generator; > 0.1 means the figures are disturbed).\n")
    L.append("| test | server | round trips/s | ratio to uv-echo | MB/s | server CPU µs/rt | CPU ratio (sequential) | p50 µs | p99 µs | load-gen CPU | other CPU |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, by in res["echo"].items():
        c, s = key.split("x")
        label = f"{c} conn × {human_size(int(s))}"
        for n in servers:
            L.append(f"| {label} | {n} | {cell(by, n, 'rt_per_s')} | {ratio_cell(by, n, 'rt_per_s')} | "
                     f"{cell(by, n, 'mb_per_s', 1)} | {cell(by, n, 'server_cpu_us_per_rt', 2)} | "
                     f"{ratio_cell(by, n, 'server_cpu_us_per_rt')} | {cell(by, n, 'p50_us')} | "
                     f"{cell(by, n, 'p99_us')} | {cell(by, n, 'loadgen_cpu_frac', 2)} | "
                     f"{cell(by, n, 'other_cpu_frac', 2)} |")
    L.append("")
    if res.get("echo_ab"):
        ab_table(L, res, "echo_ab", BASELINE, cfg, cell,
                 f"### Server CPU side by side (A/B) against {BASELINE}\n", "the server")

    if res.get("async_echo"):
        L.append("## Async echo: async/await servers against Swisted's callback echo\n")
        L.append("The same closed-loop echo as above, in rounds of their own (interleaved among these servers): "
                 "`swisted-async-echo` (Swisted's `AsyncListener`/`AsyncConnection`, the accept loop and one child "
                 "task per connection on the reactor's executor: `for try await chunk in connection.inbound "
                 "{ try await connection.write(chunk) }`), `swisted-actor-echo` (the same loops isolated to an "
                 "actor on the reactor's executor, in tasks without an executor preference) and "
                 "`nio-async-echo` (SwiftNIO's `NIOAsyncChannel`, "
                 "the same loop), beside `swisted-echo` (callbacks). "
                 f"{cfg.get('async_rounds', cfg['rounds'])} rounds. "
                 f"Ratios are to {ASYNC_BASELINE}, the median of the per-round ratios (each server beside it in the "
                 "same round): throughput (higher is better) and server CPU per "
                 "round trip (lower is better). Issue #9's target: the async echo within 1.15× of "
                 f"{ASYNC_BASELINE}'s CPU per round trip and ahead of nio-async-echo; the CPU figure for it is "
                 "the side-by-side measurement in the next table (back-to-back windows on this VM vary by "
                 "20 % and more, so the sequential CPU ratio here is only indicative).\n")
        L.append(f"| test | server | round trips/s | ratio to {ASYNC_BASELINE} | server CPU µs/rt | "
                 f"CPU ratio to {ASYNC_BASELINE} (sequential) | p50 µs | p99 µs | load-gen CPU | other CPU |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, by in res["async_echo"].items():
            c, s = key.split("x")
            label = f"{c} conn × {human_size(int(s))}"
            for n in async_servers:
                L.append(f"| {label} | {n} | {cell(by, n, 'rt_per_s')} | "
                         f"{ratio_cell(by, n, 'rt_per_s', base=ASYNC_BASELINE)} | "
                         f"{cell(by, n, 'server_cpu_us_per_rt', 2)} | "
                         f"{ratio_cell(by, n, 'server_cpu_us_per_rt', base=ASYNC_BASELINE)} | "
                         f"{cell(by, n, 'p50_us')} | {cell(by, n, 'p99_us')} | "
                         f"{cell(by, n, 'loadgen_cpu_frac', 2)} | {cell(by, n, 'other_cpu_frac', 2)} |")
        L.append("")
    if res.get("async_ab"):
        ab_table(L, res, "async_ab", ASYNC_BASELINE, cfg, cell,
                 "### Server CPU side by side (A/B): the figure for issue #9's target\n", "the async server")

    # callgrind
    L.append("## Instructions per round trip (callgrind)\n")
    if not cfg["callgrind"]:
        L.append("Not run.\n")
    else:
        L.append(f"`valgrind --tool=callgrind` on a copy of the release binary without debug info "
                 f"(`strip --strip-debug`; valgrind 3.19 cannot read Swift's DWARF 5, the symbol table is kept so "
                 f"functions have names), 1 conn × 1 KiB, {cfg['callgrind_trips']:,} round trips. "
                 "Per round trip = (Ir of the run − Ir of an idle start/stop of the same binary) / trips. "
                 "User-space instructions only (callgrind does not see the kernel), all threads. "
                 f"{cfg['callgrind_rounds']} round(s): the counts are deterministic (during development three rounds "
                 "of each server agreed to within 0.1 %), so more rounds would only cost time.\n")
        L.append(f"Per connection: the same with {cfg['callgrind_conns']:,} connections made one after another "
                 "(connect, one 64 B echo, close), start/stop subtracted.\n")
        L.append("| server | Ir per round trip | ratio to uv-echo | Ir per connection | ratio to uv-echo | "
                 "Ir idle start/stop | Ir echo run | Ir churn run |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        by = res["callgrind"]
        for n in list(servers) + [a for a in async_only if a in by]:
            L.append(f"| {n} | {cell(by, n, 'ir_per_rt')} | {ratio_cell(by, n, 'ir_per_rt')} | "
                     f"{cell(by, n, 'ir_per_conn')} | {ratio_cell(by, n, 'ir_per_conn')} | "
                     f"{cell(by, n, 'ir_idle')} | {cell(by, n, 'ir_run')} | {cell(by, n, 'ir_churn')} |")
        L.append("")

    # alloc
    L.append("## Allocations per round trip (server)\n")
    L.append("`tools/malloccount.c`, an LD_PRELOAD library built by the driver with gcc, counts "
             "malloc/calloc/realloc/posix_memalign/aligned_alloc/memalign/valloc calls (and frees) in the whole server "
             "process; the load generator sends SIGUSR2 at the start and end of its measured window and the library "
             f"appends the counts to a file. Echo: 1 conn × 1 KiB; churn: 4 concurrent loops of connect, "
             f"one 64 B echo, close (each in its own server process); {cfg['alloc_seconds']} s windows, "
             f"{cfg['alloc_rounds']} round(s).\n")
    L.append("| server | allocations / rt | frees / rt | round trips in window | allocations / connection (churn) | frees / connection | connections in window |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    by = res["alloc"]
    for n in list(servers) + list(async_only):
        L.append(f"| {n} | {cell(by, n, 'allocs_per_rt', 2)} | {cell(by, n, 'frees_per_rt', 2)} | "
                 f"{cell(by, n, 'round_trips')} | {cell(by, n, 'allocs_per_conn', 1)} | "
                 f"{cell(by, n, 'frees_per_conn', 1)} | {cell(by, n, 'connections')} |")
    L.append("")

    # idle
    L.append(f"## {cfg['idle_conns']:,} idle connections: server memory\n")
    L.append("VmRSS of the server from /proc/PID/status before the connections and once the server holds all "
             "of them (its /proc/PID/fd count grew by that many), divided by the number of connections. "
             f"The load generator opens them {IDLE_INFLIGHT} connects at a time; `s until all accepted` is the time "
             "from its start until the server holds them all: it shows the listen backlog (4096 for all three "
             "servers; with Swisted's default of 50, Twisted's, the queue overflows and the kernel delays "
             "connections by SYN-ACK retransmissions of 1 s and more). "
             "`after close` is VmRSS once the load generator closed them all; `fds released` says whether "
             "the server's fd count went back to where it was.\n")
    L.append("| server | RSS bytes / connection | s until all accepted | RSS before KiB | RSS with conns KiB | RSS after close KiB | fds released |")
    L.append("|---|---:|---:|---:|---:|---:|---|")
    by = res["idle"]
    for n in servers:
        L.append(f"| {n} | {cell(by, n, 'bytes_per_conn')} | {cell(by, n, 'accept_s', 1)} | "
                 f"{cell(by, n, 'rss0_kib')} | {cell(by, n, 'rss1_kib')} | "
                 f"{cell(by, n, 'rss_after_close_kib')} | {bool_cell(by, n, 'fds_released', un)} |")
    L.append("")

    # churn
    L.append("## Connection churn\n")
    L.append(f"{cfg['churn_conns']} concurrent loops of: connect, one echo of {cfg['churn_size']} B, close; "
             f"{cfg['churn_seconds']} s window. fd count of the server (/proc/PID/fd) before and after "
             "(after waiting up to 5 s for it to settle).\n")
    L.append("| server | connections/s | ratio to uv-echo | server CPU µs/conn | fds before | fds after | equal | load-gen CPU | other CPU |")
    L.append("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    by = res["churn"]
    for n in servers:
        L.append(f"| {n} | {cell(by, n, 'conn_per_s')} | {ratio_cell(by, n, 'conn_per_s')} | "
                 f"{cell(by, n, 'server_cpu_us_per_conn', 1)} | {cell(by, n, 'fd_before')} | "
                 f"{cell(by, n, 'fd_after')} | {bool_cell(by, n, 'fd_equal', un)} | "
                 f"{cell(by, n, 'loadgen_cpu_frac', 2)} | {cell(by, n, 'other_cpu_frac', 2)} |")
    L.append("")

    # reactor microbenchmarks
    L.append("## Reactor microbenchmarks\n")
    L.append(f"{MICRO_COUNT:,} operations each, ns per operation, medians of {cfg['rounds']} interleaved rounds "
             "(`Sources/swisted-micro`, `Sources/nio-micro`). callLater+cancel: schedule a delayed call and cancel "
             "it at once, on the loop's thread (NIO: `scheduleTask` + `cancel`); with 1,000 pending: each round "
             "cancels the oldest of 1,000 pending calls and schedules a new one; callFromThread: closures posted "
             "from another thread, first post to last run (NIO: `execute`).\n")
    L.append("| library | callLater+cancel ns | with 1,000 pending ns | callFromThread ns |")
    L.append("|---|---:|---:|---:|")
    by = res.get("micro", {})
    for n, _ in MICROS:
        if n not in by:
            L.append(f"| {n} | n/a | n/a | n/a |")
            continue
        L.append(f"| {n} | {cell(by, n, 'calllater_cancel_ns')} | {cell(by, n, 'calllater_cancel_1k_pending_ns')} | "
                 f"{cell(by, n, 'call_from_thread_ns')} |")
    L.append("")

    # shutdown
    L.append("## Clean shutdown\n")
    L.append("Exit codes of the servers after SIGTERM, over all measurements above (must all be 0).\n")
    L.append("| server | exit codes |")
    L.append("|---|---|")
    for n in dict.fromkeys(list(servers) + list(async_servers)):
        if n in un:
            L.append(f"| {n} | {na(un[n])} |")
            continue
        codes = {}
        for sect in ("echo", "async_echo", "alloc", "idle", "churn"):
            groups = res.get(sect, {}).values() if sect in ("echo", "async_echo") else [res[sect]]
            for g in groups:
                for r in g.get(n, []):
                    if not isinstance(r, BenchError) and "exit_code" in r:
                        codes[str(r["exit_code"])] = codes.get(str(r["exit_code"]), 0) + 1
        L.append(f"| {n} | " + (", ".join(f"{c}: {k}×" for c, k in sorted(codes.items())) or "n/a") + " |")
    L.append("")

    if hot:
        L.append("## Callgrind: where the instructions go, per round trip\n")
        L.append("Self cost of each function in the 1 × 1 KiB run minus its cost in the idle start/stop, divided by "
                 f"the {cfg['callgrind_trips']:,} round trips (so start-up work drops out); % of the per-round-trip total. "
                 "Unnamed libuv functions are its static (internal) functions.\n")
        for n, h in hot.items():
            L.append(f"### {n} ({h['total']:,.0f} Ir per round trip in all)\n")
            L.append("| Ir / round trip | % | function |")
            L.append("|---:|---:|---|")
            for ir, pc, fn in hot_rows(h["fns"], h["total"], 15):
                fn = short(fn, 140).replace("|", "\\|")
                L.append(f"| {ir:.1f} | {pc:.1f} | `{fn}` |")
            L.append("")
        for n, h in hot.items():
            # The async servers are compared with the callback echo, the others with the floor.
            ref = ASYNC_BASELINE if n in async_only and ASYNC_BASELINE in hot else BASELINE
            if n == ref or ref not in hot or not n.startswith("swisted"):
                continue
            base = hot[ref]["fns"]
            extra = h["total"] - hot[ref]["total"]
            diff = {f: v - base.get(f, 0.0) for f, v in h["fns"].items()}
            L.append(f"### {n} minus {ref}: where the extra {extra:,.0f} Ir per round trip go\n")
            L.append(f"Per function, {n}'s cost minus {ref}'s (functions only {ref} has, such as its "
                     "own callbacks, count negative and are not listed, so the rows add up to more than the "
                     "difference). Costs below ~5 Ir that are not a multiple of one per round trip are "
                     "usually one-time work (first connection) spread over the trips.\n")
            L.append("| extra Ir / round trip | % of the extra | function |")
            L.append("|---:|---:|---|")
            for ir, pc, fn in hot_rows(diff, extra, 15):
                fn = short(fn, 140).replace("|", "\\|")
                L.append(f"| {ir:.1f} | {pc:.1f} | `{fn}` |")
            L.append("")

    if hot_conn:
        for n, h in hot_conn.items():
            ref = ASYNC_BASELINE if n in async_only and ASYNC_BASELINE in hot_conn else BASELINE
            if n == ref or ref not in hot_conn or not n.startswith("swisted"):
                continue
            base = hot_conn[ref]
            extra = h["total"] - base["total"]
            diff = {f: v - base["fns"].get(f, 0.0) for f, v in h["fns"].items()}
            L.append(f"### {n} minus {ref} per connection (connect, one 64 B echo, close): "
                     f"{h['total']:,.0f} against {base['total']:,.0f} Ir\n")
            L.append("| extra Ir / connection | % of the extra | function |")
            L.append("|---:|---:|---|")
            for ir, pc, fn in hot_rows(diff, extra, 20):
                fn = short(fn, 140).replace("|", "\\|")
                L.append(f"| {ir:.1f} | {pc:.1f} | `{fn}` |")
            L.append("")

    L.append("## How to reproduce\n")
    L.append("```\nmake -C Benchmarks bench        # everything (< 10 min once built)\n"
             "make -C Benchmarks bench-quick  # ~70 s subset on a quiet machine\n```\n")
    L.append("Raw per-round data: `results.json`; callgrind profiles: `callgrind/` "
             "(`callgrind_annotate callgrind/callgrind.swisted-echo.out | swift demangle --simplified`).")
    return "\n".join(dedupe_na(line) for line in L) + "\n"


def dedupe_na(line):
    """In a table row, give an 'n/a (reason)' only once; repeats become 'n/a'."""
    if not line.startswith("| "):
        return line
    cells = line.split(" | ")
    seen = set()
    for i, c in enumerate(cells):
        core = c.rstrip(" |")
        if core.startswith("n/a ("):
            if core in seen:
                cells[i] = c.replace(core, "n/a")
            seen.add(core)
    return " | ".join(cells)


def bool_cell(by, n, key, un):
    if n in un:
        return na(un[n])
    rs = by.get(n, [])
    ok = [r for r in rs if not isinstance(r, BenchError)]
    if not ok:
        errs = [str(r) for r in rs if isinstance(r, BenchError)]
        return na(errs[0] if errs else "not run")
    yes = sum(1 for r in ok if r.get(key))
    return f"yes ({yes}/{len(ok)})" if yes == len(ok) else f"NO ({yes}/{len(ok)} yes)"


def human_size(n):
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


# ------------------------------------------------------------------ svg

def render_svg(res, cfg, servers, async_servers=()):
    """Grouped bar chart of ratios to uv-echo: throughput (higher is better) and
    server CPU per operation (lower is better); the async echo panels are
    ratios to swisted-echo."""
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]
    un = res["unavailable"]

    def r(by, n, key, base=BASELINE):
        return paired_ratio(by, n, key, base, un)

    panels = []
    groups = []
    for key, by in res["echo"].items():
        c, s = key.split("x")
        groups.append((f"{c}×{human_size(int(s))}", {n: r(by, n, "rt_per_s") for n in servers}))
    groups.append(("churn", {n: r(res["churn"], n, "conn_per_s") for n in servers}))
    panels.append(("Throughput relative to uv-echo (higher is better)", groups))
    groups = []
    for key, by in res["echo"].items():
        c, s = key.split("x")
        if res.get("echo_ab", {}).get(key):  # the side-by-side (A/B) ratio, where measured
            groups.append((f"{c}×{human_size(int(s))}", ab_medians(res, "echo_ab", key, servers, BASELINE)))
            continue
        groups.append((f"{c}×{human_size(int(s))}", {n: r(by, n, "server_cpu_us_per_rt") for n in servers}))
    groups.append(("churn", {n: r(res["churn"], n, "server_cpu_us_per_conn") for n in servers}))
    how = " (echo: side by side; churn: sequential rounds)" if res.get("echo_ab") else ""
    panels.append((f"Server CPU per round trip / connection relative to uv-echo{how} (lower is better)", groups))
    if res.get("callgrind"):
        panels.append(("User-space instructions (callgrind) relative to uv-echo (lower is better)",
                       [("Ir per round trip", {n: r(res["callgrind"], n, "ir_per_rt") for n in servers}),
                        ("Ir per connection", {n: r(res["callgrind"], n, "ir_per_conn") for n in servers})]))
    panels = [(t, g, list(servers)) for t, g in panels]
    if res.get("async_echo") and async_servers:
        for title, key in (("Async echo: round trips/s relative to swisted-echo (higher is better)", "rt_per_s"),
                           ("Async echo: server CPU per round trip relative to swisted-echo, side by side (lower is better)",
                            "server_cpu_us_per_rt")):
            groups = []
            for k, by in res["async_echo"].items():
                c, s = k.split("x")
                if key == "server_cpu_us_per_rt" and res.get("async_ab", {}).get(k):  # A/B, where measured
                    groups.append((f"{c}×{human_size(int(s))}",
                                   ab_medians(res, "async_ab", k, async_servers, ASYNC_BASELINE)))
                    continue
                groups.append((f"{c}×{human_size(int(s))}",
                               {n: r(by, n, key, ASYNC_BASELINE) for n in async_servers}))
            panels.append((title, groups, list(async_servers)))
    legend = list(dict.fromkeys(list(servers) + list(async_servers)))
    color_of = {n: colors[i % len(colors)] for i, n in enumerate(legend)}

    timed = [r for g in list(res["echo"].values()) + list(res.get("async_echo", {}).values()) + [res["churn"]]
             for rs in g.values() for r in rs if not isinstance(r, BenchError)]
    disturbed = sum(1 for r in timed if r.get("other_cpu_frac", 0) > DISTURBED)
    W, PH, top, left, right = 900, 300, 70, 60, 20
    H = top + len(panels) * (PH + 70) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
           f'Swisted echo benchmarks ({esc(res["date"])}{", quick subset" if res["quick"] else ""})</text>']
    if disturbed:
        out.append(f'<text x="{left}" y="60" fill="#c00">{disturbed} of {len(timed)} '
                   'timed measurements disturbed by other processes</text>')
    # legend
    lx = left
    for n in legend:
        out.append(f'<rect x="{lx}" y="30" width="12" height="12" fill="{color_of[n]}"/>')
        label = n + (" (n/a)" if n in un else "")
        out.append(f'<text x="{lx + 16}" y="40">{esc(label)}</text>')
        lx += 20 + 8 * len(label) + 20
    y0 = top + 10
    for title, groups, names in panels:
        vals = [v for _, g in groups for v in g.values() if v is not None]
        vmax = max(vals + [1.0]) * 1.15
        ph = PH - 30
        base_y = y0 + 25 + ph
        out.append(f'<text x="{left}" y="{y0 + 15}" font-size="13" font-weight="bold">{esc(title)}</text>')
        # axis + grid
        step = nice_step(vmax)
        t = 0.0
        while t <= vmax + 1e-9:
            yy = base_y - t / vmax * ph
            out.append(f'<line x1="{left}" x2="{W - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 5}" y="{yy + 4:.1f}" text-anchor="end">{t:.2g}</text>')
            t += step
        y1 = base_y - 1.0 / vmax * ph
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y1:.1f}" y2="{y1:.1f}" stroke="#333" '
                   'stroke-dasharray="4,3"/>')
        gw = (W - left - right) / max(1, len(groups))
        bw = min(40, (gw - 20) / max(1, len(names)))
        for gi, (glabel, g) in enumerate(groups):
            gx = left + gi * gw + (gw - bw * len(names)) / 2
            for si, n in enumerate(names):
                v = g.get(n)
                x = gx + si * bw
                if v is None:
                    out.append(f'<text x="{x + bw / 2:.1f}" y="{base_y - 4}" text-anchor="middle" '
                               'font-size="10" fill="#999">n/a</text>')
                    continue
                h = v / vmax * ph
                out.append(f'<rect x="{x + 1:.1f}" y="{base_y - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                           f'fill="{color_of[n]}"><title>{esc(n)}: {v:.3f}</title></rect>')
                out.append(f'<text x="{x + bw / 2:.1f}" y="{base_y - h - 3:.1f}" text-anchor="middle" '
                           f'font-size="10">{v:.2f}</text>')
            out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{base_y + 16}" text-anchor="middle">'
                       f'{esc(glabel)}</text>')
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{base_y}" y2="{base_y}" stroke="#333"/>')
        y0 += PH + 70
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(vmax):
    for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50, 100):
        if vmax / s <= 8:
            return s
    return vmax / 5


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    main()
