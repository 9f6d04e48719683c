#!/usr/bin/python3
"""End-to-end tests: fwdlog as a managed plugin in a real dockerd.

Setup (tests/e2e/dockerenv.py): a private dockerd with container networking off, the
busybox-static image, the plugin from `make plugin-local` enabled with --timeout 0, and
the project's Forward receiver on 127.0.0.1. Every container runs with --network none.
Each case checks the records that arrive, exactly."""
import os
import re
import shutil
import signal
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import fwdtest  # noqa: E402
from dockerenv import IMAGE, ROOT, Dockerd  # noqa: E402
from fwdtest import Receiver, logs, wait_until  # noqa: E402
from rootfs import trace as rootfs_trace  # noqa: E402

D = None
# fwdlogd starts once, once more per dockerd restart (the daemon.json case restarts it
# twice) and once more per restart a case causes on purpose (each adds to this).
EXPECTED_STARTS = 3


def setUpModule():
    global D
    D = Dockerd()
    try:
        D.start()
        D.import_busybox()
        t0 = time.time()
        D.install_plugin()
        print("e2e: plugin (%s) ready in %.0f s%s" % (
            D.mode, time.time() - t0, "".join(", %s %.0f s" % kv for kv in D.timings.items())),
            file=sys.stderr)
    except Exception:
        D.cleanup()
        raise


def tearDownModule():
    if D is None:
        return
    log = D.logtext()
    D.cleanup()
    # fwdlogd's stderr reaches dockerd's log: a crash there must fail the suite even when
    # dockerd restarted the plugin and the cases themselves passed.
    bad = [m for m in ("AddressSanitizer", "runtime error:", "stack smashing",
                       "Segmentation fault") if m in log]
    starts = len(re.findall(r"fwdlogd \S+ listening", log))
    print("e2e: fwdlogd started %d times in dockerd's log" % starts, file=sys.stderr)
    if bad:
        raise AssertionError("fwdlogd reported %s in the dockerd log" % ", ".join(bad))
    if not D.external and starts == 0:
        raise AssertionError("no fwdlogd start in dockerd's log: the crash check below "
                             "would see nothing (has the start message changed?)")
    if not D.external and starts > EXPECTED_STARTS:
        raise AssertionError("fwdlogd started %d times, %d expected: the plugin crashed and "
                             "was restarted" % (starts, EXPECTED_STARTS))


class E2E(unittest.TestCase):
    def setUp(self):
        self.tmp = fwdtest.tmpdir()
        self.recvs = []
        self.containers = []

    def tearDown(self):
        for c in self.containers:
            D.docker("rm", "-f", c, check=False)
        errs = []
        for r in self.recvs:
            r.stop()
            if not r.expect_errors:
                errs += r.errors()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(errs, [], "the receiver reported protocol errors")

    def receiver(self, **kw):
        r = Receiver(self.tmp, name="r%d" % len(self.recvs), **kw)
        self.recvs.append(r)
        return r

    def run_container(self, *args, detach=False, driver="fwdlog", port=None, opts=(),
                      check=True, timeout=120):
        cmd = ["run", "--network", "none"]
        cmd += ["-d"] if detach else []
        cmd += ["--log-driver", driver]
        if port is not None:
            cmd += ["--log-opt", "fluentd-address=127.0.0.1:%d" % port]
        for o in opts:
            cmd += ["--log-opt", o]
        cmd += list(args)
        r = D.docker(*cmd, check=check, timeout=timeout)
        if detach and r.returncode == 0:
            self.containers.append(r.stdout.strip())
        return r

    def assert_plugin_never_restarted(self, since):
        """since: len(D.logtext()) when the case began."""
        log = D.logtext()[since:]
        lacked = [ln for ln in log.splitlines() if "must be installed for" in ln]
        self.assertEqual(lacked, [], "fwdlogd lacked a library at run time")
        starts = [ln for ln in log.splitlines() if re.search(r"fwdlogd \S+ listening", ln)]
        self.assertEqual(starts, [], "fwdlogd started again: it crashed, dockerd restarted it")

    def cid_of(self, name):
        return D.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()

    def per_container(self, r):
        by = {}
        for e in r.records():
            by.setdefault(e["record"]["container_name"], []).append(e["record"]["log"])
        return by

    def wait_progress(self, r, names, since, timeout):
        """Every container's count passes what it had in since, within timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            by = self.per_container(r)
            if all(len(by.get("/" + n, [])) > since.get("/" + n, 0) for n in names):
                return True
            time.sleep(0.1)
        return False

    def stop_all(self, names):
        took = {}
        for n in names:
            t0 = time.time()
            D.docker("stop", "-t", "2", n, timeout=60)
            took[n] = time.time() - t0
        return took

    def check_counts(self, r, names, lossless):
        """Each container's lines 0..n-1 then END n, in order per container."""
        deadline = time.time() + 90
        while time.time() < deadline:
            by = self.per_container(r)
            if all(any(x.startswith("END ") for x in by.get("/" + n, [])) for n in names):
                break
            time.sleep(0.2)
        time.sleep(1)
        by = self.per_container(r)
        lost = dups = 0
        for n in names:
            got = by.get("/" + n, [])
            ends = [x for x in got if x.startswith("END ")]
            self.assertEqual(len(set(ends)), 1, "%s: one END line: %r" % (n, ends))
            # the trap may run between "echo $i" and the increment: then $i was printed too
            total = int(ends[0].split()[1])
            nums = [int(x) for x in got if not x.startswith("END ")]
            missing = set(range(total)) - set(nums)
            self.assertEqual(set(nums) - set(range(total + 1)), set(), n)
            lost += len(missing)
            dups += len(nums) - len(set(nums))
            if lossless:
                self.assertEqual(missing, set(), "%s lost %d of %d lines" % (n, len(missing),
                                                                              total))
        return lost, dups


