#!/usr/bin/python3
"""End-to-end tests: fwdlog as a managed plugin in a real dockerd.

Setup (tests/e2e/dockerenv.py): a private dockerd with container networking off, the
busybox-static image, the plugin from `make plugin-local` enabled with --timeout 0, and
the project's Forward receiver on 127.0.0.1. Every container runs with --network none.
Each case checks the records that arrive, exactly."""
import os
import re
import shutil
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import fwdtest  # noqa: E402
from dockerenv import IMAGE, Dockerd  # noqa: E402
from fwdtest import Receiver  # noqa: E402

D = None


def setUpModule():
    global D
    D = Dockerd()
    try:
        D.start()
        D.import_busybox()
        D.install_plugin()
    except Exception:
        D.cleanup()
        raise


def tearDownModule():
    if D is None:
        return
    log = ""
    try:
        with open(D.log) as f:
            log = f.read()
    except OSError:
        pass
    D.cleanup()
    # fwdlogd's stderr reaches dockerd's log: a crash there must fail the suite even when
    # dockerd restarted the plugin and the cases themselves passed.
    bad = [m for m in ("AddressSanitizer", "runtime error:", "stack smashing",
                       "Segmentation fault") if m in log]
    starts = len(re.findall(r"fwdlogd \S+ listening", log))
    print("e2e: fwdlogd started %d times in dockerd's log" % starts, file=sys.stderr)
    if bad:
        raise AssertionError("fwdlogd reported %s in the dockerd log" % ", ".join(bad))
    # one start, plus one per dockerd restart of the daemon.json case (two restarts)
    if not D.external and starts > 3:
        raise AssertionError("fwdlogd started %d times: the plugin crashed and was restarted"
                             % starts)


class E2E(unittest.TestCase):
    def setUp(self):
        self.tmp = fwdtest.tmpdir()
        self.recvs = []
        self.containers = []

    def tearDown(self):
        for c in self.containers:
            D.docker("rm", "-f", c, check=False)
        for r in self.recvs:
            r.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

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

    def cid_of(self, name):
        return D.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()


class TestDelivery(E2E):
    def test_stdout_stderr_keys_tag_labels_env(self):
        r = self.receiver()
        self.run_container("--name", "web1", "--label", "team=core", "--label", "tier=fe",
                           "-e", "APP=shop", "-e", "SECRET=x", IMAGE, "sh", "-c",
                           "echo out1; echo err1 >&2; echo out2",
                           port=r.port, opts=["labels=team", "env=APP"])
        self.containers.append("web1")
        cid = self.cid_of("web1")
        evs = r.wait(3)
        self.assertEqual(len(evs), 3)
        base = {"container_id": cid, "container_name": "/web1", "team": "core", "APP": "shop"}
        by_src = {}
        for e in evs:
            self.assertEqual(e["tag"], cid[:12])  # default tag {{.ID}}
            self.assertEqual(e["time_type"], "eventtime")
            by_src.setdefault(e["record"]["source"], []).append(e["record"])
        self.assertEqual(by_src["stdout"], [dict(base, source="stdout", log="out1"),
                                            dict(base, source="stdout", log="out2")])
        self.assertEqual(by_src["stderr"], [dict(base, source="stderr", log="err1")])
        self.assertEqual(r.errors(), [])

    def test_custom_tag_template(self):
        r = self.receiver()
        self.run_container("--name", "tagged", IMAGE, "echo", "hi", port=r.port,
                           opts=["tag=docker.{{.Name}}.{{.ImageName}}.{{.ID}}"])
        self.containers.append("tagged")
        ev = r.wait(1)[0]
        self.assertEqual(ev["tag"], "docker.tagged.%s.%s" % (IMAGE, self.cid_of("tagged")[:12]))

    def test_100k_line_is_one_record(self):
        r = self.receiver()
        # 102400 'x' then a newline: dockerd splits it into 7 chunks of 16 KiB
        self.run_container("--rm", IMAGE, "sh", "-c",
                           "head -c 102400 /dev/zero | tr '\\0' x; echo; echo next",
                           port=r.port)
        evs = r.wait(2)
        self.assertEqual(len(evs), 2)
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
        evs = r.wait(n * per * 2, timeout=240)
        self.assertEqual(len(evs), n * per * 2)
        seqs = {}
        for e in evs:
            rec = e["record"]
            seqs.setdefault((rec["container_name"], rec["source"]), []).append(rec["log"])
        want = [str(i) for i in range(1, per + 1)]
        for nm in names:
            for src in ("stdout", "stderr"):
                self.assertEqual(seqs[("/" + nm, src)], want, "%s %s" % (nm, src))
        self.assertEqual(r.errors(), [])

    def test_docker_logs_works(self):
        r = self.receiver()
        self.run_container("--name", "logs1", IMAGE, "sh", "-c", "echo one; echo two >&2",
                           port=r.port)
        self.containers.append("logs1")
        out = D.docker("logs", "logs1")
        self.assertEqual(out.stdout, "one\n")
        self.assertEqual(out.stderr, "two\n")
        self.assertEqual(len(r.wait(2)), 2)


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
        time.sleep(1)
        state = D.docker("inspect", "-f", "{{.State.Running}}", "down1").stdout.strip()
        self.assertEqual(state, "true", "the container must start and run without Fluentd")
        r = self.receiver(port=port)
        evs = r.wait(200, timeout=30)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 201)])

    def test_stop_with_slow_aggregator_is_prompt_and_lossless(self):
        r = self.receiver(stall=8)
        self.run_container("--name", "slow1", IMAGE, "sh", "-c",
                           "seq 1 20000; sleep 600", detach=True, port=r.port)
        time.sleep(1.5)
        t0 = time.time()
        D.docker("stop", "-t", "1", "slow1")
        took = time.time() - t0
        self.assertLess(took, 6.0, "docker stop took %.1fs with a slow aggregator" % took)
        evs = r.wait(20000, timeout=60)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 20001)])


