#!/usr/bin/python3
"""make bench: fwdlog measured standalone, against the limit, and side by side with
Docker's built-in fluentd driver through a real dockerd. Not part of make test.

Standalone: build/bench/framegen writes frames encoded as dockerd encodes them into
FIFOs registered with fwdlogd by StartLogging; build/bench/sink (a counting Forward
receiver) counts events on 127.0.0.1. fwdlogd's CPU time comes from
/proc/PID/task/*/schedstat (ns), its peak RSS from VmHWM. Each scenario runs ROUNDS
times on a fresh fwdlogd; the table shows medians.

End-to-end: a private dockerd (as the end-to-end tests start it), the busybox image,
`seq 1 1000000` with --log-driver fluentd (synchronous default, and fluentd-async=true)
and --log-driver fwdlog, alternating, to the same sink.

Output: a table on stdout, build/bench/results.json, build/bench/chart.png (gnuplot).
Options: --quick (1 round, shorter runs: a smoke test of the harness), --no-e2e,
--rounds N, --only TEXT (only the standalone scenarios whose name holds TEXT; no latency,
memory or end-to-end runs: `make bench BENCH_ARGS="--only parse="`, or "--only overflow"
for the aggregator-down scenarios with 10 and 1,000 containers).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import fwdtest  # noqa: E402
from fwdtest import Daemon, Fifo, info  # noqa: E402

BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
OUT = os.path.join(ROOT, "build", "bench")
FRAMEGEN = os.path.join(BUILD, "bench", "framegen")
SINK = os.path.join(BUILD, "bench", "sink")
PARSECOST = os.path.join(BUILD, "bench", "parsecost")

TARGETS = {"lines_per_s": 3000000, "ns_per_line": 300, "e2e_ratio": 3.0, "idle_rss_mib": 16,
           "p99_ms": 150}


def cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat: no 10 ms tick rounding)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1])
    return 0


class Sink:
    def __init__(self, tmp, latency=False, port=0):
        self.stats = os.path.join(tmp, "sink-%d.json" % time.monotonic_ns())
        args = [SINK, "--port", str(port), "--stats", self.stats]
        self.proc = subprocess.Popen(args + (["--latency"] if latency else []),
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])

    def read(self):
        for _ in range(100):
            try:
                with open(self.stats) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.005)
        raise RuntimeError("sink stats unreadable")

    def wait(self, n, timeout=120, settle=None):
        """Until n events arrived (or, with settle, until the count stops moving)."""
        deadline = time.time() + timeout
        last, since = -1, time.time()
        while time.time() < deadline:
            s = self.read()
            if s["events"] >= n:
                return s
            if settle is not None:
                if s["events"] != last:
                    last, since = s["events"], time.time()
                elif time.time() - since > settle:
                    return s
            time.sleep(0.003)
        return self.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        with open(self.stats) as f:
            return json.load(f)


def cleanup(tmp, d=None, sink=None, fifos=()):
    if d is not None:
        d.stop()
    if sink is not None:
        sink.stop()
    for f in fifos:
        f.close()
    subprocess.run(["rm", "-rf", tmp])


def start_fifos(d, tmp, n, fifos):
    """n FIFOs, each registered with StartLogging as a container of its own, into fifos."""
    for i in range(n):
        f = Fifo(tmp)
        fifos.append(f)
        st, body = d.api.start(f.path, info("%064x" % (i + 1)))
        assert body == {"Err": ""}, body


def framegen(fifos, lines, size, rate=0, stamp=False, kind=None):
    args = [FRAMEGEN, "--lines", str(lines), "--size", str(size)]
    args += ["--rate", str(rate)] if rate else []
    args += ["--kind", kind] if kind else []
    args += ["--stamp"] if stamp else []
    return subprocess.Popen(args + [f.path for f in fifos], stdout=subprocess.PIPE, text=True)


class Standalone:
    def __init__(self, quick):
        self.quick = quick

    def run(self, name, nfifo, lines, size, env=None, kind=None, events=1.0):
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        sink = Sink(tmp)
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % sink.port}
        e.update(env or {})
        d = Daemon(tmp, e, level="warn")
        fifos = []
        try:
            start_fifos(d, tmp, nfifo, fifos)
            total = nfifo * lines
            expect = int(total * events)  # multiline joins lines: fewer events than lines
            c0, t0 = cpu_ns(d.proc.pid), time.time()
            g = framegen(fifos, lines, size, kind=kind)
            g.wait()
            # the containers exit: dockerd calls StopLogging, which seals the last batches
            # (otherwise the last one would wait for flush-interval)
            for f in fifos:
                d.api.stop(f.path)
            s = sink.wait(expect, timeout=300)
            t1, c1 = time.time(), cpu_ns(d.proc.pid)
            if s["events"] != expect:
                raise RuntimeError("%s: %d of %d events arrived" % (name, s["events"], expect))
            return {"lines_per_s": total / (t1 - t0), "ns_per_line": (c1 - c0) / total,
                    "peak_rss_mib": status_kib(d.proc.pid, "VmHWM") / 1024.0,
                    "mb_per_s": total * size / (t1 - t0) / 1e6}
        finally:
            cleanup(tmp, d, sink, fifos)

    def scenarios(self):
        q = self.quick
        n = 200000 if q else 2000000
        return [
            ("1 FIFO x %d x 100 B" % n, 1, n, 100, {}),
            ("100 FIFOs x %d x 100 B" % (n // 100), 100, n // 100, 100, {}),
            ("1 FIFO x %d x 40 KiB (joined)" % (n // 400), 1, n // 400, 40 * 1024, {}),
            ("acks on", 1, n, 100, {"FLUENTD_REQUEST_ACK": "true"}),
            ("gzip on", 1, n, 100, {"FLUENTD_COMPRESS": "gzip"}),
            ("buffer-type=file", 1, n, 100, {"FWDLOG_BUFFER_TYPE": "file"}),
            ("parse=json, 200 B lines of 8 fields", 1, n, 200, {"FWDLOG_PARSE": "json"},
             "json"),
            ("multiline=java, 30% stack traces", 1, n, 90, {"FWDLOG_MULTILINE": "java"},
             "java", 0.8),
            ("parse=regex, 4 named groups", 1, n, 60, {
                "FWDLOG_PARSE": "regex",
                "FWDLOG_PARSE_REGEX": r"^(?<ip>\S+) - (?<method>[A-Z]+) (?<path>\S+) "
                                      r"(?<status>\d+) "}, "access"),
        ]

    def overflow(self, name, nfifo, lines, policy, limit):
        """Issue 13 item 8: the aggregator down, memory only (spool-limit 0, the default
        64 MiB buffer; 8 MiB with --quick), nfifo containers writing `lines` lines of 100 B each at full
        speed, so overflow drops most of them. batch-size 4k: small batches, as many
        quiet containers make, so the queue is long (about 15,000 batches). fwdlogd's CPU
        per line read, from the first line to the last StopLogging: flat when choosing
        what to drop does not walk the queue."""
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        port = fwdtest.free_port()
        d = Daemon(tmp, {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FWDLOG_SPOOL_LIMIT": "0",
                         "FLUENTD_BUFFER_LIMIT": limit, "FWDLOG_BATCH_SIZE": "4k",
                         "FWDLOG_OVERFLOW_POLICY": policy},
                   level="error")
        fifos = []
        try:
            start_fifos(d, tmp, nfifo, fifos)
            total = nfifo * lines
            c0, t0 = cpu_ns(d.proc.pid), time.time()
            framegen(fifos, lines, 100).wait()
            for f in fifos:
                d.api.stop(f.path)  # drains the FIFO and seals its last batch
            t1, c1 = time.time(), cpu_ns(d.proc.pid)
            m = d.api.metrics()
            if m["fwdlog_records_total"] != total:
                raise RuntimeError("%s: %d of %d lines read" % (name, m["fwdlog_records_total"],
                                                                total))
            return {"lines_per_s": total / (t1 - t0), "ns_per_line": (c1 - c0) / total,
                    "peak_rss_mib": status_kib(d.proc.pid, "VmHWM") / 1024.0,
                    "dropped": m["fwdlog_records_dropped_total"]}
        finally:
            cleanup(tmp, d, fifos=fifos)

    def overflow_scenarios(self):
        # about 300 MB of records: with the default 64 MiB buffer most are dropped
        n, limit = (200000, "8m") if self.quick else (2000000, "64m")
        return [("overflow: %d FIFOs x %d, %s" % (k, n // k, p), k, n // k, p, limit)
                for p in ("drop-oldest", "drop-newest") for k in (10, 1000)]

    def latency(self, seconds=10, rate=10000):
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        sink = Sink(tmp, latency=True)
        d = Daemon(tmp, {"FLUENTD_ADDRESS": "127.0.0.1:%d" % sink.port}, level="warn")
        f = Fifo(tmp)
        try:
            d.api.start(f.path, info("%064x" % 7))
            g = framegen([f], rate * seconds, 100, rate=rate, stamp=True)
            g.wait()
            sink.wait(rate * seconds, timeout=30)
        finally:
            d.stop()
            s = sink.stop()
            cleanup(tmp, fifos=[f])
        return {"rate": rate, "seconds": seconds, "samples": s.get("latency_samples", 0),
                "p50_ms": s.get("p50_ns", 0) / 1e6, "p99_ms": s.get("p99_ns", 0) / 1e6,
                "max_ms": s.get("max_ns", 0) / 1e6}

    def idle_rss(self, n=200):
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        sink = Sink(tmp)
        d = Daemon(tmp, {"FLUENTD_ADDRESS": "127.0.0.1:%d" % sink.port}, level="warn")
        fifos = []
        try:
            for i in range(n):
                f = Fifo(tmp)
                fifos.append(f)
                d.api.start(f.path, info("%064x" % (i + 1)))
                f.write(fwdtest.frame(time_nano=1, line=b"hello"))
            sink.wait(n, timeout=30)
            time.sleep(0.5)
            return {"containers": n, "rss_mib": status_kib(d.proc.pid, "VmRSS") / 1024.0}
        finally:
            cleanup(tmp, d, sink, fifos)

    def reattach(self, n=200):
        """fwdlogd SIGKILLed with n streams attached, then started again: how long until
        its API answers (the streams are re-opened before it listens), and until a line
        written to every FIFO while it was down has arrived."""
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        sink = Sink(tmp)
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % sink.port}
        d = Daemon(tmp, env, level="warn")
        fifos = []
        try:
            for i in range(n):
                f = Fifo(tmp)
                fifos.append(f)
                d.api.start(f.path, info("%064x" % (i + 1)))
                f.write(fwdtest.frame(time_nano=1, line=b"before"))
            sink.wait(n, timeout=30)
            d.proc.kill()
            d.proc.wait()
            d.logf.close()
            os.unlink(d.sock)
            for f in fifos:
                f.write(fwdtest.frame(time_nano=2, line=b"while down"))
            t0 = time.time()
            d = Daemon(tmp, env, level="warn")
            t_api = time.time() - t0
            s = sink.wait(2 * n, timeout=30)
            t_all = time.time() - t0
            return {"streams": n, "api_ms": t_api * 1000, "all_read_ms": t_all * 1000,
                    "delivered": s["events"] - n}
        finally:
            cleanup(tmp, d, sink, fifos)

    def outage_rss(self, seconds=60, rate=5000):
        """RSS while the aggregator is down for `seconds` at `rate` lines/s, default limits;
        then the aggregator comes up and every line must arrive."""
        tmp = tempfile.mkdtemp(prefix="fwdbench-")
        port = fwdtest.free_port()
        d = Daemon(tmp, {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port}, level="warn")
        f = Fifo(tmp)
        peak, samples = 0, []
        try:
            d.api.start(f.path, info("%064x" % 9))
            g = framegen([f], rate * seconds, 100, rate=rate)
            while g.poll() is None:
                rss = status_kib(d.proc.pid, "VmRSS") / 1024.0
                peak = max(peak, rss)
                samples.append(rss)
                time.sleep(0.25)
            time.sleep(0.5)
            sink = Sink(tmp, port=port)
            s = sink.wait(rate * seconds, timeout=120)
            sink.stop()
            return {"seconds": seconds, "rate": rate, "peak_rss_mib": peak,
                    "limit_mib": 64 + 16, "delivered": s["events"], "sent": rate * seconds}
        finally:
            cleanup(tmp, d, fifos=[f])


class EndToEnd:
    """The same container through Docker's built-in fluentd driver and through fwdlog."""

    def __init__(self, lines):
        from dockerenv import IMAGE, Dockerd
        self.image = IMAGE
        self.lines = lines
        self.d = Dockerd()

    def __enter__(self):
        self.d.start()
        self.d.import_busybox()
        self.d.install_plugin()
        self.tmp = tempfile.mkdtemp(prefix="fwdbench-")
        self.sink = Sink(self.tmp)
        return self

    def __exit__(self, *exc):
        self.sink.stop()
        self.d.docker("plugin", "disable", "-f", "fwdlog", check=False)
        self.d.cleanup()

    def fwdlogd_pid(self):
        r = subprocess.run(["pgrep", "-x", "fwdlogd"], capture_output=True, text=True)
        pids = [int(p) for p in r.stdout.split()]
        # the plugin's: not one this benchmark started (those run under /tmp/fwdbench-*)
        for p in pids:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                if b"/tmp/fwdbench" not in f.read():
                    return p
        return None

    def once(self, driver, opts):
        before = self.sink.read()["events"]
        dpid, ppid = self.d.proc.pid, self.fwdlogd_pid()
        c0 = cpu_ns(dpid)
        p0 = cpu_ns(ppid) if driver == "fwdlog" and ppid else 0
        t0 = time.time()
        args = ["run", "--rm", "--network", "none", "--log-driver", driver,
                "--log-opt", "fluentd-address=127.0.0.1:%d" % self.sink.port]
        for o in opts:
            args += ["--log-opt", o]
        self.d.docker(*(args + [self.image, "seq", "1", str(self.lines)]), timeout=600)
        t_exit = time.time()
        s = self.sink.wait(before + self.lines, timeout=300, settle=5)
        got = s["events"] - before
        t1 = s["last_ns"] / 1e9 if got else time.time()
        c1 = cpu_ns(dpid)
        p1 = cpu_ns(ppid) if driver == "fwdlog" and ppid else 0
        return {"lines_per_s": got / max(t1 - t0, 1e-9), "delivered": got,
                "lost": self.lines - got, "container_s": t_exit - t0,
                "dockerd_ns_per_line": (c1 - c0) / self.lines,
                "fwdlogd_ns_per_line": (p1 - p0) / self.lines}


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) // 1024
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "cpu": model, "mem_mib": total, "kernel": platform.release()}