class TestDelivery(E2E):
    def test_stdout_stderr_keys_tag_labels_env(self):
        r = self.receiver()
        self.run_container("--name", "web1", "--label", "team=core", "--label", "tier=fe",
                           "-e", "APP=shop", "-e", "SECRET=x", IMAGE, "sh", "-c",
                           "echo out1; echo err1 >&2; echo out2",
                           port=r.port, opts=["labels=team", "env=APP"])
        self.containers.append("web1")
        cid = self.cid_of("web1")
        evs = r.wait_exact(3)
        base = {"container_id": cid, "container_name": "/web1", "team": "core", "APP": "shop"}
        by_src = {}
        for e in evs:
            self.assertEqual(e["tag"], cid[:12])  # default tag {{.ID}}
            self.assertEqual(e["time_type"], "eventtime")
            by_src.setdefault(e["record"]["source"], []).append(e["record"])
        self.assertEqual(by_src["stdout"], [dict(base, source="stdout", log="out1"),
                                            dict(base, source="stdout", log="out2")])
        self.assertEqual(by_src["stderr"], [dict(base, source="stderr", log="err1")])

    def test_custom_tag_template(self):
        r = self.receiver()
        self.run_container("--name", "tagged", IMAGE, "echo", "hi", port=r.port,
                           opts=["tag=docker.{{.Name}}.{{.ImageName}}.{{.ID}}"])
        self.containers.append("tagged")
        ev = r.wait_exact(1)[0]
        self.assertEqual(ev["tag"], "docker.tagged.%s.%s" % (IMAGE, self.cid_of("tagged")[:12]))

    def test_100k_line_is_one_record(self):
        r = self.receiver()
        # 102400 'x' then a newline: dockerd splits it into 7 chunks of 16 KiB
        self.run_container("--rm", IMAGE, "sh", "-c",
                           "head -c 102400 /dev/zero | tr '\\0' x; echo; echo next",
                           port=r.port)
        evs = r.wait_exact(2)
        self.assertEqual(evs[0]["record"]["log"], "x" * 102400)
        self.assertNotIn("partial_message", evs[0]["record"])
        self.assertEqual(evs[1]["record"]["log"], "next")

    def test_fifty_containers_ten_thousand_lines_each(self):
        r = self.receiver()
        n, per = 50, 5000  # 5000 stdout + 5000 stderr lines per container
        names = ["bulk%d" % i for i in range(n)]
        errs = []

        def start(name):
            # The Python receiver is far slower than 50 containers can burst: give the
            # buffer room for the whole burst, since this case is about nothing lost.
            res = self.run_container("--name", name, IMAGE, "sh", "-c",
                                     "seq 1 %d & seq 1 %d >&2; wait" % (per, per),
                                     detach=True, port=r.port, check=False,
                                     opts=["fluentd-buffer-limit=256m"])
            if res.returncode != 0:
                errs.append(res.stderr)
            else:
                self.containers.append(name)
        threads = [threading.Thread(target=start, args=(nm,)) for nm in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errs, [])
        evs = r.wait_exact(n * per * 2, timeout=240, quiet=2)
        seqs = {}
        for e in evs:
            rec = e["record"]
            seqs.setdefault((rec["container_name"], rec["source"]), []).append(rec["log"])
        want = [str(i) for i in range(1, per + 1)]
        for nm in names:
            for src in ("stdout", "stderr"):
                self.assertEqual(seqs[("/" + nm, src)], want, "%s %s" % (nm, src))

    def test_aggregator_by_name(self):
        # localhost:PORT, like the default address and the README's examples: the plugin
        # resolves the name itself. With glibc's getaddrinfo_a (before c-ares), a rootfs
        # without libgcc_s made fwdlogd abort when the resolver thread exited, and dockerd
        # restarted it: all 100 records arrived, then the plugin was gone.
        r = self.receiver()
        before = len(D.logtext())
        self.run_container("--rm", IMAGE, "seq", "1", "100",
                           opts=["fluentd-address=localhost:%d" % r.port])
        evs = r.wait(100)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 101)])
        # getaddrinfo_a's thread exited after 1 s idle; the crash came then.
        time.sleep(3)
        self.run_container("--rm", IMAGE, "echo", "after",
                           opts=["fluentd-address=localhost:%d" % r.port])
        self.assertEqual([e["record"]["log"] for e in r.wait(101)][100:], ["after"])
        self.assert_plugin_never_restarted(before)
        self.assertEqual(r.errors(), [])

    def test_docker_logs_works(self):
        r = self.receiver()
        self.run_container("--name", "logs1", IMAGE, "sh", "-c", "echo one; echo two >&2",
                           port=r.port)
        self.containers.append("logs1")
        out = D.docker("logs", "logs1")
        self.assertEqual(out.stdout, "one\n")
        self.assertEqual(out.stderr, "two\n")
        evs = r.wait_exact(2)
        self.assertEqual(sorted((e["record"]["source"], e["record"]["log"]) for e in evs),
                         [("stderr", "two"), ("stdout", "one")])