class TestOutage(E2E):
    def test_thirty_second_outage_never_blocks_the_container(self):
        # A burst far larger than the 64 KiB pipe, then a line every 100 ms for ~30 s, all
        # while nothing listens on the aggregator's port. If fwdlog stopped draining the FIFO
        # the container would block on its first burst and finish late.
        port = fwdtest.free_port()
        script = ("seq 1 20000; i=0; while [ $i -lt 300 ]; do echo tick $i; i=$((i+1)); "
                  "sleep 0.1; done")
        t0 = time.time()
        self.run_container("--name", "outage", IMAGE, "sh", "-c", script, detach=True,
                           port=port, opts=["fluentd-retry-wait=100ms", "max-retry-wait=2s"])
        D.docker("wait", "outage", timeout=120)
        ran = time.time() - t0
        # 300 sleeps of 0.1 s: ~30 s plus busybox overhead; a blocked container never ends
        self.assertLess(ran, 45, "the container ran %.1fs with its aggregator down" % ran)
        r = self.receiver(port=port)
        want = [str(i) for i in range(1, 20001)] + ["tick %d" % i for i in range(300)]
        evs = r.wait(len(want), timeout=60)
        self.assertEqual([e["record"]["log"] for e in evs], want)

    def test_failover_to_a_second_aggregator_with_acks(self):
        # The first address has nobody listening; the second takes everything, acknowledged,
        # and the container is never held back by the dead one.
        dead = fwdtest.free_port()
        r = self.receiver()
        self.run_container("--name", "failover", IMAGE, "seq", "1", "30000",
                           opts=["fluentd-address=127.0.0.1:%d,127.0.0.1:%d" % (dead, r.port),
                                 "fluentd-request-ack=true", "fluentd-retry-wait=100ms"])
        self.containers.append("failover")
        evs = r.wait(30000, timeout=60)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 30001)])

    def test_file_buffer_through_an_outage(self):
        # buffer-type=file: the batches wait in the plugin's state directory, then arrive.
        port = fwdtest.free_port()
        self.run_container("--name", "filebuf", IMAGE, "seq", "1", "50000", port=port,
                           opts=["buffer-type=file", "fluentd-retry-wait=100ms",
                                 "max-retry-wait=500ms"])
        self.containers.append("filebuf")
        r = self.receiver(port=port)
        evs = r.wait(50000, timeout=60)
        self.assertEqual([e["record"]["log"] for e in evs], [str(i) for i in range(1, 50001)])


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
            evs = r.wait(4, pred=lambda e, c=cid: e["record"].get("container_id") == c)
            self.assertEqual(len(evs), 4, driver)
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
            ev = r.wait(1)[0]
            self.assertEqual((ev["tag"], ev["record"]["log"]), ("dj.dflt", "default driver"))
        finally:
            D.restart({})


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("e2e: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