def chart(res, path):
    data = os.path.join(OUT, "chart.dat")
    with open(data, "w") as f:
        for name, r in res["standalone"].items():
            f.write('"%s" %.0f\n' % (name.replace('"', "'"), r["lines_per_s"] / 1000))
        for name, r in res.get("e2e", {}).items():
            f.write('"e2e: %s" %.0f\n' % (name, r["lines_per_s"] / 1000))
    script = """set terminal pngcairo size 1100,600 noenhanced
set output '%s'
set title 'fwdlog: thousands of lines per second (%s, %d CPUs)'
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -30 left
set ylabel 'k lines/s'
set grid ytics
set offsets 0, 0, graph 0.08, 0
set bmargin 9
plot '%s' using 0:2:xtic(1) with boxes notitle, '' using 0:2:(sprintf('%%d', $2)) with labels offset 0,1 notitle
""" % (path, res["machine"]["date"], res["machine"]["cpus"], data)
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print("gnuplot failed: " + r.stderr.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    os.makedirs(OUT, exist_ok=True)
    res = {"machine": machine(), "rounds": rounds, "targets": TARGETS, "standalone": {}}
    m = res["machine"]
    print("fwdlog benchmark, %s, %s (%d CPUs, %d MiB), Linux %s, medians of %d rounds" %
          (m["date"], m["cpu"], m["cpus"], m["mem_mib"], m["kernel"], rounds))

    sa = Standalone(a.quick)
    print("\n%-36s %12s %10s %10s %9s" % ("standalone", "lines/s", "ns/line", "peak RSS", "MB/s"))
    for sc in sa.scenarios():
        name = sc[0]
        if a.only is not None and a.only not in name:
            continue
        runs = [sa.run(*sc) for _ in range(rounds)]
        r = {k: median_of(runs, k) for k in runs[0]}
        r["rounds"] = runs
        res["standalone"][name] = r
        print("%-36s %12.0f %10.0f %8.1f M %9.0f" % (name, r["lines_per_s"], r["ns_per_line"],
                                                    r["peak_rss_mib"], r["mb_per_s"]))

    res["overflow"] = {}
    for sc in sa.overflow_scenarios():
        name = sc[0]
        if a.only is not None and a.only not in name:
            continue
        if not res["overflow"]:
            print("\n%-42s %12s %10s %10s %10s" % ("aggregator down, memory full", "lines/s",
                                                    "ns/line", "peak RSS", "dropped"))
        runs = [sa.overflow(*sc) for _ in range(rounds)]
        r = {k: median_of(runs, k) for k in runs[0]}
        r["rounds"] = runs
        res["overflow"][name] = r
        print("%-42s %12.0f %10.0f %8.1f M %10.0f" % (name, r["lines_per_s"], r["ns_per_line"],
                                                       r["peak_rss_mib"], r["dropped"]))

    if a.only is None or any(a.only in k for k in ("parse=json", "parse=regex", "multiline")):
        r = json.loads(subprocess.run([PARSECOST], capture_output=True, text=True,
                                      check=True).stdout)
        res["parse_stages_alone"] = r
        print("\nparsing stages alone, in process, ns per line (fastest of 15 rounds): "
              "JSON with jansson (a tree) %.0f, parse=json %.0f, parse=regex %.0f, "
              "multiline=java %.0f" % (r["jansson_ns"], r["json_ns"], r["regex_ns"],
                                       r["java_ns"]))
    if a.only is not None:
        with open(os.path.join(OUT, "results-only.json"), "w") as f:
            json.dump(res, f, indent=2)
        return
    lat = sa.latency(seconds=3 if a.quick else 10)
    res["latency"] = lat
    print("\nlatency at %d lines/s (default flush settings): p50 %.1f ms, p99 %.1f ms, max "
          "%.1f ms (%d samples)" % (lat["rate"], lat["p50_ms"], lat["p99_ms"], lat["max_ms"],
                                    lat["samples"]))
    idle = sa.idle_rss()
    res["idle"] = idle
    print("RSS with %d idle containers attached: %.1f MiB" % (idle["containers"], idle["rss_mib"]))
    ra = sa.reattach()
    res["reattach"] = ra
    print("restart after SIGKILL with %d streams: API answers after %.0f ms, a line from every "
          "FIFO delivered after %.0f ms (%d of %d)" % (ra["streams"], ra["api_ms"],
                                                       ra["all_read_ms"], ra["delivered"],
                                                       ra["streams"]))
    out = sa.outage_rss(seconds=10 if a.quick else 60)
    res["outage"] = out
    print("RSS over a %d s aggregator outage at %d lines/s (default limits): peak %.1f MiB "
          "(bound %d MiB); afterwards %d of %d lines delivered" %
          (out["seconds"], out["rate"], out["peak_rss_mib"], out["limit_mib"], out["delivered"],
           out["sent"]))

    if not a.no_e2e:
        lines = 200000 if a.quick else 1000000
        modes = [("fluentd (built-in, sync)", "fluentd", []),
                 ("fwdlog", "fwdlog", []),
                 ("fluentd (built-in, async)", "fluentd", ["fluentd-async=true"])]
        runs = {name: [] for name, _, _ in modes}
        with EndToEnd(lines) as e2e:
            for _ in range(rounds):
                for name, drv, opts in modes:
                    runs[name].append(e2e.once(drv, opts))
        res["e2e"] = {}
        print("\n%-28s %12s %8s %14s %14s %8s" % ("end-to-end, seq 1 %d" % lines, "lines/s",
                                                    "ratio", "dockerd ns/l", "fwdlogd ns/l",
                                                    "lost"))
        base = median_of(runs[modes[0][0]], "lines_per_s")
        for name, _, _ in modes:
            r = {k: median_of(runs[name], k) for k in runs[name][0]}
            r["rounds"] = runs[name]
            r["ratio_to_builtin_sync"] = r["lines_per_s"] / base
            res["e2e"][name] = r
            print("%-28s %12.0f %7.2fx %14.0f %14.0f %8d" % (
                name, r["lines_per_s"], r["ratio_to_builtin_sync"], r["dockerd_ns_per_line"],
                r["fwdlogd_ns_per_line"], max(x["lost"] for x in runs[name])))

    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    chart(res, os.path.join(OUT, "chart.png"))
    print("\nwrote %s and %s" % (os.path.join(OUT, "results.json"),
                                 os.path.join(OUT, "chart.png")))


if __name__ == "__main__":
    main()