class TestFailures(E2E):
    def test_bad_log_opt_fails_docker_run_with_our_message(self):
        res = self.run_container("--rm", IMAGE, "echo", "x", port=1,
                                 opts=["fluentd-retry-wait=soon"], check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('fwdlog: invalid log-opt fluentd-retry-wait="soon"', res.stderr)
        res = self.run_container("--rm", IMAGE, "echo", "x", opts=["fluentd-adress=x"],
                                 check=False)
        self.assertIn("did you mean 'fluentd-address'", res.stderr)

    def test_aggregator_down_at_start(self):
        port = fwdtest.free_port()
        self.run_container("--name", "down1", IMAGE, "sh", "-c",
                           "seq 1 100; sleep 3; seq 101 200", detach=True, port=port,
                           opts=["fluentd-retry-wait=100ms"])
        # docker run -d returned: it started (StartLogging answered); it sleeps 3 s, so it
        # must still be running, not held back by the missing Fluentd
        state = D.docker("inspect", "-f", "{{.State.Running}}", "down1").stdout.strip()
        self.assertEqual(state, "true", "the container must start and run without Fluentd")
        r = self.receiver(port=port)
        evs = r.wait_exact(200, timeout=30)
        self.assertEqual(logs(evs), [str(i) for i in range(1, 201)])

    def test_stop_with_slow_aggregator_is_prompt_and_lossless(self):
        r = self.receiver(stall=8)
        self.run_container("--name", "slow1", IMAGE, "sh", "-c",
                           "seq 1 20000; sleep 600", detach=True, port=r.port)
        # until the container has written all 20000 lines (docker logs reads dockerd's cache)
        wait_until(lambda: D.docker("logs", "--tail", "1", "slow1").stdout == "20000\n", 30,
                   "the container's 20000 lines", interval=0.3)
        t0 = time.time()
        D.docker("stop", "-t", "1", "slow1")
        took = time.time() - t0
        self.assertLess(took, 6.0, "docker stop took %.1fs with a slow aggregator" % took)
        evs = r.wait_exact(20000, timeout=60)
        self.assertEqual(logs(evs), [str(i) for i in range(1, 20001)])


class TestOutage(E2E):
    def test_thirty_second_outage_never_blocks_the_container(self):
        # A burst far larger than the 64 KiB pipe, then a line every 100 ms for ~30 s, all
        # while nothing listens on the aggregator's port. If fwdlog stopped draining the FIFO
        # the container would block: dockerd's copier stamps each line when it reads it, so
        # a stall shows as a gap between the records' times (not as a slow machine's
        # longer run).
        port = fwdtest.free_port()
        script = ("seq 1 20000; i=0; while [ $i -lt 300 ]; do echo tick $i; i=$((i+1)); "
                  "sleep 0.1; done")
        self.run_container("--name", "outage", IMAGE, "sh", "-c", script, detach=True,
                           port=port, opts=["fluentd-retry-wait=100ms", "max-retry-wait=2s"])
        D.docker("wait", "outage", timeout=120)
        r = self.receiver(port=port)
        want = [str(i) for i in range(1, 20001)] + ["tick %d" % i for i in range(300)]
        evs = r.wait_exact(len(want), timeout=60)
        self.assertEqual(logs(evs), want)
        t = [e["time"][0] + e["time"][1] / 1e9 for e in evs]
        gap, at = max((b - a, i) for i, (a, b) in enumerate(zip(t, t[1:])))
        # ticks are 0.1 s apart; 3 s leaves room for a loaded machine, not for a block
        self.assertLess(gap, 3.0, "the container was held %.1fs before %r" % (gap, want[at + 1]))
        self.assertGreater(t[-1] - t[0], 25, "the ticks did not span the outage")

    def test_failover_to_a_second_aggregator_with_acks(self):
        # The first address has nobody listening; the second takes everything, acknowledged,
        # and the container is never held back by the dead one.
        dead = fwdtest.free_port()
        r = self.receiver()
        self.run_container("--name", "failover", IMAGE, "seq", "1", "30000",
                           opts=["fluentd-address=127.0.0.1:%d,127.0.0.1:%d" % (dead, r.port),
                                 "fluentd-request-ack=true", "fluentd-retry-wait=100ms"])
        self.containers.append("failover")
        evs = r.wait_exact(30000, timeout=60)
        self.assertEqual(logs(evs), [str(i) for i in range(1, 30001)])

    def test_file_buffer_through_an_outage_and_a_crash(self):
        # buffer-type=file: the batches wait as segment files in the plugin's state directory
        # (its propagated mount), survive a SIGKILL of fwdlogd, and arrive once dockerd has
        # restarted the plugin and the aggregator is up. Memory buffering would lose them.
        global EXPECTED_STARTS
        if D.external:
            self.skipTest("kills the plugin: only with the private daemon")
        port = fwdtest.free_port()
        self.run_container("--name", "filebuf", IMAGE, "seq", "1", "50000", port=port,
                           opts=["buffer-type=file", "fluentd-retry-wait=100ms",
                                 "max-retry-wait=500ms"])
        self.containers.append("filebuf")
        segs = wait_until(lambda: D.plugin_spool_segments(), 20, "segment files in the spool")
        pid = D.plugin_pid()
        EXPECTED_STARTS += 1
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(set(segs) <= set(D.plugin_spool_segments()),
                        "the segments did not survive the crash")
        wait_until(lambda: D.plugin_pid() not in (None, pid), 30, "dockerd restarting the plugin")
        r = self.receiver(port=port)
        evs = r.wait_exact(50000, timeout=60)
        self.assertEqual(logs(evs), [str(i) for i in range(1, 50001)])


# A container that prints numbered lines (20 every 10 ms) until docker stop, then "END n":
# with n, a test knows exactly which lines it wrote.
COUNTER = ("trap 'echo END $i; exit 0' TERM; i=0; while :; do echo $i; i=$((i+1)); "
           "[ $((i % 20)) -eq 0 ] && sleep 0.01; done")


class TestPluginRestart(E2E):
    """fwdlogd killed, or the plugin disabled and enabled, with containers running: they
    never freeze, docker stop stays prompt, and (buffer-type=file with acks) nothing is
    lost. dockerd never sends StartLogging again: fwdlogd re-attaches by itself."""

    def kill_plugin(self, sig=signal.SIGKILL):
        global EXPECTED_STARTS
        pid = wait_until(D.plugin_pid, 20, "fwdlogd running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            EXPECTED_STARTS += 1
        return pid

    def run_kills(self, opts, lossless):
        r = self.receiver()
        names = ["k%d" % i for i in range(10)]
        for n in names:
            self.run_container("--name", n, IMAGE, "sh", "-c", COUNTER, detach=True,
                               port=r.port, opts=opts)
        self.assertTrue(self.wait_progress(r, names, {}, 20), "lines before any kill")
        for k in range(3):
            before = {n: len(v) for n, v in self.per_container(r).items()}
            old = self.kill_plugin()
            t0 = time.time()
            self.assertTrue(self.wait_progress(r, names, before, 5.0),
                            "kill %d: every container's lines arrive again within 5 s" % k)
            self.assertNotEqual(D.plugin_pid(), old)
            print("  kill %d: lines again after %.2fs" % (k, time.time() - t0), file=sys.stderr)
            time.sleep(max(0, 5 - (time.time() - t0)))
        for n in names:
            state = D.docker("inspect", "-f", "{{.State.Running}}", n).stdout.strip()
            self.assertEqual(state, "true", "%s keeps running" % n)
        took = self.stop_all(names)
        self.assertLess(max(took.values()), 10, "docker stop -t 2 took %r" % took)
        lost, dups = self.check_counts(r, names, lossless)
        print("  %s: %d lines lost, %d duplicates" % (" ".join(opts) or "memory", lost, dups),
              file=sys.stderr)
        self.assertEqual(r.errors(), [])
        return lost, dups

    def test_sigkill_three_times_file_buffer_with_acks_loses_nothing(self):
        self.run_kills(["buffer-type=file", "fluentd-request-ack=true"], lossless=True)

    def test_sigkill_three_times_memory_buffer_never_freezes(self):
        self.run_kills([], lossless=False)

    def test_disable_force_then_enable_resumes(self):
        global EXPECTED_STARTS
        r = self.receiver()
        names = ["de0", "de1"]
        for n in names:
            self.run_container("--name", n, IMAGE, "sh", "-c", COUNTER, detach=True,
                               port=r.port, opts=["fluentd-request-ack=true",
                                                  "buffer-type=file"])
        self.assertTrue(self.wait_progress(r, names, {}, 20))
        D.docker("plugin", "disable", "-f", "fwdlog")
        time.sleep(2)  # the containers' pipes fill meanwhile; they block, and wait
        before = {n: len(v) for n, v in self.per_container(r).items()}
        D.docker("plugin", "enable", "--timeout", "0", "fwdlog")
        EXPECTED_STARTS += 1
        self.assertTrue(self.wait_progress(r, names, before, 5.0), "lines after enable")
        took = self.stop_all(names)
        self.assertLess(max(took.values()), 10, "docker stop -t 2 took %r" % took)
        self.check_counts(r, names, lossless=True)

    def test_container_exits_while_the_plugin_is_down(self):
        r = self.receiver()
        self.run_container("--name", "gone1", IMAGE, "sh", "-c", "sleep 2; seq 1 500",
                           detach=True, port=r.port)
        self.kill_plugin(signal.SIGSTOP)  # frozen: reads nothing, answers nothing
        try:
            # it writes (the pipe holds it) and exits; dockerd's StopLogging waits for an
            # answer (so docker wait would too)
            time.sleep(4)
        finally:
            self.kill_plugin(signal.SIGKILL)
        D.docker("wait", "gone1", timeout=60)
        evs = r.wait(500, timeout=30)
        time.sleep(1)
        self.assertEqual([e["record"]["log"] for e in r.records()],
                         [str(i) for i in range(1, 501)])
        streams = os.path.join(D.plugin_dir(), "propagated-mount", "streams")
        deadline = time.time() + 40
        while os.listdir(streams) and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(os.listdir(streams), [], "no state is left:\n" + D.logtail(60))


class TestLiveRestore(E2E):
    def test_dockerd_restart_with_live_restore_each_line_once(self):
        # dockerd exits (containers and the plugin keep running), the old FIFO reaches EOF,
        # and the new dockerd sends StartLogging again with a new FIFO for the same
        # container: the two streams must not both read or send twice.
        global EXPECTED_STARTS
        if D.external:
            self.skipTest("restarts dockerd: only with the private daemon")
        r = self.receiver()
        starts = D.plugin_starts()
        D.restart({"live-restore": True})
        try:
            self.run_container("--name", "lr1", IMAGE, "sh", "-c", COUNTER, detach=True,
                               port=r.port)
            self.assertTrue(self.wait_progress(r, ["lr1"], {}, 20))
            pid = wait_until(D.plugin_pid, 20, "fwdlogd running")
            D.restart({"live-restore": True})
            self.assertEqual(D.plugin_pid(), pid, "the plugin kept running")
            state = D.docker("inspect", "-f", "{{.State.Running}}", "lr1").stdout.strip()
            self.assertEqual(state, "true", "the container kept running")
            before = {n: len(v) for n, v in self.per_container(r).items()}
            self.assertTrue(self.wait_progress(r, ["lr1"], before, 10), "lines after restart")
            self.stop_all(["lr1"])
            lost, dups = self.check_counts(r, ["lr1"], lossless=True)
            self.assertEqual(dups, 0)
        finally:
            D.restart({})
            EXPECTED_STARTS += D.plugin_starts() - starts


class TestUpgrade(E2E):
    def test_upgrade_through_a_registry_with_containers_running(self):
        # v1 installed as users do, 5 containers writing, then the documented upgrade to a
        # v2 whose version string differs: disable -f, upgrade, enable. No dockerd restart,
        # no container restart; the FIFOs and the streams' states are in the
        # propagatedMount, which an upgrade keeps (the rootfs is replaced).
        global EXPECTED_STARTS
        from registry import Registry
        reg = getattr(D, "registry", None) or Registry(D.base)
        D.registry = reg
        refs = {}
        for tag, make_vars in (("v1", []), ("v2", ["BUILD=build/upgrade/v2-build",
                                                   "VERSION=0.1.0-upgraded"])):
            pdir = "build/upgrade/" + tag
            D.make("plugin-rootfs-local", "PLUGIN_DIR=" + pdir, *make_vars, timeout=900)
            refs[tag] = reg.ref("upgrade-" + tag)
            D.docker("plugin", "create", refs[tag], os.path.join(ROOT, pdir))
            D.docker("plugin", "push", refs[tag], timeout=300)
            D.docker("plugin", "rm", "-f", refs[tag])
        starts = D.plugin_starts()
        D.docker("plugin", "rm", "-f", "fwdlog")
        try:
            D.install_from_registry(refs["v1"])
            r = self.receiver()
            names = ["up%d" % i for i in range(5)]
            for n in names:
                self.run_container("--name", n, IMAGE, "sh", "-c", COUNTER, detach=True,
                                   port=r.port, opts=["mode=blocking"])
            self.assertTrue(self.wait_progress(r, names, {}, 20))
            t0 = time.time()
            D.docker("plugin", "disable", "-f", "fwdlog", timeout=60)
            # --skip-remote-check: another tag of the same repository counts as "images do
            # not match" to the CLI, which would prompt
            D.docker("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check",
                     "fwdlog", refs["v2"], timeout=300)
            # dockerd keeps the env settings across an upgrade, but mounts the new version's
            # default source for a mount whose source was set: set it again
            D.docker("plugin", "set", "fwdlog", "config.source=" + D.config_dir)
            D.docker("plugin", "enable", "--timeout", "0", "fwdlog", timeout=60)
            took = time.time() - t0
            before = {n: len(v) for n, v in self.per_container(r).items()}
            self.assertTrue(self.wait_progress(r, names, before, 10), "lines after the upgrade")
            self.assertIn("fwdlogd 0.1.0-upgraded listening", D.logtext())
            for n in names:
                st = D.docker("inspect", "-f", "{{.State.Running}}", n).stdout.strip()
                self.assertEqual(st, "true", "%s kept running" % n)
            self.stop_all(names)
            lost, dups = self.check_counts(r, names, lossless=True)
            self.assertEqual(dups, 0, "SIGTERM flushed what was read: nothing is sent twice")
            # how long a container was held back: the largest gap between its lines' times
            gap = 0.0
            for n in names:
                ts = [e["time"][0] + e["time"][1] / 1e9 for e in r.records()
                      if e["record"]["container_name"] == "/" + n]
                gap = max([gap] + [b - a for a, b in zip(ts, ts[1:])])
            print("  upgrade took %.1fs; a container's largest gap between lines %.2fs"
                  % (took, gap), file=sys.stderr)
        finally:
            D.docker("plugin", "rm", "-f", "fwdlog", check=False)
            D.reinstall_plugin()
            EXPECTED_STARTS += D.plugin_starts() - starts


class TestConfigMount(E2E):
    """The plugin's read-only /etc/fwdlog mount (config.json `mounts`, source settable):
    files named by TLS and *-file options reach an installed plugin through it."""

    def test_tls_with_a_ca_file_through_the_mount(self):
        pki = fwdtest.make_certs(self.tmp)
        shutil.copy(pki["ca.pem"], os.path.join(D.config_dir, "ca.crt"))
        self.addCleanup(os.unlink, os.path.join(D.config_dir, "ca.crt"))
        r = self.receiver(tls_cert=pki["server.pem"], tls_key=pki["server.key"])
        before = len(D.logtext())
        # by name: the certificate is for localhost, so the name is verified too. No acks:
        # a container that exits at once must not lose its tail over TLS 1.3 (the
        # connection is closed gracefully, after the receiver's session tickets were read)
        self.run_container("--rm", IMAGE, "seq", "1", "1000",
                           opts=["fluentd-address=tls://localhost:%d" % r.port,
                                 "fluentd-tls-ca-file=/etc/fwdlog/ca.crt"])
        evs = r.wait(1000)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 1001)])
        self.assertEqual(r.errors(), [])
        self.assertEqual([a for a in r.auths() if "fail" in a["auth"]], [])
        time.sleep(3)
        self.assert_plugin_never_restarted(before)

    def test_a_wrong_ca_through_the_mount_is_refused(self):
        pki = fwdtest.make_certs(self.tmp)
        shutil.copy(pki["other-ca.pem"], os.path.join(D.config_dir, "other.crt"))
        self.addCleanup(os.unlink, os.path.join(D.config_dir, "other.crt"))
        r = self.receiver(tls_cert=pki["server.pem"], tls_key=pki["server.key"])
        # a CA that did not sign the server: the handshake fails, nothing arrives
        self.run_container("--name", "wrongca", IMAGE, "echo", "x",
                           opts=["fluentd-address=tls://127.0.0.1:%d" % r.port,
                                 "fluentd-tls-ca-file=/etc/fwdlog/other.crt",
                                 "fluentd-retry-wait=100ms"])
        self.containers.append("wrongca")
        deadline = time.time() + 20
        while time.time() < deadline and not r.auths():
            time.sleep(0.1)
        self.assertTrue(r.auths() and "tls failed" in r.auths()[0]["auth"], r.auths())
        self.assertEqual(r.records(), [])
        # and a file that is not there names the option in docker run's error
        res = self.run_container("--rm", IMAGE, "echo", "x", check=False,
                                 opts=["fluentd-address=tls://127.0.0.1:%d" % r.port,
                                       "fluentd-tls-ca-file=/etc/fwdlog/missing.crt"])
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("fluentd-tls-ca-file", res.stderr)
        mounts = D.docker("plugin", "inspect", "-f", "{{json .Settings.Mounts}}",
                          "fwdlog").stdout
        self.assertIn('"Destination":"/etc/fwdlog"', mounts.replace(" ", ""))
        self.assertIn('"ro"', mounts)


class TestRootfs(E2E):
    def test_both_rootfs_variants_open_the_same_files(self):
        # What fwdlogd loads and reads at run time, resolving a name and using TLS, from
        # the Dockerfile's rootfs (what users install) and plugin-local's: a library or
        # file that one lacks is a crash or a different behaviour in the other.
        if D.mode != "release":
            self.skipTest("needs the Dockerfile's rootfs: make release-test")
        seen = {}
        for variant, rootfs in (("Dockerfile", D.release_rootfs), ("plugin-local",
                                                                  D.local_rootfs)):
            t = os.path.join(self.tmp, variant)
            os.makedirs(t)
            opened, missing, failure = rootfs_trace(rootfs, t)
            self.assertIsNone(failure, "%s rootfs: %s" % (variant, failure))
            self.assertEqual(sorted(missing), [], "%s rootfs lacks these" % variant)
            self.assertIn("so libssl.so.3", opened)
            self.assertIn("/etc/hosts", opened)
            seen[variant] = opened
        self.assertEqual(sorted(seen["Dockerfile"] - seen["plugin-local"]), [],
                         "opened from the Dockerfile's rootfs only")
        self.assertEqual(sorted(seen["plugin-local"] - seen["Dockerfile"]), [],
                         "opened from plugin-local's rootfs only")


class TestCompatibility(E2E):
    def test_same_record_as_builtin_fluentd_driver(self):
        r = self.receiver()
        script = "echo plain; echo 'with \"quotes\" and unicode é'; echo err >&2; echo"
        common = ["--label", "team=core", "-e", "APP=shop", IMAGE, "sh", "-c", script]
        opts = ["labels=team", "env=APP", "tag=cmp.{{.Name}}"]
        got = {}
        for driver in ("fluentd", "fwdlog"):
            name = "cmp"
            self.run_container("--name", name, *common, driver=driver, port=r.port, opts=opts)
            cid = self.cid_of(name)
            evs = r.wait_exact(4, pred=lambda e, c=cid: e["record"].get("container_id") == c)
            D.docker("rm", "-f", name)
            got[driver] = (cid, evs)
        (bcid, bevs), (fcid, fevs) = got["fluentd"], got["fwdlog"]

        def norm(evs, cid):
            out = []
            for e in evs:
                rec = dict(e["record"])
                self.assertEqual(rec.pop("container_id"), cid)
                out.append((e["tag"], rec["source"], sorted(rec.items())))
            return sorted(out)
        self.assertEqual(norm(bevs, bcid), norm(fevs, fcid))
        self.assertEqual({e["mode"] for e in bevs}, {"Message"})
        self.assertEqual({e["mode"] for e in fevs}, {"PackedForward"})


class TestParseAtTheSource(E2E):
    def test_json_lines_and_a_java_trace(self):
        r = self.receiver()
        script = ("printf '{\"level\":\"info\",\"msg\":\"hello\",\"n\":1}\\n"
                  "java.lang.IllegalStateException: boom\\n"
                  "\\tat com.example.Service.handle(Service.java:42)\\n"
                  "\\tat com.example.Main.main(Main.java:7)\\n"
                  "{\"level\":\"warn\",\"n\":2,\"ok\":true,\"source\":\"app\"}\\n'")
        self.run_container("--name", "parsed", IMAGE, "sh", "-c", script, port=r.port,
                           opts=["parse=json", "multiline=java", "seq-key=seq"])
        self.containers.append("parsed")
        base = {"container_id": self.cid_of("parsed"), "container_name": "/parsed",
                "source": "stdout"}
        evs = r.wait(3)
        self.assertEqual([e["record"] for e in evs], [
            dict(base, level="info", msg="hello", n=1, seq=1),
            dict(base, seq=2, log="java.lang.IllegalStateException: boom\n"
                                  "\tat com.example.Service.handle(Service.java:42)\n"
                                  "\tat com.example.Main.main(Main.java:7)"),
            dict(base, level="warn", n=2, ok=True, _source="app", seq=3)])
        time.sleep(0.5)
        self.assertEqual(len(r.records()), 3)
        self.assertEqual(r.errors(), [])


class TestDaemonJson(E2E):
    def test_daemon_json_makes_fwdlog_the_default(self):
        if D.external:
            self.skipTest("restarts dockerd: only with the private daemon")
        r = self.receiver()
        D.restart({"log-driver": "fwdlog",
                   "log-opts": {"fluentd-address": "127.0.0.1:%d" % r.port,
                                "tag": "dj.{{.Name}}"}})
        try:
            D.docker("run", "--rm", "--network", "none", "--name", "dflt", IMAGE, "echo",
                     "default driver")
            ev = r.wait_exact(1)[0]
            self.assertEqual((ev["tag"], ev["record"]["log"]), ("dj.dflt", "default driver"))
        finally:
            D.restart({})


def load_tests(loader, tests, pattern):
    """TestRootfs needs the Dockerfile's rootfs, which only make release-test builds: it is
    left out of make e2e instead of being skipped (a skip fails the run)."""
    if os.environ.get("FWDLOG_E2E_PLUGIN", "local") == "release":
        return tests
    suite = unittest.TestSuite()
    for group in tests:
        for t in (group if isinstance(group, unittest.TestSuite) else [group]):
            if not isinstance(t, TestRootfs):
                suite.addTest(t)
    return suite


if __name__ == "__main__":
    # A skipped case fails the e2e run (CI included): it tested nothing. FWDLOG_E2E_ALLOW_SKIP=1
    # when running against an external dockerd on purpose.
    sys.exit(fwdtest.summarize("e2e", unittest.main(exit=False, verbosity=2).result,
                               skip_fails=not os.environ.get("FWDLOG_E2E_ALLOW_SKIP")))
