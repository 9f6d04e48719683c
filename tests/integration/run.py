#!/usr/bin/python3
"""Integration tests: build/fwdlogd on a temporary socket, real FIFOs fed with frames
encoded as dockerd writes them, and the project's Forward receiver on 127.0.0.1.
No Docker needed. Run with FWDLOGD=path/to/fwdlogd (make integration does)."""
import base64
import glob
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fwdtest  # noqa: E402
from fwdtest import (Daemon, Fifo, Receiver, docker_lines, frame, info, logs,  # noqa: E402
                     wait_until)


def cid(n):
    return ("%02x" % n) * 32


class ProcTest(unittest.TestCase):
    """Tests that start their own receivers, daemons and FIFOs: each is tracked and stopped
    before anything is asserted about it, so a failing test leaves nothing running."""

    def setUp(self):
        self.tmp = fwdtest.tmpdir()
        self.procs = []

    def tearDown(self):
        rcs = [(d.stop(), d.logtext()) for d in self.procs if isinstance(d, Daemon)]
        errs = []
        for p in self.procs:
            if isinstance(p, Receiver):
                p.stop()
                if not p.expect_errors:
                    errs += p.errors()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for rc, log in rcs:
            self.assertEqual(rc, 0, "fwdlogd exit status; its log ends:\n" + log[-2000:])
            self.assertNotIn("runtime error", log)  # UBSan
        # every receiver, every test: what the receiver refused is a failure unless the
        # test said why it expects it (Receiver(expect_errors=...))
        self.assertEqual(errs, [], "the receiver reported protocol errors")

    def receiver(self, **kw):
        r = Receiver(self.tmp, **kw)
        self.procs.append(r)
        return r

    def daemon(self, env=None, level="debug", wrap=None):
        d = Daemon(self.tmp, env=env, level=level, wrap=wrap)
        self.procs.append(d)
        return d

    def fifo(self):
        f = Fifo(self.tmp)
        self.addCleanup(f.close)
        return f

    def assert_at_least_once(self, rs, want, key=lambda e: e["record"]["log"]):
        """At-least-once delivery: every line in `want` arrived at one of the receivers rs,
        nothing else did, and a line that arrived twice did so on different connections (a
        batch resent after its connection failed), never twice on one connection. Waits for
        the receivers to go quiet first. Returns how many copies were extra."""
        for r in rs:
            r.settle()
        seen = {}
        for r in rs:
            for e in r.records():
                seen.setdefault(key(e), []).append((r.out, e["run"], e["conn"]))
        self.assertEqual(sorted(set(seen) - want)[:5], [], "lines nobody wrote")
        self.assertEqual(sorted(want - set(seen))[:5], [], "lines never delivered")
        twice = sorted(k for k, where in seen.items() if len(where) != len(set(where)))
        self.assertEqual(twice[:5], [], "delivered twice on one connection")
        return sum(len(where) - 1 for where in seen.values())

    def timed_stop(self, d, timeout):
        """SIGTERM d and wait (SIGKILL after timeout s); assert it exited 0; the seconds
        it took."""
        t0 = time.time()
        rc = d.stop(timeout=timeout)
        took = time.time() - t0
        self.procs.remove(d)
        self.assertEqual(rc, 0, d.logtext()[-2000:])
        return took

    def kill_daemon(self, d):
        """SIGKILL (a crash): nothing is flushed. Its socket is left behind, as a crash
        leaves it; it is removed here so the next daemon's start can be waited for."""
        d.proc.kill()
        d.proc.wait()
        d.logf.close()
        self.procs.remove(d)
        os.unlink(d.sock)


class Base(ProcTest):
    """One receiver and one daemon (with the class's env) per test."""
    env = {}

    def setUp(self):
        super().setUp()
        self.recv = self.receiver()
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % self.recv.port}
        env.update(self.env)
        self.d = self.daemon(env)

    def start(self, f, **kw):
        st, body = self.d.api.start(f.path, info(**kw))
        self.assertEqual((st, body), (200, {"Err": ""}))

    def assert_no_receiver_errors(self):
        self.assertEqual(self.recv.errors(), [])


class TestPluginAPI(Base):
    def test_activate(self):
        self.assertEqual(self.d.api.call("/Plugin.Activate"), (200, {"Implements": ["LogDriver"]}))

    def test_capabilities_use_cap_wrapper(self):
        st, body = self.d.api.call("/LogDriver.Capabilities")
        self.assertEqual(st, 200)
        self.assertEqual(body["Cap"], {"ReadLogs": False})

    def test_unknown_path_404_json(self):
        st, body = self.d.api.call("/LogDriver.ReadLogs", {"x": 1})
        self.assertEqual(st, 404)
        self.assertIn("unknown endpoint", body["Err"])

    def test_get_on_api_path_405(self):
        st, body = self.d.api.call("/LogDriver.StartLogging", method="GET")
        self.assertEqual(st, 405)
        self.assertIn("POST", body["Err"])

    def test_body_over_1mib_413(self):
        st, body = self.d.api.call("/LogDriver.StartLogging", raw=b"x" * (1024 * 1024 + 1))
        self.assertEqual(st, 413)
        self.assertIn("1 MiB", body["Err"])

    def test_malformed_json_400(self):
        st, body = self.d.api.call("/LogDriver.StartLogging", raw=b'{"File": "/x", ')
        self.assertEqual(st, 400)
        self.assertIn("malformed JSON", body["Err"])

    def test_wrong_type_400(self):
        st, body = self.d.api.call("/LogDriver.StartLogging", {"File": "/x", "Info": {
            "ContainerID": cid(1), "ContainerLabels": ["not", "a", "map"]}})
        self.assertEqual(st, 400)
        self.assertIn("ContainerLabels", body["Err"])

    def test_stop_unknown_file_is_success(self):
        self.assertEqual(self.d.api.stop("/run/docker/logging/nope"), (200, {"Err": ""}))

    def test_stop_with_empty_body_is_success(self):
        # dockerd's retry of a StopLogging that a restart of fwdlogd cut off carries an
        # empty body (the first attempt drained it); an error would make dockerd keep the
        # FIFO open forever. The stream ends at its EOF instead, drained.
        f = self.fifo()
        self.start(f, cid=cid(2))
        f.write(frame(time_nano=1, line=b"last words"))
        self.assertEqual(self.d.api.call("/LogDriver.StopLogging", raw=b""), (200, {"Err": ""}))
        self.assertEqual(self.d.api.metrics()["fwdlog_containers"], 1)
        os.close(f.fd)  # dockerd closes its end once StopLogging answered
        f.fd = None
        deadline = time.time() + 5
        while self.d.api.metrics()["fwdlog_containers"] != 0 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.d.api.metrics()["fwdlog_containers"], 0)
        self.assertEqual([e["record"]["log"] for e in self.recv.wait(1)], ["last words"])

    def test_null_arrays_and_maps(self):
        f = self.fifo()
        i = info(cid(2))
        i.update({"ContainerArgs": None, "ContainerEnv": None, "ContainerLabels": None,
                  "Config": None})
        self.assertEqual(self.d.api.start(f.path, i), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"x"))
        self.assertEqual(logs(self.recv.wait_exact(1)), ["x"])

    def test_missing_fifo_is_start_error(self):
        st, body = self.d.api.start(os.path.join(self.tmp, "missing"), info(cid(3)))
        self.assertEqual(st, 200)
        self.assertIn("cannot open log FIFO", body["Err"])


class TestOptions(Base):
    def err(self, config, **kw):
        f = self.fifo()
        st, body = self.d.api.start(f.path, info(cid(9), config=config, **kw))
        self.assertEqual(st, 200)
        return body["Err"]

    def test_unknown_option_names_it_and_suggests(self):
        e = self.err({"fluentd-adress": "x"})
        self.assertIn("unknown log-opt 'fluentd-adress'", e)
        self.assertIn("did you mean 'fluentd-address'", e)
        self.assertTrue(e.startswith("fwdlog: "))

    def test_bad_duration(self):
        e = self.err({"fluentd-retry-wait": "5"})
        self.assertIn('invalid log-opt fluentd-retry-wait="5"', e)
        self.assertIn("duration", e)

    def test_bad_address(self):
        self.assertIn("unsupported scheme 'udp'", self.err({"fluentd-address": "udp://x:1"}))
        self.assertIn("invalid port", self.err({"fluentd-address": "tcp://h:65536"}))
        self.assertIn("path element", self.err({"fluentd-address": "tcp://h:1/p"}))

    def test_bad_bool_and_size(self):
        self.assertIn("true or false", self.err({"fluentd-async": "maybe"}))
        self.assertIn("fluentd-buffer-limit", self.err({"fluentd-buffer-limit": "lots"}))

    def test_request_ack_accepted(self):
        self.assertEqual(self.err({"fluentd-request-ack": "true",
                                   "fluentd-read-timeout": "5s"}), "")

    def test_bad_template(self):
        e = self.err({"tag": "{{.Nope}}"})
        self.assertIn('unknown field ".Nope"', e)
        e = self.err({"tag": "{{ .Name | upper }}"})
        self.assertIn("unsupported action", e)

    def test_bad_regex(self):
        self.assertIn("labels-regex", self.err({"labels-regex": "("}))

    def test_docker_generic_keys_accepted(self):
        e = self.err({"mode": "non-blocking", "max-buffer-size": "4m", "cache-disabled": "false",
                      "cache-max-size": "20m", "tag": "", "labels": "", "env": "",
                      "labels-regex": "", "env-regex": "", "fluentd-async": "true",
                      "fluentd-write-timeout": "0", "fluentd-sub-second-precision": "false"})
        self.assertEqual(e, "")


class TestRecords(Base):
    def test_records_keys_tag_and_time(self):
        f = self.fifo()
        self.start(f, cid=cid(0xab), name="/web")
        t = 1700000000123456789
        f.write(frame(source="stdout", time_nano=t, line=b"hello out"))
        f.write(frame(source="stderr", time_nano=t + 1, line=b"hello err"))
        f.write(frame(source="stdout", time_nano=t + 2, line=b""))
        evs = self.recv.wait_exact(3)
        self.assertEqual({e["tag"] for e in evs}, {cid(0xab)[:12]})
        self.assertEqual(evs[0]["mode"], "PackedForward")
        self.assertEqual(evs[0]["time_type"], "eventtime")
        self.assertEqual(evs[0]["time"], [1700000000, 123456789])
        self.assertEqual(evs[0]["record"], {"container_id": cid(0xab), "container_name": "/web",
                                            "source": "stdout", "log": "hello out"})
        self.assertEqual(evs[1]["record"], dict(evs[0]["record"], source="stderr",
                                                log="hello err"))
        self.assertEqual(evs[2]["record"], dict(evs[0]["record"], log=""))
        self.assertEqual([e["time"] for e in evs[1:]], [[1700000000, 123456790],
                                                        [1700000000, 123456791]])

    def test_integer_time_when_subsecond_off(self):
        f = self.fifo()
        self.start(f, cid=cid(1), config={"fluentd-sub-second-precision": "false"})
        f.write(frame(time_nano=1700000000999999999, line=b"x"))
        ev = self.recv.wait_exact(1)[0]
        self.assertEqual((ev["time_type"], ev["time"]), ("int", 1700000000))

    def test_tag_template_every_field(self):
        f = self.fifo()
        tmpl = ("{{.ID}}|{{.FullID}}|{{.Name}}|{{.ImageID}}|{{.ImageFullID}}|{{.ImageName}}|"
                "{{.DaemonName}}|{{ .Command }}|{{.Hostname}}|x")
        self.start(f, cid=cid(5), name="/app", config={"tag": tmpl}, args=["-c", "echo hi"])
        f.write(frame(time_nano=1, line=b"x"))
        ev = self.recv.wait_exact(1)[0]
        want = "|".join([cid(5)[:12], cid(5), "app", "b" * 12, "sha256:" + "b" * 64,
                         "busybox:latest", "docker", "sh -c echo hi", socket.gethostname(), "x"])
        self.assertEqual(ev["tag"], want)

    def test_labels_env_attributes_env_wins(self):
        f = self.fifo()
        self.start(f, cid=cid(6), config={"labels": "a,b,missing", "env": "a,SECRET_NOT",
                                          "env-regex": "^APP_"},
                   labels={"a": "label-a", "b": "label-b", "c": "label-c"},
                   env=["a=env-a", "APP_X=1", "APP_Y=2", "NOEQUALS", "OTHER=o"])
        f.write(frame(time_nano=1, line=b"x"))
        rec = self.recv.wait_exact(1)[0]["record"]
        self.assertEqual(rec, {"container_id": cid(6), "container_name": "/web",
                               "source": "stdout", "log": "x", "a": "env-a", "b": "label-b",
                               "APP_X": "1", "APP_Y": "2"})

    def test_invalid_utf8_passes_through(self):
        f = self.fifo()
        self.start(f, cid=cid(7))
        raw = b"bad \xff\xfe utf8 \xc3"
        f.write(frame(time_nano=1, line=raw))
        rec = self.recv.wait_exact(1)[0]["record"]
        self.assertEqual(rec["log"].encode("utf-8", "surrogateescape"), raw)

    def test_40k_line_is_one_record(self):
        f = self.fifo()
        self.start(f, cid=cid(8))
        line = (b"0123456789abcdef" * 2560)  # 40 KiB
        f.write(docker_lines(line, pid="c" * 64))
        f.write(docker_lines(b"after", pid="d" * 64))
        evs = self.recv.wait_exact(2)
        self.assertEqual(evs[0]["record"]["log"].encode(), line)
        self.assertNotIn("partial_message", evs[0]["record"])
        self.assertEqual(evs[1]["record"]["log"], "after")

    def test_16k_multiple_with_empty_last_chunk(self):
        f = self.fifo()
        self.start(f, cid=cid(9))
        line = b"z" * 32768
        data = docker_lines(line, pid="e" * 64)
        f.write(data)
        evs = self.recv.wait_exact(1)
        self.assertEqual(evs[0]["record"]["log"].encode(), line)

    def test_interleaved_partials(self):
        f = self.fifo()
        self.start(f, cid=cid(10))
        a, b = b"A" * 20000, b"B" * 20000
        fa = docker_lines(a, "stdout", 100, "1" * 64)
        fb = docker_lines(b, "stderr", 200, "2" * 64)
        # split each into its two frames and interleave them
        def frames(buf):
            out, off = [], 0
            while off < len(buf):
                n = struct.unpack(">I", buf[off:off + 4])[0]
                out.append(buf[off:off + 4 + n])
                off += 4 + n
            return out
        xa, xb = frames(fa), frames(fb)
        f.write(xa[0] + xb[0] + xa[1] + xb[1])
        evs = self.recv.wait_exact(2)
        got = {e["record"]["source"]: e["record"]["log"] for e in evs}
        self.assertEqual(got, {"stdout": a.decode(), "stderr": b.decode()})
        times = {e["record"]["source"]: e["time"] for e in evs}
        self.assertEqual(times["stdout"], [0, 100])

    def test_over_max_line_emits_docker_partial_keys(self):
        f = self.fifo()
        self.start(f, cid=cid(11), config={"max-line-size": "16k"})
        line = b"q" * 40000
        f.write(docker_lines(line, pid="f" * 64))
        evs = self.recv.wait_exact(3)
        recs = [e["record"] for e in evs]
        self.assertEqual([r["partial_ordinal"] for r in recs], ["1", "2", "3"])
        self.assertEqual([r["partial_last"] for r in recs], ["false", "false", "true"])
        self.assertTrue(all(r["partial_message"] == "true" and r["partial_id"] == "f" * 64
                            for r in recs))
        self.assertEqual(b"".join(r["log"].encode() for r in recs), line)

    def test_issue_13_max_record_size_splits_a_long_line(self):
        # 2.5 MiB joined from 160 chunks; max-record-size=1m: each record (with its
        # partial_* keys) within 1 MiB, so 3 pieces that carry Docker's partial id
        f = self.fifo()
        self.start(f, cid=cid(15), config={"max-line-size": "4m", "max-record-size": "1m"})
        line = b"".join(b"%07d|" % i for i in range(327680))[:2621440]
        f.write(docker_lines(line, pid="d" * 64))
        evs = self.recv.wait_exact(3, timeout=30)
        recs = [e["record"] for e in evs]
        self.assertEqual([r["partial_ordinal"] for r in recs], ["1", "2", "3"])
        self.assertEqual([r["partial_last"] for r in recs], ["false", "false", "true"])
        self.assertEqual([(r["partial_message"], r["partial_id"]) for r in recs],
                         [("true", "d" * 64)] * 3)
        self.assertEqual(b"".join(r["log"].encode() for r in recs), line)
        import msgpack
        for e in evs:
            self.assertLessEqual(len(msgpack.packb([e["time"], e["record"]])), 1 << 20)
        self.assertGreater(len(recs[0]["log"]), (1 << 20) - 1024)  # full pieces, not tiny
        self.assert_no_receiver_errors()

    def test_issue_13_max_record_size_cuts_between_utf8_characters(self):
        f = self.fifo()
        self.start(f, cid=cid(16), config={"max-record-size": "64k"})
        line = "é".encode() * 50000  # 100,000 bytes of 2-byte characters
        f.write(docker_lines(line, pid="c" * 64))
        evs = self.recv.wait_exact(2, timeout=10)
        logs_ = [e["record"]["log"] for e in evs]  # each decodes: no character was cut
        self.assertEqual("".join(logs_).encode(), line)
        self.assertEqual([e["record"]["partial_last"] for e in evs], ["false", "true"])

    def test_partial_timeout(self):
        f = self.fifo()
        self.start(f, cid=cid(12), config={"partial-timeout": "200ms"})
        f.write(frame(time_nano=5, line=b"p" * 16384, partial=True,
                      meta={"id": "9" * 64, "ordinal": 1}))
        evs = self.recv.wait_exact(1, timeout=5)
        r = evs[0]["record"]
        self.assertEqual((r["partial_message"], r["partial_ordinal"], r["partial_last"]),
                         ("true", "1", "false"))
        # the late last chunk continues the numbering and closes the line
        f.write(frame(time_nano=5, line=b"end", partial=True,
                      meta={"id": "9" * 64, "ordinal": 2, "last": True}))
        evs = self.recv.wait_exact(2, timeout=5)
        r = evs[1]["record"]
        self.assertEqual((r["log"], r["partial_ordinal"], r["partial_last"]), ("end", "2", "true"))

    def test_split_frames_across_writes(self):
        f = self.fifo()
        self.start(f, cid=cid(13))
        data = b"".join(frame(time_nano=i + 1, line=b"line %d" % i) for i in range(50))
        for i in range(0, len(data), 7):
            f.write(data[i:i + 7])
            if i % 140 == 0:
                time.sleep(0.001)
        evs = self.recv.wait_exact(50)
        self.assertEqual(logs(evs), ["line %d" % i for i in range(50)])

    def test_zero_length_frame(self):
        f = self.fifo()
        self.start(f, cid=cid(14))
        f.write(struct.pack(">I", 0) + frame(time_nano=1, line=b"after"))
        evs = self.recv.wait_exact(2, timeout=5)
        self.assertEqual(logs(evs), ["", "after"])


class TestStreams(Base):
    def test_over_cap_frame_resyncs_only_that_stream(self):
        bad, good = self.fifo(), self.fifo()
        self.start(bad, cid=cid(20))
        self.start(good, cid=cid(21))
        bad.write(frame(time_nano=1, line=b"before"))
        self.assertEqual(logs(self.recv.wait_exact(1)), ["before"])
        junk = struct.pack(">I", 2 * 1024 * 1024) + b"garbage" + b"\0" * (1024 * 1024)
        bad.write(junk)  # the FIFO is still drained: 1 MiB of junk must not block the writer
        good.write(frame(time_nano=2, line=b"good"))
        self.assertEqual(logs(self.recv.wait_exact(2)), ["before", "good"])
        # then the stream finds its framing again
        bad.write(frame(time_nano=time.time_ns(), line=b"after"))
        self.assertEqual(logs(self.recv.wait_exact(3)), ["before", "good", "after"])
        m = self.d.api.metrics()
        self.assertEqual(m["fwdlog_corrupt_streams_total"], 1)
        self.assertEqual(m["fwdlog_discarded_bytes_total"], len(junk))
        self.assertIn("log stream out of step", self.d.logtext())

    def test_lines_before_stoplogging_all_arrive(self):
        f = self.fifo()
        self.start(f, cid=cid(22), config={"flush-interval": "10s"})
        n = 20000
        f.write(b"".join(frame(time_nano=i + 1, line=b"l%d" % i) for i in range(n)))
        t0 = time.time()
        # dockerd calls StopLogging while it still holds the write end open
        self.assertEqual(self.d.api.stop(f.path), (200, {"Err": ""}))
        self.assertLess(time.time() - t0, 2.0)
        f.close()
        evs = self.recv.wait_exact(n)
        self.assertEqual(logs(evs), ["l%d" % i for i in range(n)])

    def test_hundred_fifos(self):
        fifos = [self.fifo() for _ in range(100)]
        for i, f in enumerate(fifos):
            self.start(f, cid=cid(i), name="/c%d" % i)
        per = 500
        for j in range(0, per, 100):
            for i, f in enumerate(fifos):
                f.write(b"".join(frame(time_nano=k + 1, line=b"%d:%d" % (i, k))
                                 for k in range(j, j + 100)))
        evs = self.recv.wait_exact(100 * per, timeout=60)
        by = {}
        for e in evs:
            by.setdefault(e["record"]["container_name"], []).append(e["record"]["log"])
        for i in range(100):
            self.assertEqual(by["/c%d" % i], ["%d:%d" % (i, k) for k in range(per)])

    def test_duplicate_start_replaces_stream(self):
        a, b = self.fifo(), self.fifo()
        self.start(a, cid=cid(30))
        a.write(frame(time_nano=1, line=b"old"))
        self.start(b, cid=cid(30))  # live-restore: new FIFO, same container
        b.write(frame(time_nano=2, line=b"new"))
        evs = self.recv.wait_exact(2)
        self.assertEqual(logs(evs), ["old", "new"])
        self.assertEqual(self.d.api.metrics()["fwdlog_containers"], 1)

    def test_eof_without_stoplogging(self):
        f = self.fifo()
        self.start(f, cid=cid(31))
        f.write(frame(time_nano=1, line=b"bye"))
        os.close(f.fd)
        f.fd = None
        self.assertEqual(logs(self.recv.wait_exact(1)), ["bye"])
        wait_until(lambda: self.d.api.metrics()["fwdlog_containers"] == 0, 5,
                   "the stream's end at EOF")


class TestRestart(ProcTest):
    """fwdlogd killed or stopped with containers running: the next fwdlogd reads their FIFOs
    again from the states it kept (dockerd never sends StartLogging again)."""

    def setUp(self):
        super().setUp()
        self.recv = self.receiver()
        self.env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % self.recv.port}

    def states(self):
        d = os.path.join(self.tmp, "state", "streams")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def logs(self):
        return [e["record"]["log"] for e in self.recv.records()]

    def exact(self, want, timeout=20):
        self.recv.wait(len(want), timeout=timeout)
        time.sleep(0.5)
        self.assertEqual(self.logs(), want)
        self.assertEqual(self.recv.errors(), [])

    def lines(self, a, b, prefix="r"):
        return b"".join(frame(time_nano=time.time_ns(), line=b"%s%d" % (prefix.encode(), i))
                        for i in range(a, b))

    def test_sigkill_then_restart_reads_the_fifo_again(self):
        d = self.daemon(self.env)
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(80))), (200, {"Err": ""}))
        self.assertEqual(len(self.states()), 1, "kept before StartLogging answered")
        st = os.stat(os.path.join(self.tmp, "state", "streams", self.states()[0]))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        f.write(self.lines(0, 100))
        self.exact(["r%d" % i for i in range(100)])
        self.kill_daemon(d)
        f.write(self.lines(100, 200))  # the pipe holds them meanwhile
        d = self.daemon(self.env)
        f.write(self.lines(200, 300))
        self.exact(["r%d" % i for i in range(300)])
        m = d.api.metrics()
        self.assertEqual((m["fwdlog_containers"], m["fwdlog_restored_streams_total"]), (1, 1))
        self.assertEqual(m["fwdlog_discarded_bytes_total"], 0)
        self.assertEqual(d.api.stop(f.path), (200, {"Err": ""}))
        self.assertEqual(self.states(), [], "StopLogging forgets the stream")

    def test_sigterm_keeps_the_stream_for_the_next_start(self):
        d = self.daemon(self.env)
        f = self.fifo()
        d.api.start(f.path, info(cid(81)))
        f.write(self.lines(0, 50))
        self.assertEqual(d.stop(), 0)
        self.procs.remove(d)
        self.assertEqual(len(self.states()), 1)
        f.write(self.lines(50, 100))
        d = self.daemon(self.env)
        self.exact(["r%d" % i for i in range(100)])

    def test_restart_mid_frame_resyncs_and_counts_the_skip(self):
        d = self.daemon(self.env)
        f = self.fifo()
        d.api.start(f.path, info(cid(82)))
        f.write(self.lines(0, 10))
        self.exact(["r%d" % i for i in range(10)])
        self.kill_daemon(d)
        # what the dead process left: the rest of a frame it had begun, then garbage
        # (including a fake length prefix), then frames, garbage between frames
        cut = frame(time_nano=time.time_ns(), line=b"half-read")[7:]
        junk = b"\x00\x00\x00\x20not-a-frame" + b"\xff" * 40
        f.write(cut + junk + self.lines(10, 20) + junk + self.lines(20, 30))
        d = self.daemon(self.env)
        self.exact(["r%d" % i for i in range(30)])
        m = d.api.metrics()
        self.assertEqual(m["fwdlog_discarded_bytes_total"], len(cut) + 2 * len(junk))
        self.assertEqual(m["fwdlog_resyncs_total"], 2)
        self.assertEqual(d.logtext().count("back in step"), 2)

    def test_stream_whose_fifo_went_away_is_forgotten(self):
        d = self.daemon(self.env)
        f, g = self.fifo(), self.fifo()
        d.api.start(f.path, info(cid(83)))
        d.api.start(g.path, info(cid(84)))
        f.write(self.lines(0, 5, "f"))
        g.write(self.lines(0, 5, "g"))
        self.recv.wait(10)
        self.kill_daemon(d)
        f.close()  # its container ended while fwdlogd was down: dockerd removed the FIFO
        g.write(self.lines(5, 10, "g"))
        d = self.daemon(self.env)
        want = sorted(["f%d" % i for i in range(5)] + ["g%d" % i for i in range(10)])
        self.recv.wait(15)
        time.sleep(0.5)
        self.assertEqual(sorted(self.logs()), want)
        self.assertEqual(len(self.states()), 1)
        self.assertEqual(d.api.metrics()["fwdlog_containers"], 1)

    def test_writer_gone_while_down_drains_then_forgets(self):
        d = self.daemon(self.env)
        f = self.fifo()
        d.api.start(f.path, info(cid(85)))
        self.kill_daemon(d)
        # dockerd still holds the FIFO open, then lets go (its container ended) after the
        # new fwdlogd opened it: what is in the pipe is read, then EOF forgets the stream
        f.write(self.lines(0, 20))
        d = self.daemon(self.env)
        self.exact(["r%d" % i for i in range(20)])
        os.close(f.fd)
        f.fd = None
        deadline = time.time() + 5
        while self.states() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.states(), [])
        self.assertEqual(d.api.metrics()["fwdlog_containers"], 0)


class TestAggregatorDown(ProcTest):
    def test_down_at_start_then_up(self):
        port = fwdtest.free_port()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms"})
        f = self.fifo()
        t0 = time.time()
        st, body = d.api.start(f.path, info(cid(40)))
        self.assertEqual((st, body), (200, {"Err": ""}))
        self.assertLess(time.time() - t0, 1.0, "StartLogging waited for the network")
        f.write(b"".join(frame(time_nano=i + 1, line=b"d%d" % i) for i in range(1000)))
        wait_until(lambda: "retrying in" in d.logtext(), 10, "a failed connect")
        recv = self.receiver(port=port)
        evs = recv.wait_exact(1000, timeout=20)
        self.assertEqual(logs(evs), ["d%d" % i for i in range(1000)])

    def test_buffer_limit_drops_oldest(self):
        # Without a spool (spool-limit 0), memory is all there is.
        port = fwdtest.free_port()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
                         "FLUENTD_BUFFER_LIMIT": "64k", "FWDLOG_SPOOL_LIMIT": "0"})
        f = self.fifo()
        d.api.start(f.path, info(cid(41), config={"batch-size": "4k"}))
        n = 5000  # ~400 KB of records against a 64 KiB buffer
        f.write(b"".join(frame(time_nano=i + 1, line=b"%06d" % i + b"x" * 40) for i in range(n)))
        d.api.stop(f.path)
        m = d.api.metrics()
        self.assertGreater(m["fwdlog_records_dropped_total"], 0)
        self.assertLessEqual(m["fwdlog_queued_bytes"], 64 * 1024 + 8 * 1024)
        recv = self.receiver(port=port)
        kept = n - m["fwdlog_records_dropped_total"]
        evs = recv.wait_exact(kept, timeout=20)
        got = [e["record"]["log"][:6] for e in evs]
        self.assertEqual(got, ["%06d" % i for i in range(n - kept, n)],
                         "the newest records are kept, in order")
        self.assertIn("dropped the oldest", d.logtext())


class TestSlowAggregator(ProcTest):
    def test_many_queued_batches_behind_a_half_written_one(self):
        # Regression: with more than 32 batches queued behind a partly written head, the
        # iovec array of a write overflowed (found by the 50-container end-to-end test).
        # A unix socket's small buffers (unlike loopback TCP's autotuned megabytes) make
        # the stalled receiver's socket fill, so writes come back short.
        path = os.path.join(self.tmp, "slow.sock")
        recv = self.receiver(unix=path, stall=1.5)
        d = self.daemon({"FLUENTD_ADDRESS": "unix://" + path, "FLUENTD_BUFFER_LIMIT": "256m",
                         "FWDLOG_BATCH_SIZE": "4k"}, level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(60)))
        n = 100000
        pad = b"y" * 150
        for j in range(0, n, 10000):
            f.write(b"".join(frame(time_nano=i + 1, line=b"%06d" % i + pad)
                             for i in range(j, j + 10000)))
        evs = recv.wait_exact(n, timeout=60)
        self.assertEqual([e["record"]["log"][:6] for e in evs], ["%06d" % i for i in range(n)])


class TestGzip(Base):
    env = {"FLUENTD_COMPRESS": "gzip"}

    def test_compressed_packed_forward(self):
        f = self.fifo()
        self.start(f, cid=cid(80), config={"batch-size": "8k"})
        n = 3000
        f.write(b"".join(frame(time_nano=i + 1, line=b"gz line %d" % i) for i in range(n)))
        evs = self.recv.wait_exact(n)
        self.assertEqual(logs(evs), ["gz line %d" % i for i in range(n)])
        self.assertEqual({e["mode"] for e in evs}, {"CompressedPackedForward"})
        m = self.d.api.metrics()
        self.assertLess(m["fwdlog_bytes_sent_total"], n * 40, "gzip must shrink the batches")


class TestAcks(ProcTest):
    """fluentd-request-ack=true: at-least-once delivery against scripted receivers."""

    def ack_daemon(self, port, **env):
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_REQUEST_ACK": "true",
             "FLUENTD_RETRY_WAIT": "50ms", "FWDLOG_BATCH_SIZE": "16k"}
        e.update(env)
        return self.daemon(e, level="info")

    def feed(self, d, n, name=cid(70)):
        f = self.fifo()
        st, body = d.api.start(f.path, info(name))
        self.assertEqual(body, {"Err": ""})
        for j in range(0, n, 5000):
            f.write(b"".join(frame(time_nano=i + 1, line=b"a%06d" % i)
                             for i in range(j, min(n, j + 5000))))
        return f

    def logs(self, r):
        return [e["record"]["log"] for e in r.records()]

    def want(self, n):
        return {"a%06d" % i for i in range(n)}

    def wait_all(self, r, n, timeout=30):
        """Until every line arrived (at least once), then the receiver's quiet period."""
        want = self.want(n)
        deadline = time.time() + timeout
        while time.time() < deadline and not want <= set(self.logs(r)):
            time.sleep(0.05)
        got = set(self.logs(r))
        self.assertEqual(sorted(want - got)[:5], [], "lines never delivered")
        r.settle()
        return self.logs(r)

    def test_acked_batches_carry_chunk_ids(self):
        r = self.receiver()
        d = self.ack_daemon(r.port)
        self.feed(d, 1000)
        evs = r.wait_exact(1000)  # no resends when every ack is right
        self.assertEqual(logs(evs), ["a%06d" % i for i in range(1000)])
        reqs = {}
        for e in evs:
            reqs.setdefault(e["chunk"], set()).add(e["req"])
        self.assertTrue(all(len(base64.b64decode(c, validate=True)) == 16 for c in reqs), reqs)
        self.assertGreater(len(reqs), 1, "several batches, so that uniqueness is tested")
        self.assertEqual({c: q for c, q in reqs.items() if len(q) > 1}, {},
                         "one chunk id on two requests")
        wait_until(lambda: d.api.metrics()["fwdlog_records_sent_total"] == 1000, 10,
                   "1000 records counted as sent")

    def test_wrong_ack_discards_connection_and_resends(self):
        r = self.receiver(wrong_acks=1)
        d = self.ack_daemon(r.port)
        self.feed(d, 3000)
        self.wait_all(r, 3000)
        extra = self.assert_at_least_once([r], self.want(3000))
        self.assertGreater(extra, 0, "the batch with the wrong ack must be resent")
        self.assertIn("ack does not match", d.logtext())

    def test_lost_ack_times_out_and_resends(self):
        # One batch in flight and its ack lost: only the ack timeout can notice. (With more
        # in flight, the next ack would not match the oldest batch, the mismatch path.)
        r = self.receiver(drop_acks=1)
        d = self.ack_daemon(r.port, FLUENTD_READ_TIMEOUT="300ms")
        self.feed(d, 50)
        self.wait_all(r, 50)
        # twice, and only twice (the resend was acked); a quiet period well past the timeout
        evs = r.wait_exact(100, timeout=10, quiet=1.5)
        self.assertEqual(sorted(logs(evs)), sorted(list(self.want(50)) * 2))
        self.assertEqual(self.assert_at_least_once([r], self.want(50)), 50)
        self.assertIn("no ack within", d.logtext())

    def test_late_acks_are_not_failures(self):
        # The deadline runs from the write: 14 batches acked 50 ms apart stay well inside 3 s.
        r = self.receiver(ack_delay=0.05)
        d = self.ack_daemon(r.port, FLUENTD_READ_TIMEOUT="3s")
        self.feed(d, 2000)
        self.assertEqual(logs(r.wait_exact(2000)), ["a%06d" % i for i in range(2000)])
        self.assertNotIn("no ack within", d.logtext())

    def test_gzip_with_acks(self):
        r = self.receiver(close_after_bytes=3000)
        d = self.ack_daemon(r.port, FLUENTD_COMPRESS="gzip")
        self.feed(d, 20000)
        self.wait_all(r, 20000)
        self.assert_at_least_once([r], self.want(20000))  # the cut connection's batches again
        self.assertEqual({e["mode"] for e in r.records()}, {"CompressedPackedForward"})

    def test_close_mid_batch_resends(self):
        r = self.receiver(close_after_bytes=20000)
        d = self.ack_daemon(r.port)
        self.feed(d, 5000)
        self.wait_all(r, 5000)
        self.assert_at_least_once([r], self.want(5000))
        # A close with unread data arrives as a reset, not an orderly close.
        self.assertRegex(d.logtext(), "closed by aggregator|Connection reset by peer")
        # and the rest came over a new connection
        self.assertGreaterEqual(d.api.metrics()["fwdlog_connects_total"], 2)
        later = [e for e in r.records() if e["conn"] >= 2]
        self.assertGreater(len(later), 0, "nothing arrived after the reconnect")

    def test_receiver_killed_and_restarted_twice(self):
        port = fwdtest.free_port()
        r = self.receiver(port=port)
        d = self.ack_daemon(port, FWDLOG_BATCH_SIZE="64k")
        n = 100000
        f = self.fifo()
        d.api.start(f.path, info(cid(71)))
        for j in range(0, n, 5000):
            f.write(b"".join(frame(time_nano=i + 1, line=b"a%06d" % i)
                             for i in range(j, j + 5000)))
            if j in (30000, 65000):
                connects = d.api.metrics()["fwdlog_connects_total"]
                r.proc.kill()  # SIGKILL: acks of what it had not written yet are lost
                r.proc.wait()
                time.sleep(0.3)
                r = self.receiver(port=port, append=True)
                # each kill must cut a live connection: wait for fwdlog to reconnect
                deadline = time.time() + 15
                while (d.api.metrics()["fwdlog_connects_total"] <= connects and
                       time.time() < deadline):
                    time.sleep(0.02)
        self.wait_all(r, n, timeout=60)
        self.assert_at_least_once([r], self.want(n))
        m = d.api.metrics()
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        self.assertGreaterEqual(m["fwdlog_connects_total"], 3, d.logtext())



def lines(prefix, a, b, pad=0):
    return b"".join(frame(time_nano=i + 1, line=b"%s%07d" % (prefix, i) + b"x" * pad)
                    for i in range(a, b))


class TestSpool(ProcTest):
    """The disk spool: spilling, buffer-type=file across a crash, the overflow policies."""

    def spool_daemon(self, port, **env):
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
             "FWDLOG_MAX_RETRY_WAIT": "200ms", "FWDLOG_BATCH_SIZE": "16k"}
        e.update(env)
        return self.daemon(e, level="info")

    def wait_all_read(self, d, n):
        """Until fwdlogd has read n records and sealed them into the spool (flush-interval
        is 100 ms): nothing left in memory."""
        def sealed():
            m = d.api.metrics()
            return (m["fwdlog_records_total"] == n and
                    m["fwdlog_spool_bytes"] >= m["fwdlog_queued_bytes"] > 0)
        wait_until(sealed, 20, "%d records read and all queued bytes spooled" % n)

    def spool_files(self):
        out = []
        for root, _, files in os.walk(os.path.join(self.tmp, "state", "spool")):
            out += [os.path.join(root, f) for f in files if f.endswith(".seg")]
        return sorted(out)

    def logs(self, r):
        return [e["record"]["log"][:8] for e in r.records()]

    def test_outage_spills_to_disk_memory_stays_bounded(self):
        port = fwdtest.free_port()
        d = self.spool_daemon(port, FLUENTD_BUFFER_LIMIT="256k")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa0)))
        n = 40000  # ~4 MB of records against 256 KiB of memory
        for j in range(0, n, 5000):
            f.write(lines(b"s", j, j + 5000, pad=60))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n, 20, "all read")
        m = d.api.metrics()
        # the limit, plus the open batch until flush-interval seals it (batch-size 16k): an
        # open batch may take memory_bytes past the limit by up to one batch
        self.assertLessEqual(m["fwdlog_memory_bytes"], 256 * 1024 + 16 * 1024)
        self.assertGreater(m["fwdlog_spool_bytes"], 3 * 1024 * 1024)
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        r = self.receiver(port=port)
        got = r.wait_exact(n, timeout=30)
        self.assertEqual([e["record"]["log"][:8] for e in got], ["s%07d" % i for i in range(n)])
        d.api.stop(f.path)
        wait_until(lambda: not self.spool_files(), 10, "delivered batches leaving the spool")

    def test_file_buffer_survives_sigkill(self):
        port = fwdtest.free_port()
        env = {"FWDLOG_BUFFER_TYPE": "file"}
        d = self.spool_daemon(port, **env)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa1)))
        n = 20000
        for j in range(0, n, 5000):
            f.write(lines(b"k", j, j + 5000))
        self.wait_all_read(d, n)
        self.kill_daemon(d)
        self.assertTrue(self.spool_files())
        # options.json can hold a shared key or password: the owner's alone
        metas = [os.path.join(root, "options.json") for root, _, files in
                 os.walk(os.path.join(self.tmp, "state", "spool")) if "options.json" in files]
        self.assertEqual(len(metas), 1)
        self.assertEqual(os.stat(metas[0]).st_mode & 0o777, 0o600)
        r = self.receiver(port=port)
        d2 = self.spool_daemon(port, **env)
        got = r.wait_exact(n, timeout=30)
        self.assertEqual([e["record"]["log"][:8] for e in got], ["k%07d" % i for i in range(n)])
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], n)
        self.assertIn("left in the spool by an earlier run", d2.logtext())

    def test_file_buffer_open_batch_survives_sigkill(self):
        # The batch still open at the crash (flush-interval 10 s, far from batch-size) is
        # in its journal: every line read arrives after the restart, exactly once.
        port = fwdtest.free_port()
        env = {"FWDLOG_BUFFER_TYPE": "file", "FWDLOG_FLUSH_INTERVAL": "10s",
               "FWDLOG_BATCH_SIZE": "4m"}
        d = self.spool_daemon(port, **env)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa3)))
        n = 3000
        f.write(lines(b"j", 0, n))
        deadline = time.time() + 20
        while d.api.metrics()["fwdlog_records_total"] < n and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.api.metrics()["fwdlog_spooled_batches_total"], 0, "still open")
        self.kill_daemon(d)
        jrn = [fn for _, _, fs in os.walk(os.path.join(self.tmp, "state", "spool"))
               for fn in fs if fn.endswith(".jrn")]
        self.assertEqual(len(jrn), 1, jrn)
        f.write(lines(b"j", n, n + 10))  # read by the next fwdlogd, after the journal's
        r = self.receiver(port=port)
        d2 = self.spool_daemon(port, **env)
        r.wait(n + 10, timeout=30)
        time.sleep(0.5)
        self.assertEqual(self.logs(r), ["j%07d" % i for i in range(n + 10)])
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], n)
        self.assertEqual(r.errors(), [])

    def test_file_buffer_restart_does_not_resend_what_was_acknowledged(self):
        # Segments go only once all their batches are done, so a restart used to send a
        # whole segment again; the "delivered" mark keeps that to the unacknowledged.
        r = self.receiver()
        env = {"FWDLOG_BUFFER_TYPE": "file", "FLUENTD_REQUEST_ACK": "true"}
        d = self.spool_daemon(r.port, **env)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa4)))
        f.write(lines(b"d", 0, 2000))
        r.wait(2000, timeout=30)
        deadline = time.time() + 10
        while d.api.metrics()["fwdlog_records_sent_total"] < 2000 and time.time() < deadline:
            time.sleep(0.05)  # acknowledged
        self.assertTrue(self.spool_files(), "the segment is still in use")
        self.kill_daemon(d)
        d2 = self.spool_daemon(r.port, **env)
        f.write(lines(b"d", 2000, 2010))
        r.wait(2010, timeout=30)
        time.sleep(1.0)
        self.assertEqual(self.logs(r), ["d%07d" % i for i in range(2010)])
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], 0)
        self.assertEqual(r.errors(), [])

    def test_truncated_segment_is_skipped_not_fatal(self):
        port = fwdtest.free_port()
        env = {"FWDLOG_BUFFER_TYPE": "file", "FWDLOG_BATCH_SIZE": "4k"}
        d = self.spool_daemon(port, **env)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa2)))
        f.write(lines(b"t", 0, 2000))
        self.wait_all_read(d, 2000)
        self.kill_daemon(d)
        seg = self.spool_files()[-1]
        os.truncate(seg, os.path.getsize(seg) - 10)  # a crash in the middle of a write
        r = self.receiver(port=port)
        d2 = self.spool_daemon(port, **env)
        # the spool replayed (all but the cut batch) and nothing left to send
        wait_until(lambda: d2.api.metrics()["fwdlog_records_sent_total"] > 1900 and
                   d2.api.metrics()["fwdlog_queued_bytes"] == 0, 20, "the replay")
        sent = d2.api.metrics()["fwdlog_records_sent_total"]
        got = [e["record"]["log"][:8] for e in r.wait_exact(sent, timeout=20)]
        m = d2.api.metrics()
        self.assertEqual(m["fwdlog_spool_corrupt_records_total"], 1)
        self.assertEqual(got, ["t%07d" % i for i in range(len(got))], "a prefix, in order")
        self.assertGreater(len(got), 1900)  # only the cut batch (< 100 records) is missing
        self.assertIn("cut short", d2.logtext())

    def test_sigterm_while_down_keeps_memory_batches(self):
        port = fwdtest.free_port()
        d = self.spool_daemon(port)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa3)))
        f.write(lines(b"m", 0, 3000))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 3000, 10, "all read")
        self.assertEqual(d.stop(timeout=20), 0)
        self.procs.remove(d)
        self.assertIn("kept in the spool", d.logtext())
        r = self.receiver(port=port)
        self.spool_daemon(port)
        got = r.wait_exact(3000, timeout=20)
        self.assertEqual([e["record"]["log"][:8] for e in got], ["m%07d" % i for i in range(3000)])

    def fill(self, policy, n):
        port = fwdtest.free_port()
        d = self.spool_daemon(port, FLUENTD_BUFFER_LIMIT="256k", FWDLOG_SPOOL_LIMIT="16m",
                              FWDLOG_OVERFLOW_POLICY=policy)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa4)))
        for j in range(0, n, 5000):
            f.write(lines(b"p", j, j + 5000, pad=200))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n, 30, "all read")
        d.api.stop(f.path)
        return port, d

    def check_counts(self, d, r, n):
        m = d.api.metrics()
        dropped = m["fwdlog_records_dropped_total"]
        self.assertGreater(dropped, 0)
        # memory: the limit plus at most the open batch (batch-size 16k)
        self.assertLessEqual(m["fwdlog_memory_bytes"], 256 * 1024 + 16 * 1024)
        self.assertLessEqual(m["fwdlog_spool_bytes"], 16 * 1024 * 1024 + 4 * 1024 * 1024)
        got = r.wait_exact(n - dropped, timeout=30)  # every record kept arrives, once
        return dropped, [e["record"]["log"][:8] for e in got]

    def test_spool_full_drop_oldest(self):
        n = 100000  # ~26 MB of records: memory 256 KiB + spool 16 MiB overflow
        port, d = self.fill("drop-oldest", n)
        r = self.receiver(port=port)
        dropped, logs = self.check_counts(d, r, n)
        self.assertEqual(logs[-1], "p%07d" % (n - 1), "the newest are kept")
        self.assertEqual(logs, sorted(logs))
        self.assertIn("dropped the oldest", d.logtext())

    def test_spool_full_drop_newest(self):
        n = 100000
        port, d = self.fill("drop-newest", n)
        r = self.receiver(port=port)
        dropped, logs = self.check_counts(d, r, n)
        self.assertEqual(logs[:3], ["p0000000", "p0000001", "p0000002"], "the oldest are kept")
        self.assertEqual(logs, sorted(logs))
        self.assertIn("dropped the newest", d.logtext())

    def test_drops_are_counted_per_container(self):
        port = fwdtest.free_port()
        d = self.spool_daemon(port, FLUENTD_BUFFER_LIMIT="64k", FWDLOG_SPOOL_LIMIT="0",
                              FWDLOG_OVERFLOW_POLICY="drop-newest")
        fa, fb = self.fifo(), self.fifo()
        d.api.start(fa.path, info(cid(0xa5)))
        d.api.start(fb.path, info(cid(0xa6)))
        fa.write(lines(b"a", 0, 4000, pad=100))
        fb.write(lines(b"b", 0, 100))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 4100, 10, "all read")
        m = d.api.metrics()
        per = {k: v for k, v in m.items() if k.startswith("fwdlog_container_records_dropped")}
        key = ('fwdlog_container_records_dropped_total{container_id="%s",'
               'container_name="/web",reason="overflow"}')
        a = per[key % cid(0xa5)[:12]]
        b = per[key % cid(0xa6)[:12]]
        self.assertGreater(a, 0)
        self.assertEqual(a + b, m["fwdlog_records_dropped_total"])
        d.api.stop(fa.path)
        d.api.stop(fb.path)
        self.assertIn("records of this container were dropped", d.logtext())

    def test_block_holds_the_container_back_and_loses_nothing(self):
        port = fwdtest.free_port()
        d = self.spool_daemon(port, FLUENTD_BUFFER_LIMIT="64k", FWDLOG_SPOOL_LIMIT="0",
                              FWDLOG_OVERFLOW_POLICY="block")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa7)))
        n = 200000  # 5 MB: more than the pipe and what fwdlog reads ahead
        data = memoryview(lines(b"b", 0, n))
        off, idle_since = 0, time.time()
        while off < len(data) and time.time() - idle_since < 3:
            try:
                off += os.write(f.fd, data[off:])
                idle_since = time.time()
            except BlockingIOError:
                time.sleep(0.02)
        self.assertLess(off, len(data), "the pipe filled: back-pressure reached the writer")
        m = d.api.metrics()
        self.assertEqual(m["fwdlog_blocked_destinations"], 1)
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        # over by at most what one read of the FIFO held (256 KiB of frames of 30 bytes
        # make about 1.4 MB of records)
        self.assertLessEqual(m["fwdlog_memory_bytes"], 64 * 1024 + 2 * 1024 * 1024)
        r = self.receiver(port=port)
        f.write(bytes(data[off:]), timeout=30)  # room again: the rest goes through
        got = r.wait_exact(n, timeout=30)
        self.assertEqual(logs(got), ["b%07d" % i for i in range(n)])
        self.assertEqual(d.api.metrics()["fwdlog_records_dropped_total"], 0)
        self.assertIn("containers' logs are not read", d.logtext())
        self.assertIn("reading containers' logs again", d.logtext())


class TestFairness(ProcTest):
    """Issue 13 items 7 and 8: a noisy container cannot make a quiet one lose lines."""

    DROPPED = ('fwdlog_container_records_dropped_total{container_id="%s",'
               'container_name="/web",reason="overflow"}')

    def down_daemon(self, port, **env):
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
             "FWDLOG_MAX_RETRY_WAIT": "200ms"}
        e.update(env)
        return self.daemon(e, level="info")

    def paced(self, f, prefix, n, burst=10, pause=0.02):
        """A quiet container: n lines in bursts of `burst`, `pause` seconds apart, from a
        thread. Returns the thread (join it)."""
        def run():
            for j in range(0, n, burst):
                f.write(lines(prefix, j, min(n, j + burst)))
                time.sleep(pause)
        t = threading.Thread(target=run)
        t.start()
        return t

    def dropped(self, m, c):
        return m.get(self.DROPPED % c[:12], 0)

    def test_issue_13_flood_does_not_cost_a_quiet_container_lines(self):
        # The aggregator is down, 1 MiB of memory and no spool: A floods 1,000,000 lines
        # while B writes 1,000 in small paced bursts. Only A loses lines, and its drops
        # are counted; once the aggregator is up every one of B's lines arrives.
        port = fwdtest.free_port()
        d = self.down_daemon(port, FLUENTD_BUFFER_LIMIT="1m", FWDLOG_SPOOL_LIMIT="0")
        fa, fb = self.fifo(), self.fifo()
        a, b = cid(0xf1), cid(0xf2)
        self.assertEqual(d.api.start(fa.path, info(a))[0], 200)
        self.assertEqual(d.api.start(fb.path, info(b))[0], 200)
        quiet = self.paced(fb, b"b", 1000)
        chunk = b"".join(frame(time_nano=i + 1, line=b"a-flood-" + b"x" * 40)
                         for i in range(1000))
        for _ in range(1000):
            fa.write(chunk, timeout=60)
        quiet.join()
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 1001000, 60,
                   "all 1,001,000 lines read")
        time.sleep(0.5)  # flush-interval: every open batch sealed and queued (or dropped)
        m = d.api.metrics()
        d.api.stop(fa.path)
        d.api.stop(fb.path)
        dropped_a = self.dropped(m, a)
        self.assertEqual(self.dropped(m, b), 0, "the quiet container lost lines")
        self.assertGreater(dropped_a, 900000)
        self.assertEqual(m["fwdlog_records_dropped_total"], dropped_a)
        self.assertIn("%d records of this container were dropped" % dropped_a, d.logtext())
        r = self.receiver(port=port)
        got = r.wait_exact(1001000 - dropped_a, timeout=60)
        self.assertEqual([e["record"]["log"] for e in got if e["record"]["log"][0] == "b"],
                         ["b%07d" % i for i in range(1000)])
        self.assertEqual(sum(1 for e in got if e["record"]["log"][0] == "a"),
                         1000000 - dropped_a)


    RATE = ('fwdlog_container_records_dropped_total{container_id="%s",'
            'container_name="/web",reason="rate_limit"}')

    def test_issue_13_rate_limit_drops_exactly_the_excess(self):
        # A: 1,000 lines of exactly 100 bytes against rate-burst=10000 (100 lines) and a
        # rate of 1 byte/s (refills one line per 100 s): exactly the first 100 go, 900
        # are dropped and counted. B, at the same time and on the same destination,
        # loses nothing.
        r = self.receiver()
        d = self.down_daemon(r.port)
        fa, fb = self.fifo(), self.fifo()
        a, b = cid(0xf3), cid(0xf4)
        cfg = {"rate-limit": "1/s", "rate-burst": "10000"}
        self.assertEqual(d.api.start(fa.path, info(a, config=cfg)), (200, {"Err": ""}))
        self.assertEqual(d.api.start(fb.path, info(b)), (200, {"Err": ""}))
        fa.write(lines(b"a", 0, 1000, pad=92))
        fb.write(lines(b"b", 0, 1000, pad=92))
        got = r.wait_exact(1100, timeout=20)
        self.assertEqual([e["record"]["log"][:8] for e in got if e["record"]["log"][0] == "a"],
                         ["a%07d" % i for i in range(100)])
        self.assertEqual([e["record"]["log"][:8] for e in got if e["record"]["log"][0] == "b"],
                         ["b%07d" % i for i in range(1000)])
        self.assertEqual(len(got[0]["record"]["log"]), 100)
        m = d.api.metrics()
        self.assertEqual(m[self.RATE % a[:12]], 900)
        self.assertEqual(self.dropped(m, a), 0)  # reason overflow
        self.assertEqual(m[self.RATE % b[:12]], 0)
        self.assertEqual(self.dropped(m, b), 0)
        self.assertEqual(m["fwdlog_records_rate_limited_total"], 900)
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        self.assertIn("over its rate-limit (1 bytes/s): dropping lines", d.logtext())
        d.api.stop(fa.path)
        self.assertIn("900 records of this container were dropped so far (900 over its "
                      "rate-limit, 0 with memory and spool full", d.logtext())

    def test_issue_13_rate_limit_with_block_holds_back_only_that_container(self):
        # overflow-policy=block: A's 5,000 lines of 100 bytes at 100k/s with a 100k burst
        # take 4 s and none is dropped; B, on the same destination, is not slowed: its
        # 1,000 lines arrive while A is still held back.
        r = self.receiver()
        d = self.down_daemon(r.port, FWDLOG_OVERFLOW_POLICY="block")
        fa, fb = self.fifo(), self.fifo()
        a, b = cid(0xf5), cid(0xf6)
        cfg = {"rate-limit": "100000/s", "rate-burst": "100000"}
        self.assertEqual(d.api.start(fa.path, info(a, config=cfg)), (200, {"Err": ""}))
        self.assertEqual(d.api.start(fb.path, info(b)), (200, {"Err": ""}))
        t0 = time.time()
        writer = threading.Thread(target=fa.write, args=(lines(b"a", 0, 5000, pad=92), 30))
        writer.start()
        time.sleep(0.5)
        t1 = time.time()
        fb.write(lines(b"b", 0, 1000, pad=92))
        got_b = r.wait(1000, timeout=10, pred=lambda e: e["record"]["log"][0] == "b")
        t2 = time.time()
        n_a = sum(1 for e in r.records() if e["record"]["log"][0] == "a")
        self.assertEqual(len(got_b), 1000)
        self.assertLess(t2 - t1, 1.5, "B was slowed by A's rate-limit")
        self.assertLess(n_a, 4000, "A was not held back")
        writer.join()
        got = r.wait_exact(6000, timeout=20)
        t3 = time.time()
        self.assertEqual([e["record"]["log"][:8] for e in got if e["record"]["log"][0] == "a"],
                         ["a%07d" % i for i in range(5000)])
        self.assertGreater(t3 - t0, 3.5, "A went faster than its rate-limit")
        m = d.api.metrics()
        self.assertEqual(m[self.RATE % a[:12]], 0)
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        self.assertEqual(m["fwdlog_records_rate_limited_total"], 0)
        self.assertEqual(m["fwdlog_blocked_destinations"], 0)


class TestSeveralAggregators(ProcTest):
    """fluentd-address with a list: failover and round-robin."""

    def two(self, balance, ack=True, **env):
        ports = [fwdtest.free_port(), fwdtest.free_port()]
        rs = [self.receiver(port=ports[0], name="a"), self.receiver(port=ports[1], name="b")]
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d, 127.0.0.1:%d" % tuple(ports),
             "FWDLOG_BALANCE": balance, "FLUENTD_RETRY_WAIT": "50ms",
             "FWDLOG_MAX_RETRY_WAIT": "300ms", "FWDLOG_BATCH_SIZE": "8k",
             "FLUENTD_REQUEST_ACK": "true" if ack else "false"}
        e.update(env)
        return ports, rs, self.daemon(e, level="info")

    def all_logs(self, *rs):
        return sorted(e["record"]["log"] for r in rs for e in r.records())

    def wait_total(self, rs, n, timeout=30):
        wait_until(lambda: sum(len(r.records()) for r in rs) >= n, timeout,
                   "%d records in all" % n)
        for r in rs:
            r.settle()

    def test_failover_uses_the_first_then_the_standby(self):
        ports, rs, d = self.two("failover")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xb0)))
        f.write(lines(b"f", 0, 5000))
        self.assertEqual(logs(rs[0].wait_exact(5000)), ["f%07d" % i for i in range(5000)])
        self.assertEqual(len(rs[1].records()), 0, "the standby gets nothing while the first is up")
        rs[0].stop()  # killed while idle: the standby takes over, nothing to resend
        f.write(lines(b"f", 5000, 10000))
        self.assertEqual(logs(rs[1].wait_exact(5000)), ["f%07d" % i for i in range(5000, 10000)])
        # the first comes back and rejoins: new batches go to it again
        rs[0] = self.receiver(port=ports[0], name="a", append=True)
        before, written = len(rs[0].records()), 0
        deadline = time.time() + 10
        while len(rs[0].records()) == before and time.time() < deadline:
            f.write(lines(b"g", written, written + 100))
            written += 100
            time.sleep(0.2)
        self.assertGreater(len(rs[0].records()), before, "the first aggregator rejoins")
        # ... and the standby stops receiving: everything written now goes to the first
        for r in rs:
            r.settle()
        first, standby = len(rs[0].records()), len(rs[1].records())
        f.write(lines(b"h", 0, 3000))
        self.assertEqual(logs(rs[0].wait_exact(first + 3000))[first:],
                         ["h%07d" % i for i in range(3000)])
        self.assertEqual(len(rs[1].records()), standby, "the standby still receives")
        self.assert_at_least_once(rs, {"f%07d" % i for i in range(10000)} |
                                  {"g%07d" % i for i in range(written)} |
                                  {"h%07d" % i for i in range(3000)})
        self.assertEqual(d.api.metrics()["fwdlog_records_dropped_total"], 0)

    def test_failover_kill_mid_stream_loses_nothing_with_acks(self):
        ports, rs, d = self.two("failover")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xb1)))
        n = 60000
        for j in range(0, n, 5000):
            f.write(lines(b"k", j, j + 5000))
            if j == 25000:
                rs[0].proc.kill()
        self.wait_total(rs, n, timeout=40)
        self.assert_at_least_once(rs, {"k%07d" % i for i in range(n)})
        self.assertGreater(len(rs[1].records()), 0)

    def test_round_robin_spreads_and_survives_a_kill(self):
        ports, rs, d = self.two("round-robin")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xb2)))
        n = 60000
        for j in range(0, n, 5000):
            f.write(lines(b"r", j, j + 5000))
            if j == 10000:
                self.wait_total(rs, 10000)
                self.assertGreater(len(rs[0].records()), 1000)
                self.assertGreater(len(rs[1].records()), 1000)
            if j == 30000:
                rs[1].proc.kill()
        self.wait_total(rs, n, timeout=40)
        self.assert_at_least_once(rs, {"r%07d" % i for i in range(n)})

    def test_bad_lists_refused(self):
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:1"})
        f = self.fifo()
        st, body = d.api.start(f.path, info(cid(0xb3), config={
            "fluentd-address": "127.0.0.1:1,127.0.0.1:1"}))
        self.assertIn("listed twice", body["Err"])
        st, body = d.api.start(f.path, info(cid(0xb3), config={"balance": "random"}))
        self.assertIn("failover or round-robin", body["Err"])


class TestAuth(ProcTest):
    """Shared-key handshake against the receiver's spec v1 server side."""

    def run_case(self, recv_kw, env, n=200):
        r = self.receiver(**recv_kw)
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port, "FLUENTD_RETRY_WAIT": "100ms"}
        e.update(env)
        d = self.daemon(e)
        f = self.fifo()
        st, body = d.api.start(f.path, info(cid(90)))
        self.assertEqual(body, {"Err": ""})
        f.write(b"".join(frame(time_nano=i + 1, line=b"s%d" % i) for i in range(n)))
        return r, d

    def test_fluentd_style_bin_nonce(self):
        r, d = self.run_case({"shared_key": "s3cret"}, {"FLUENTD_SHARED_KEY": "s3cret",
                                                       "FLUENTD_SELF_HOSTNAME": "client1"})
        self.assertEqual(logs(r.wait_exact(200)), ["s%d" % i for i in range(200)])
        self.assertEqual([(a["auth"], a["client"]) for a in r.auths()], [("ok", "client1")])
        self.assertNotIn("s3cret", d.logtext())

    def keepalive_false_case(self, ack):
        # Fluentd's deny_keepalive: HELO says keepalive=false and the server closes each
        # connection after its first request. Writing more requests behind the first lost
        # them (168 of 3000 arrived without acks); one request per connection, then a new
        # connection, delivers every line, with acks or without.
        r, d = self.run_case({"shared_key": "k", "no_keepalive": True},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_REQUEST_ACK": ack,
                              "FWDLOG_BATCH_SIZE": "16k"}, n=3000)
        # each connection is its own thread in the receiver: compared as a multiset
        self.assertEqual(sorted(logs(r.wait_exact(3000, timeout=60))),
                         sorted("s%d" % i for i in range(3000)))
        reqs = {(e["conn"], e["req"]) for e in r.records()}
        self.assertEqual(len({c for c, _ in reqs}), len(reqs), "one request a connection")
        self.assertGreater(len(reqs), 3)
        self.assertIn("keepalive false: one request per connection", d.logtext())

    def test_helo_keepalive_false_without_acks(self):
        self.keepalive_false_case("false")

    def test_helo_keepalive_false_with_acks(self):
        self.keepalive_false_case("true")

    def test_fluent_bit_style_str_nonce_with_acks(self):
        r, d = self.run_case({"shared_key": "k", "nonce_type": "str"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_REQUEST_ACK": "true"})
        self.assertEqual(logs(r.wait_exact(200)), ["s%d" % i for i in range(200)])
        self.assertEqual(r.auths()[0]["auth"], "ok")

    def test_user_and_password_from_file(self):
        pw = os.path.join(self.tmp, "pw")
        with open(pw, "w") as fh:
            fh.write("hunter2\n")
        r, d = self.run_case({"shared_key": "k", "user": "alice:hunter2"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_USERNAME": "alice",
                              "FLUENTD_PASSWORD_FILE": pw})
        self.assertEqual(logs(r.wait_exact(200)), ["s%d" % i for i in range(200)])
        self.assertNotIn("hunter2", d.logtext())

    def assert_refused(self, r, d, log_part, recv_part=None):
        wait_until(lambda: log_part in d.logtext(), 10, "the refusal in fwdlogd's log")
        # refused, retried (100 ms) and refused again: still nothing may pass
        wait_until(lambda: d.api.metrics()["fwdlog_connection_failures_total"] >= 3, 10,
                   "two retries")
        self.assertEqual(r.records(), [], "no record may pass a failed handshake")
        if recv_part:
            self.assertTrue(any(recv_part in a["auth"] for a in r.auths()), r.auths())
        self.assertGreater(d.api.metrics()["fwdlog_queued_bytes"], 0, "records stay buffered")

    def test_wrong_shared_key(self):
        r, d = self.run_case({"shared_key": "right"}, {"FLUENTD_SHARED_KEY": "wrong"})
        self.assert_refused(r, d, "shared_key mismatch", "shared_key mismatch")
        self.assertNotIn("wrong", d.logtext().replace("wrong shared key", ""))

    def test_wrong_password(self):
        r, d = self.run_case({"shared_key": "k", "user": "alice:right"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_USERNAME": "alice",
                              "FLUENTD_PASSWORD": "nope"})
        self.assert_refused(r, d, "username/password mismatch", "username/password")

    def test_bad_pong_digest_is_refused(self):
        r, d = self.run_case({"shared_key": "k", "bad_pong_digest": True},
                             {"FLUENTD_SHARED_KEY": "k"})
        self.assert_refused(r, d, "PONG digest is wrong")

    def test_pong_with_our_own_hostname_is_refused(self):
        r, d = self.run_case({"shared_key": "k", "server_hostname": "same"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_SELF_HOSTNAME": "same"})
        self.assert_refused(r, d, "hostname is our own")

    def test_key_without_handshake_server_times_out(self):
        # A server that never sends HELO: fwdlogd waits the full 10 s handshake timeout
        # (FWD_CONNECT_TIMEOUT_MS), sends nothing meanwhile, then gives up and retries.
        t0 = time.time()
        r, d = self.run_case({}, {"FLUENTD_SHARED_KEY": "k"})
        wait_until(lambda: "no HELO in time" in d.logtext(), 25, "the handshake timeout")
        took = time.time() - t0
        self.assertGreater(took, 9.5, "gave up waiting for HELO before 10 s")
        self.assertLess(took, 20, "the handshake timeout did not hold")
        self.assertEqual(r.records(), [], "nothing may be sent before the handshake")

    def test_issue_13_refusal_is_logged_once(self):
        # It was two lines: the reason at error, then "authentication failed: Permission
        # denied; retrying" at warn. Now one line with the reason and the retry.
        r, d = self.run_case({"shared_key": "right"}, {"FLUENTD_SHARED_KEY": "wrong"})
        self.assert_refused(r, d, "shared_key mismatch", "shared_key mismatch")
        lines = [ln for ln in d.logtext().splitlines() if "authentication failed" in ln]
        self.assertEqual(len(lines), 1, lines)  # then rate-limited for 10 s
        self.assertIn(" error output 127.0.0.1:%d: authentication failed: the aggregator "
                      "refused us: shared_key mismatch; retrying in " % r.port, lines[0])
        self.assertNotIn("Permission denied", d.logtext())
        self.assertIn("shared_key mismatch", d.api.healthz()[1]["destinations"][0]["last_error"])

    def test_issue_13_close_after_ping_names_the_option(self):
        # Fluent Bit refuses a wrong key by closing the connection, with no PONG.
        r, d = self.run_case({"shared_key": "right", "close_on_refusal": True},
                             {"FLUENTD_SHARED_KEY": "wrong"})
        self.assert_refused(r, d, "after our PING", "shared_key mismatch")
        self.assertIn("authentication failed: the aggregator closed the connection after our "
                      "PING, without a PONG (Fluent Bit refuses a wrong shared key so): check "
                      "fluentd-shared-key (or fluentd-shared-key-file); retrying in ",
                      d.logtext())

    def test_issue_13_user_auth_without_username_names_the_options(self):
        r, d = self.run_case({"shared_key": "k", "user": "alice:pw"},
                             {"FLUENTD_SHARED_KEY": "k"})
        self.assert_refused(r, d, "fluentd-username is not set")
        self.assertIn("authentication failed: the aggregator asks for a user name and password "
                      "(its HELO carries an auth salt) and fluentd-username is not set: set "
                      "fluentd-username and fluentd-password (or fluentd-password-file)",
                      d.logtext())
        # no PING was sent: the receiver saw each connection close before one
        self.assertEqual({a["auth"] for a in r.auths()}, {"client closed before PING"})

    def test_username_without_key_is_an_option_error(self):
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:9"})
        f = self.fifo()
        st, body = d.api.start(f.path, info(cid(91), config={"fluentd-username": "u"}))
        self.assertIn("need fluentd-shared-key", body["Err"])
        st, body = d.api.start(f.path, info(cid(91), config={
            "fluentd-shared-key-file": "/nonexistent/key"}))
        self.assertIn('fluentd-shared-key-file="/nonexistent/key"', body["Err"])


class TestSecretFiles(ProcTest):
    """*-file options name files that StartLogging reads on the loop thread: anything but a
    regular file (a FIFO, a directory, a symlink) is refused at once, with an Err naming the
    option, and the daemon keeps answering (issue 13: a FIFO used to hang every container)."""

    def start_err(self, d, config, timeout=1.0):
        f = self.fifo()
        try:
            st, body = d.api.start(f.path, info(cid(95), config=config), timeout=timeout)
        except socket.timeout:
            self.fail("StartLogging got no answer within %.1f s" % timeout)
        self.assertEqual(st, 200)
        return body["Err"]

    def unblock(self, fifo):
        """The old code sits in open(2) on the FIFO: a writer lets it go, so the daemon can
        still be stopped and the test fails on its assertion, not in tearDown."""
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    def test_issue_13_shared_key_file_fifo_answers_err_within_1s(self):
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:9"})
        fifo = os.path.join(self.tmp, "key.fifo")
        os.mkfifo(fifo)
        try:
            e = self.start_err(d, {"fluentd-shared-key-file": fifo})
        finally:
            self.unblock(fifo)
        self.assertIn('invalid log-opt fluentd-shared-key-file="%s"' % fifo, e)
        self.assertIn("want a regular file", e)
        self.assertEqual(d.api.call("/Plugin.Activate", timeout=1),
                         (200, {"Implements": ["LogDriver"]}))

    def test_issue_13_other_non_regular_files_are_refused(self):
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:9"})
        fifo, key, link = (os.path.join(self.tmp, n) for n in ("pem.fifo", "key", "key.link"))
        os.mkfifo(fifo)
        with open(key, "w") as fh:
            fh.write("k\n")
        os.symlink(key, link)
        cases = [
            ({"fluentd-shared-key": "k", "fluentd-password-file": self.tmp},
             'fluentd-password-file="%s"' % self.tmp, "want a regular file"),
            ({"fluentd-shared-key-file": link}, 'fluentd-shared-key-file="%s"' % link,
             "not a symbolic link"),
            ({"fluentd-tls-ca-file": fifo}, 'fluentd-tls-ca-file="%s"' % fifo,
             "not a regular file"),
            ({"fluentd-tls-cert-file": key, "fluentd-tls-key-file": key,
              "fluentd-tls-key-password-file": fifo},
             'fluentd-tls-key-password-file="%s"' % fifo, "want a regular file"),
        ]
        try:
            for config, opt, why in cases:
                e = self.start_err(d, config)
                self.assertIn(opt, e)
                self.assertIn(why, e)
        finally:
            self.unblock(fifo)
        self.assertEqual(self.start_err(d, {"fluentd-shared-key-file": key}), "")


def fnv1a64(text):
    """What an older fwdlog named a spool directory with (of its dest_key)."""
    h = 1469598103934665603
    for b in text.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


class TestSecretsAtRest(ProcTest):
    """Issue 13: no secret value in the state directory (options.json keeps the -file path,
    the variable's name, or that a secret was inline), replay after a restart uses the key
    at hand then (a rotated file or variable: the new one), an inline key's spool waits for
    a container to supply one, and spool directories are named by SHA-256 of the
    destination without its secrets, with an older version's FNV-named ones still sent."""

    def env(self, port, **kw):
        e = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
             "FWDLOG_MAX_RETRY_WAIT": "200ms"}
        e.update(kw)
        return e

    def state(self, *parts):
        return os.path.join(self.tmp, "state", *parts)

    def spool_dirs(self):
        base = self.state("spool")
        return sorted(os.listdir(base)) if os.path.isdir(base) else []

    def options(self, name):
        with open(self.state("spool", name, "options.json")) as fh:
            return json.load(fh)

    def files_holding(self, secrets):
        """Every file under the state directory that holds one of the secrets' bytes."""
        hits = []
        for root, _, files in os.walk(self.state()):
            for fn in files:
                with open(os.path.join(root, fn), "rb") as fh:
                    data = fh.read()
                hits += [(os.path.relpath(os.path.join(root, fn), self.state()), sec)
                         for sec in secrets if sec.encode() in data]
        return sorted(hits)

    def spool_run(self, env, configs, n):
        """A daemon with the aggregator down: each config a container writing n lines
        (prefixes a, b, ...), stopped; then SIGTERM keeps the records in the spool."""
        d = self.daemon(env, level="info")
        fifos = []
        for i, config in enumerate(configs):
            f = self.fifo()
            self.assertEqual(d.api.start(f.path, info(cid(0xc0 + i), config=config)),
                             (200, {"Err": ""}))
            f.write(lines(b"abcdef"[i:i + 1], 0, n))
            fifos.append(f)
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n * len(configs), 10,
                   "every line read")
        for f in fifos:
            d.api.stop(f.path)
        self.assertEqual(d.stop(timeout=20), 0)
        self.procs.remove(d)
        self.assertIn("kept in the spool", d.logtext())
        return d

    def test_issue_13_no_secret_value_on_disk(self):
        port = fwdtest.free_port()
        key = os.path.join(self.tmp, "key")
        with open(key, "w") as fh:
            fh.write("file-K3y-s3cret\n")
        secrets = ["inline-K3y-s3cret", "inline-pw-s3cret", "file-K3y-s3cret", "env-K3y-s3cret"]
        env = self.env(port, FLUENTD_SHARED_KEY="env-K3y-s3cret")
        inline = {"fluentd-shared-key": "inline-K3y-s3cret", "fluentd-username": "alice",
                  "fluentd-password": "inline-pw-s3cret"}
        d = self.daemon(env, level="info")
        running = self.fifo()
        d.api.start(running.path, info(cid(0xcf), config=inline))
        # while a container runs, its StartLogging (its log-opts) is kept to re-attach it
        # after a restart: an inline key is there, as in dockerd's own container config
        wait_until(lambda: os.listdir(self.state("streams")), 5, "the stream's state")
        self.assertEqual([sec for _, sec in self.files_holding(secrets)], ["inline-K3y-s3cret",
                                                                           "inline-pw-s3cret"])
        d.api.stop(running.path)
        self.assertEqual(self.files_holding(secrets), [])
        d.stop()
        self.procs.remove(d)
        self.spool_run(env, [inline, {"fluentd-shared-key-file": key}, {}], 100)
        names = self.spool_dirs()
        self.assertEqual(len(names), 3, names)
        self.assertEqual([len(n) for n in names], [64, 64, 64])
        self.assertEqual(self.files_holding(secrets), [])
        canon = lambda o: json.dumps(o, sort_keys=True)  # noqa: E731
        secret_opts = [{k: v for k, v in self.options(n).items()
                        if "key" in k or "pass" in k or "user" in k} for n in names]
        self.assertEqual(sorted(secret_opts, key=canon), sorted([
            {"fluentd-shared-key": {"inline": True}, "fluentd-username": "alice",
             "fluentd-password": {"inline": True}},
            {"fluentd-shared-key-file": key},
            {"fluentd-shared-key": {"env": "FLUENTD_SHARED_KEY"}}], key=canon))
        for n in names:
            self.assertEqual(os.stat(self.state("spool", n, "options.json")).st_mode & 0o777,
                             0o600)
        # the next start: the -file and plugin-wide spools are sent (the aggregator is still
        # down); the inline one waits, and says why
        d2 = self.daemon(env, level="info")
        wait_until(lambda: "secrets are not kept on disk" in d2.logtext(), 5, "the wait")
        self.assertIn("fluentd-password (given inline), fluentd-shared-key (given inline): "
                      "secrets are not kept on disk, so its records wait here until a "
                      "container logs to 127.0.0.1:%d with these options again" % port,
                      d2.logtext())
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], 200)
        self.assertEqual(self.files_holding(secrets), [])
        for sec in secrets:
            self.assertNotIn(sec, d2.logtext())

    def test_issue_13_rotated_key_file_and_variable_replay_with_the_new_key(self):
        port = fwdtest.free_port()
        key = os.path.join(self.tmp, "key")
        with open(key, "w") as fh:
            fh.write("old-file-key\n")
        self.spool_run(self.env(port, FLUENTD_SHARED_KEY="old-env-key"),
                       [{"fluentd-shared-key-file": key}, {}], 500)
        self.assertEqual(len(self.spool_dirs()), 2)
        # rotated while fwdlogd was down: the file, and the plugin's setting
        with open(key, "w") as fh:
            fh.write("new-key\n")
        r = self.receiver(port=port, shared_key="new-key")
        d = self.daemon(self.env(port, FLUENTD_SHARED_KEY="new-key"), level="info")
        got = r.wait_exact(1000, timeout=30)
        self.assertEqual(sorted(logs(got)), sorted(["a%07d" % i for i in range(500)] +
                                                   ["b%07d" % i for i in range(500)]))
        self.assertEqual({a["auth"] for a in r.auths()}, {"ok"})
        self.assertEqual(d.api.metrics()["fwdlog_replayed_records_total"], 1000)
        self.assertNotIn("old-", json.dumps([self.options(n) for n in self.spool_dirs()]))

    def test_issue_13_inline_key_spool_waits_for_a_container_with_a_key(self):
        port = fwdtest.free_port()
        self.spool_run(self.env(port), [{"fluentd-shared-key": "old-inline"}], 300)
        (name,) = self.spool_dirs()
        r = self.receiver(port=port, shared_key="new-inline")
        d = self.daemon(self.env(port), level="info")
        wait_until(lambda: "given inline" in d.logtext(), 5, "the wait")
        time.sleep(1.0)
        # nothing is sent with a key nobody supplied (nor with the old one)
        self.assertEqual((r.records(), r.auths()), ([], []))
        self.assertEqual(self.options(name)["fluentd-shared-key"], {"inline": True})
        # a container logs there again, with the rotated key: the spool goes first, with it
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(0xd0), config={
            "fluentd-shared-key": "new-inline"})), (200, {"Err": ""}))
        f.write(lines(b"n", 0, 10))
        got = r.wait_exact(310, timeout=30)
        self.assertEqual(logs(got), ["a%07d" % i for i in range(300)] +
                         ["n%07d" % i for i in range(10)])
        self.assertEqual({a["auth"] for a in r.auths()}, {"ok"})
        self.assertIn("its destination is back, with credentials: sending its", d.logtext())
        self.assertEqual(self.spool_dirs(), [name], "the same directory, adopted")
        d.api.stop(f.path)
        wait_until(lambda: self.spool_dirs() == [], 15, "the drained spool removed")

    def test_issue_13_old_options_json_with_a_key_is_scrubbed_and_waits(self):
        # An older version wrote the value: it is not used (it may be stale), it leaves
        # the disk at the next start, and the spool waits for a container's key
        port = fwdtest.free_port()
        self.spool_run(self.env(port), [{"fluentd-shared-key": "x"}], 100)
        (name,) = self.spool_dirs()
        path = self.state("spool", name, "options.json")
        old = self.options(name)
        old["fluentd-shared-key"] = "old-clear-key"
        with open(path, "w") as fh:
            json.dump(old, fh, sort_keys=True)
        r = self.receiver(port=port, shared_key="new-key")
        d = self.daemon(self.env(port), level="info")
        wait_until(lambda: "given inline" in d.logtext(), 5, "the wait")
        self.assertIn("its options.json (an older version's) held secret values: written "
                      "again without them", d.logtext())
        self.assertEqual(self.files_holding(["old-clear-key"]), [])
        time.sleep(1.0)
        self.assertEqual((r.records(), r.auths()), ([], []))
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd3), config={"fluentd-shared-key": "new-key"}))
        self.assertEqual(logs(r.wait_exact(100, timeout=30)), ["a%07d" % i for i in range(100)])
        self.assertEqual({a["auth"] for a in r.auths()}, {"ok"})

    def identity(self, port, bt=0):
        """The destination as config.c writes it (no TLS, no shared key): older versions
        named the spool directory by FNV-1a of it, this one by SHA-256."""
        return ("tcp://[127.0.0.1]:%d bl=67108864 rw=50/200 mr=2147483647 wt=30000 rt=0 ri=0 "
                "ack=0 gz=0 bal=0 bt=%d sl=268435456 of=0" % (port, bt))

    def test_issue_13_sha256_names_and_an_old_fnv_spool_is_sent_once(self):
        import hashlib
        port = fwdtest.free_port()
        self.spool_run(self.env(port), [{}], 200)
        (name,) = self.spool_dirs()
        self.assertEqual(name, hashlib.sha256(self.identity(port).encode()).hexdigest())
        # what an older version left: the same files, in a directory named its way
        old = fnv1a64(self.identity(port))
        os.rename(self.state("spool", name), self.state("spool", old))
        r = self.receiver(port=port)
        d = self.daemon(self.env(port), level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd1)))  # the same destination, while it replays
        f.write(lines(b"z", 0, 10))
        got = r.wait_exact(210, timeout=30)
        self.assertEqual(sorted(logs(got)), ["a%07d" % i for i in range(200)] +
                         ["z%07d" % i for i in range(10)])
        self.assertEqual(d.api.metrics()["fwdlog_replayed_records_total"], 200)
        d.api.stop(f.path)
        wait_until(lambda: self.spool_dirs() == [], 15, "the old directory, drained, removed")
        d.stop()
        self.procs.remove(d)
        d2 = self.daemon(self.env(port), level="info")
        time.sleep(1.0)
        self.assertEqual(len(r.records()), 210, "nothing sent twice")
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], 0)

    def test_issue_13_old_fnv_spool_beside_a_resumed_file_buffer(self):
        # buffer-type=file: the resumed stream's destination opens its SHA-256-named spool
        # at start; the older version's FNV-named one is still sent, by a destination that
        # drains it and goes
        port = fwdtest.free_port()
        env = self.env(port, FWDLOG_BUFFER_TYPE="file")
        d = self.daemon(env, level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd2)))
        f.write(lines(b"k", 0, 300))

        def sealed():
            m = d.api.metrics()
            return (m["fwdlog_records_total"] == 300 and
                    m["fwdlog_spool_bytes"] >= m["fwdlog_queued_bytes"] > 0)
        wait_until(sealed, 10, "all sealed into the spool")
        self.kill_daemon(d)
        (name,) = self.spool_dirs()
        old = fnv1a64(self.identity(port, bt=1))
        os.rename(self.state("spool", name), self.state("spool", old))
        r = self.receiver(port=port)
        d2 = self.daemon(env, level="info")
        f.write(lines(b"k", 300, 310))
        got = r.wait_exact(310, timeout=30)
        self.assertEqual(sorted(logs(got)), ["k%07d" % i for i in range(310)])
        self.assertIn("resumed 1 streams", d2.logtext())
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], 300)
        # the older one, drained, goes; the resumed stream's own stays while it runs
        wait_until(lambda: self.spool_dirs() == [name], 15, "the old directory removed")


class TestTLS(ProcTest):
    """tls:// against the receiver's TLS side, with certificates made at test time."""

    def setUp(self):
        super().setUp()
        self.pki = fwdtest.make_certs(self.tmp)

    def run_case(self, recv_kw, opts, n=300, host="127.0.0.1"):
        kw = {"tls_cert": self.pki["server.pem"], "tls_key": self.pki["server.key"]}
        kw.update(recv_kw)
        r = self.receiver(**kw)
        d = self.daemon({"FLUENTD_RETRY_WAIT": "100ms"})
        f = self.fifo()
        config = {"fluentd-address": "tls://%s:%d" % (host, r.port)}
        config.update(opts)
        st, body = d.api.start(f.path, info(cid(95), config=config))
        f.write(b"".join(frame(time_nano=i + 1, line=b"t%d" % i) for i in range(n)))
        return r, d, body

    def test_verified_by_ca_file_and_ip(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["ca.pem"]})
        self.assertEqual(body, {"Err": ""})
        self.assertEqual(logs(r.wait_exact(300)), ["t%d" % i for i in range(300)])
        self.assertIn("TLS", d.logtext())

    def test_server_name_and_everything_together(self):
        r, d, body = self.run_case({"shared_key": "k"}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"], "fluentd-tls-server-name": "localhost",
            "fluentd-shared-key": "k", "fluentd-request-ack": "true",
            "fluentd-compress": "gzip"})
        self.assertEqual(logs(r.wait_exact(300)), ["t%d" % i for i in range(300)])
        self.assertEqual({e["mode"] for e in r.records()}, {"CompressedPackedForward"})
        self.assertEqual(r.auths()[0]["auth"], "ok")

    def refused(self, r, d, log_part):
        wait_until(lambda: log_part in d.logtext(), 10, "the refusal in fwdlogd's log")
        wait_until(lambda: d.api.metrics()["fwdlog_connection_failures_total"] >= 3, 10,
                   "two retries")
        self.assertEqual(r.records(), [], "nothing may pass a failed TLS handshake")

    def test_untrusted_ca_is_refused(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["other-ca.pem"]})
        self.refused(r, d, "certificate verification failed")

    def test_wrong_server_name_is_refused(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["ca.pem"],
                                        "fluentd-tls-server-name": "fluentd.example"})
        self.refused(r, d, "certificate verification failed")

    def test_insecure_skip_verify_is_explicit(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["other-ca.pem"],
                                        "fluentd-tls-insecure-skip-verify": "true"})
        self.assertEqual(logs(r.wait_exact(300)), ["t%d" % i for i in range(300)])

    def test_client_certificate(self):
        r, d, body = self.run_case({"tls_client_ca": self.pki["ca.pem"]}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"],
            "fluentd-tls-cert-file": self.pki["client.pem"],
            "fluentd-tls-key-file": self.pki["client.key"]})
        self.assertEqual(logs(r.wait_exact(300)), ["t%d" % i for i in range(300)])

    def test_encrypted_client_key(self):
        # An encrypted key: without its passphrase a clear error naming the option (OpenSSL
        # loading the file itself gave "not the key of the certificate", or prompted on a
        # tty); with fluentd-tls-key-password-file it works.
        enc = os.path.join(self.tmp, "client-enc.key")
        subprocess.run(["openssl", "pkey", "-in", self.pki["client.key"], "-aes256",
                        "-passout", "pass:horse battery", "-out", enc], check=True)
        pw = os.path.join(self.tmp, "key.pass")
        with open(pw, "w") as f:
            f.write("horse battery\n")
        d = self.daemon()
        f = self.fifo()
        opts = {"fluentd-address": "tls://127.0.0.1:1", "fluentd-tls-ca-file": self.pki["ca.pem"],
                "fluentd-tls-cert-file": self.pki["client.pem"], "fluentd-tls-key-file": enc}
        st, body = d.api.start(f.path, info(cid(97), config=opts))
        self.assertIn('fluentd-tls-key-file="%s": the key is encrypted: give its passphrase '
                      'with fluentd-tls-key-password-file' % enc, body["Err"])
        bad = os.path.join(self.tmp, "bad.pass")
        with open(bad, "w") as f2:
            f2.write("wrong\n")
        st, body = d.api.start(f.path, info(cid(97), config=dict(
            opts, **{"fluentd-tls-key-password-file": bad})))
        self.assertIn("wrong passphrase", body["Err"])
        self.assertEqual(d.stop(), 0)  # one fwdlogd per state directory
        self.procs.remove(d)
        r, d2, body = self.run_case({"tls_client_ca": self.pki["ca.pem"]}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"],
            "fluentd-tls-cert-file": self.pki["client.pem"], "fluentd-tls-key-file": enc,
            "fluentd-tls-key-password-file": pw})
        self.assertEqual(logs(r.wait_exact(300)), ["t%d" % i for i in range(300)])

    def test_client_certificate_missing(self):
        r, d, body = self.run_case({"tls_client_ca": self.pki["ca.pem"]}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"]})
        # TLS 1.3: the client finishes first and learns of the refusal from the alert
        wait_until(lambda: any("tls failed" in a["auth"] for a in r.auths()), 10,
                   "the refused TLS handshake")
        wait_until(lambda: d.api.metrics()["fwdlog_connection_failures_total"] >= 1, 10,
                   "fwdlogd seeing the refusal")
        self.assertEqual(r.records(), [])

    def test_short_writes_under_tls(self):
        # A receiver that reads nothing for 5 s, with a 64 KiB receive buffer, behind ~9 MB
        # of queued records: SSL_write must come back short or blocked (the socket buffers
        # hold a fraction of it), which is checked below; the retries must resume exactly
        # where they stopped ("bad write retry" otherwise).
        r = self.receiver(tls_cert=self.pki["server.pem"], tls_key=self.pki["server.key"],
                          stall=5, rcvbuf=65536)
        d = self.daemon({"FLUENTD_RETRY_WAIT": "100ms"})
        f = self.fifo()
        st, body = d.api.start(f.path, info(cid(96), config={
            "fluentd-address": "tls://127.0.0.1:%d" % r.port,
            "fluentd-tls-ca-file": self.pki["ca.pem"], "batch-size": "4k",
            "fluentd-buffer-limit": "256m"}))
        self.assertEqual(body, {"Err": ""})
        n = 50000
        for j in range(0, n, 10000):
            f.write(b"".join(frame(time_nano=i + 1, line=b"%06d" % i + b"z" * 150)
                             for i in range(j, j + 10000)))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n, 20, "all read")
        m1 = d.api.metrics()
        time.sleep(0.5)  # a sample interval, not a wait for something
        m2 = d.api.metrics()
        self.assertEqual(r.records(), [], "the receiver's stall ended too early to tell")
        self.assertGreater(m1["fwdlog_bytes_sent_total"], 0, "TLS never wrote")
        self.assertEqual(m1["fwdlog_bytes_sent_total"], m2["fwdlog_bytes_sent_total"],
                         "writes kept going: the socket never filled")
        self.assertGreater(m2["fwdlog_queued_bytes"], 0, "nothing was held back by a full socket")
        evs = r.wait_exact(n, timeout=60)
        self.assertEqual([e["record"]["log"][:6] for e in evs], ["%06d" % i for i in range(n)])
        self.assertNotIn("retrying", d.logtext())

    def test_key_not_matching_certificate_is_a_start_error(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["ca.pem"],
                                        "fluentd-tls-cert-file": self.pki["client.pem"],
                                        "fluentd-tls-key-file": self.pki["server.key"]}, n=0)
        self.assertIn("fluentd-tls-key-file", body["Err"])


class TestNames(ProcTest):
    """Aggregators given by name, as users write them (the default is localhost:24224)."""

    def exact(self, r, want, timeout=20, quiet=1.0):
        got = r.wait(len(want), timeout=timeout)
        time.sleep(quiet)  # then nothing more may come
        self.assertEqual([e["record"]["log"] for e in r.records()], want)
        self.assertEqual(r.errors(), [])
        return got

    def test_localhost_by_name(self):
        r = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "localhost:%d" % r.port})
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(60))), (200, {"Err": ""}))
        f.write(b"".join(frame(time_nano=i + 1, line=b"n%d" % i) for i in range(100)))
        self.exact(r, ["n%d" % i for i in range(100)])
        self.assertIsNone(d.proc.poll(), "fwdlogd must survive a name lookup")

    def test_name_with_two_addresses_first_refuses(self):
        # 127.0.0.2 is loopback too, but nothing listens there: the connect is refused and
        # the next address of the name is tried, in the order /etc/hosts gives them.
        hosts = os.path.join(self.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n127.0.0.2 agg.fwdlog.test\n"
                    "127.0.0.1 agg.fwdlog.test\n")
        r = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "agg.fwdlog.test:%d" % r.port},
                        wrap=fwdtest.hosts_file(hosts))
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(61))), (200, {"Err": ""}))
        f.write(b"".join(frame(time_nano=i + 1, line=b"m%d" % i) for i in range(50)))
        self.exact(r, ["m%d" % i for i in range(50)])
        self.assertNotIn("retrying", d.logtext(), "the second address is tried at once")

    def test_unknown_name_retries_without_blocking(self):
        hosts = os.path.join(self.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n")
        # resolv.conf stays the machine's: an unknown .invalid name fails (RFC 6761)
        d = self.daemon({"FLUENTD_ADDRESS": "nowhere.invalid:24224",
                         "FLUENTD_RETRY_WAIT": "100ms"}, wrap=fwdtest.hosts_file(hosts))
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(62))), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"x"))
        deadline = time.time() + 20
        while "cannot resolve nowhere.invalid" not in d.logtext() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("cannot resolve nowhere.invalid", d.logtext())
        # the loop still answers while lookups fail
        t0 = time.time()
        self.assertEqual(d.api.call("/LogDriver.Capabilities")[0], 200)
        self.assertLess(time.time() - t0, 1.0)


class TestGracefulClose(ProcTest):
    """A short-lived container's records all arrive, though the aggregator reads slowly
    and (TLS 1.3) sent session tickets we never asked for: the connection is closed
    with close_notify and FIN after the peer's data was read, never with RST."""

    def setUp(self):
        super().setUp()
        self.pki = fwdtest.make_certs(self.tmp)

    def short_lived(self, tls=False, key=None, ack=False, sigterm=False, n=1000):
        kw = {"stall": 1.0}
        config = {}
        if tls:
            kw.update(tls_cert=self.pki["server.pem"], tls_key=self.pki["server.key"])
            config["fluentd-tls-ca-file"] = self.pki["ca.pem"]
        if key:
            kw["shared_key"] = key
            config["fluentd-shared-key"] = key
        if ack:
            config["fluentd-request-ack"] = "true"
        r = self.receiver(**kw)
        config["fluentd-address"] = "%s127.0.0.1:%d" % ("tls://" if tls else "", r.port)
        d = self.daemon()
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(70), config=config)), (200, {"Err": ""}))
        f.write(b"".join(frame(time_nano=i + 1, line=b"q%d" % i) for i in range(n)))
        self.assertEqual(d.api.stop(f.path), (200, {"Err": ""}))
        if sigterm:
            self.assertEqual(d.stop(), 0)
        r.wait(n, timeout=20)
        time.sleep(1.0)
        self.assertEqual([e["record"]["log"] for e in r.records()], ["q%d" % i for i in range(n)])
        self.assertEqual(r.errors(), [])
        return r, d

    def test_plain(self):
        self.short_lived()

    def test_plain_acks(self):
        self.short_lived(ack=True)

    def test_tls(self):
        self.short_lived(tls=True)

    def test_tls_acks(self):
        self.short_lived(tls=True, ack=True)

    def test_tls_shared_key(self):
        self.short_lived(tls=True, key="k")

    def test_tls_shared_key_acks(self):
        self.short_lived(tls=True, key="k", ack=True)

    def test_tls_sigterm_right_after_stop(self):
        # the destination cannot linger: shutdown hands the connection to the closer
        self.short_lived(tls=True, sigterm=True)

    def test_restarted_container_reuses_the_connection(self):
        r = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port})
        for run in range(2):
            f = self.fifo()
            self.assertEqual(d.api.start(f.path, info(cid(71))), (200, {"Err": ""}))
            f.write(frame(time_nano=1, line=b"run%d" % run))
            self.assertEqual(d.api.stop(f.path), (200, {"Err": ""}))
            r.wait(run + 1)
        evs = r.records()
        self.assertEqual([e["record"]["log"] for e in evs], ["run0", "run1"])
        self.assertEqual(evs[0]["conn"], evs[1]["conn"], "one connection, kept across")
        # and once the linger (5 s) passed, the idle destination is gone
        deadline = time.time() + 10
        while d.api.metrics()["fwdlog_destinations"] != 0 and time.time() < deadline:
            time.sleep(0.2)
        self.assertEqual(d.api.metrics()["fwdlog_destinations"], 0)


class TestShutdownAndTransports(ProcTest):
    def test_sigterm_flushes(self):
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port,
                         "FWDLOG_FLUSH_INTERVAL": "10s"})
        f = self.fifo()
        d.api.start(f.path, info(cid(50)))
        f.write(b"".join(frame(time_nano=i + 1, line=b"s%d" % i) for i in range(300)))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 300, 10, "300 read")
        self.assertEqual(recv.records(), [], "sent before the 10 s flush interval")
        self.assertEqual(d.stop(), 0)
        self.assertEqual(logs(recv.wait_exact(300, timeout=5)), ["s%d" % i for i in range(300)])

    def test_unix_socket_aggregator_and_plugin_wide_tag(self):
        path = os.path.join(self.tmp, "fluent.sock")
        recv = self.receiver(unix=path)
        d = self.daemon({"FLUENTD_ADDRESS": "unix://" + path, "FWDLOG_TAG": "docker.{{.Name}}"})
        f = self.fifo()
        d.api.start(f.path, info(cid(51), name="/svc"))
        f.write(frame(time_nano=1, line=b"via unix"))
        ev = recv.wait_exact(1)[0]
        self.assertEqual((ev["tag"], ev["record"]["log"]), ("docker.svc", "via unix"))

    def test_bad_plugin_wide_default_fails_start(self):
        with self.assertRaises(RuntimeError) as cm:
            self.daemon({"FLUENTD_RETRY_WAIT": "soon"})
        self.assertIn("FLUENTD_RETRY_WAIT", str(cm.exception))


class TestStrictReceiver(ProcTest):
    """The receiver's strict rules and scripted misbehaviour (tests/forward_receiver.py):
    first that it refuses what it must, then fwdlogd against each switch."""

    def raw(self, r, payload):
        """Send payload on a fresh connection; True if the receiver closed it."""
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        try:
            s.sendall(payload)
            return s.recv(100) == b""
        except ConnectionError:
            return True
        finally:
            s.close()

    def test_receiver_refuses_and_closes(self):
        import msgpack
        r = self.receiver(expect_errors="this test sends what the receiver must refuse",
                          max_message_size=100000)
        et = msgpack.ExtType(0, struct.pack(">II", 1, 5))
        entry = msgpack.packb([et, {"log": "x"}])
        ok = msgpack.packb(["t", entry, {"size": 1}], use_bin_type=True)
        bad = {
            "str entries": msgpack.packb(["t", entry.decode("latin-1"), {"size": 1}],
                                         use_bin_type=False),
            "missing size": msgpack.packb(["t", entry, {}], use_bin_type=True),
            "no option": msgpack.packb(["t", entry], use_bin_type=True),
            "wrong size": msgpack.packb(["t", entry, {"size": 2}], use_bin_type=True),
            "nanoseconds": msgpack.packb(["t", msgpack.packb(
                [msgpack.ExtType(0, struct.pack(">II", 1, 10 ** 9)), {"log": "x"}]),
                {"size": 1}], use_bin_type=True),
            "nil heartbeat": msgpack.packb(None),
            "chunk not str": msgpack.packb(["t", entry, {"size": 1, "chunk": b"x"}],
                                           use_bin_type=True),
            "over the size limit": msgpack.packb(["t", b"\x00" * 200000, {"size": 1}],
                                                 use_bin_type=True),
        }
        for what, payload in bad.items():
            self.assertTrue(self.raw(r, payload), "%s: connection left open" % what)
        self.assertEqual(len(r.errors()), len(bad), r.errors())
        self.assertEqual(r.records(), [])
        # and what is right is taken, on a connection that stays open
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(ok + msgpack.packb(["t", 1, {"log": "m"}]))
        self.assertEqual(logs(r.wait_exact(2)), ["x", "m"])

    def strict_case(self, recv_kw, config=None, n=20000, env=None, tls=False):
        """A receiver with recv_kw, one daemon, one container writing n lines."""
        if tls:
            self.pki = fwdtest.make_certs(self.tmp)
            recv_kw = dict(recv_kw, tls_cert=self.pki["server.pem"],
                           tls_key=self.pki["server.key"])
        r = self.receiver(**recv_kw)
        e = {"FLUENTD_RETRY_WAIT": "50ms", "FWDLOG_MAX_RETRY_WAIT": "300ms"}
        e.update(env or {})
        d = self.daemon(e, level="debug")
        f = self.fifo()
        cfg = {"fluentd-address": "%s127.0.0.1:%d" % ("tls://" if tls else "", r.port)}
        if tls:
            cfg["fluentd-tls-ca-file"] = self.pki["ca.pem"]
        cfg.update(config or {})
        st, body = d.api.start(f.path, info(cid(0xc0), config=cfg))
        self.assertEqual(body, {"Err": ""})
        if n:
            f.write(lines(b"s", 0, n))
        return r, d, f

    def want(self, n, prefix="s"):
        return ["%s%07d" % (prefix, i) for i in range(n)]

    def test_slow_tls13_reader_sigterm_at_once(self):
        # A TLS 1.3 receiver (OpenSSL sends 2 session tickets after the handshake) reading
        # at 100 kB/s; SIGTERM as soon as the 5000 lines were read. Closing with the tickets
        # unread made the kernel send RST, and the receiver's kernel dropped what it had not
        # read yet (711 of 5000 arrived). The closer reads them first, then closes.
        r, d, f = self.strict_case({"throttle": 100000}, {"batch-size": "32k"}, n=5000, tls=True)
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 5000, 10, "read")
        self.assertEqual(d.stop(timeout=20), 0)
        self.assertEqual(logs(r.wait_exact(5000, timeout=60)), self.want(5000))

    def test_throttled_reader_with_stalls(self):
        r, d, f = self.strict_case({"throttle": 2000000, "stall_every": 300000,
                                    "stall_for": 1.0}, {"batch-size": "32k"})
        self.assertEqual(logs(r.wait_exact(20000, timeout=60)), self.want(20000))

    def test_close_after_each_request_with_acks(self):
        r, d, f = self.strict_case({"close_after_requests": 1}, {
            "fluentd-request-ack": "true", "batch-size": "16k"}, n=5000)
        self.assert_at_least_once([r], set(self.want(5000)))
        self.assertGreater(len({e["conn"] for e in r.records()}), 3)

    def test_idle_close_then_more_lines(self):
        # The receiver closes a connection idle for 1 s. fwdlogd must see the close before
        # it writes again: without acks, a batch written into a closed connection is lost.
        r, d, f = self.strict_case({"idle_close": 1.0}, n=100)
        self.assertEqual(logs(r.wait_exact(100)), self.want(100))
        wait_until(lambda: "closed by aggregator" in d.logtext(), 10, "the idle close seen")
        f.write(lines(b"s", 100, 200))
        self.assertEqual(logs(r.wait_exact(200)), self.want(200))

    def test_reply_that_is_not_an_ack(self):
        r, d, f = self.strict_case({"bad_replies": 1}, {"fluentd-request-ack": "true",
                                                         "batch-size": "16k"}, n=3000)
        wait_until(lambda: set(self.want(3000)) <= set(logs(r.records())), 20, "every line")
        self.assertGreater(self.assert_at_least_once([r], set(self.want(3000))), 0)
        self.assertIn("not an ack", d.logtext())

    def test_tls12_only(self):
        r, d, f = self.strict_case({"tls_max": "1.2"}, n=3000, tls=True)
        self.assertEqual(logs(r.wait_exact(3000)), self.want(3000))
        self.assertIn("TLS TLSv1.2 established", d.logtext())

    def test_tls_idle_close_with_close_notify(self):
        r, d, f = self.strict_case({"idle_close": 1.0, "tls_close_notify": True}, n=100,
                                   tls=True)
        self.assertEqual(logs(r.wait_exact(100)), self.want(100))
        wait_until(lambda: "closed by aggregator" in d.logtext(), 10, "the idle close seen")
        f.write(lines(b"s", 100, 200))
        self.assertEqual(logs(r.wait_exact(200)), self.want(200))

    def test_message_size_limit_holds(self):
        # every batch (batch-size 64k) fits a 100 kB limit; one over it would close the
        # connection and show as a receiver error
        r, d, f = self.strict_case({"max_message_size": 100000}, {"batch-size": "64k"})
        self.assertEqual(logs(r.wait_exact(20000)), self.want(20000))

    def test_slow_tls13_reader_through_sigterm(self):
        # OpenSSL's TLS 1.3 server sends session tickets after the handshake, and this
        # receiver reads slowly: SIGTERM once everything is written, then every line must
        # still arrive.
        r, d, f = self.strict_case({"throttle": 300000}, {"batch-size": "32k"}, n=20000,
                                   tls=True)
        wait_until(lambda: d.api.metrics()["fwdlog_records_sent_total"] == 20000, 30,
                   "every record written to the socket")
        self.assertEqual(d.stop(timeout=20), 0)
        self.assertEqual(logs(r.wait_exact(20000, timeout=60)), self.want(20000))

    def test_refused_batch_is_set_aside_and_the_queue_moves_on(self):
        # Fluent Bit closes the connection on a request over its buffer limit. With acks,
        # such a batch was sent again forever, ahead of every other line of its destination
        # (issue 13: poison batches). After FWD_MAX_SEND_ATTEMPTS (5) failed sends it is set aside in
        # state/rejected/, counted against its container, and the lines after it arrive.
        r, d, f = self.strict_case({"max_message_size": 100000,
                                    "expect_errors": "the big batch is refused each time"},
                                   {"batch-size": "64k", "max-line-size": "1m",
                                    "fluentd-request-ack": "true"}, n=0)
        f.write(frame(time_nano=1, line=b"B" * 150000))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 1, 10, "the big line")
        f.write(lines(b"s", 0, 100))
        self.assertEqual(logs(r.wait_exact(100, timeout=30)), self.want(100))
        m = d.api.metrics()
        self.assertEqual((m["fwdlog_records_rejected_total"], m["fwdlog_batches_rejected_total"],
                          m["fwdlog_records_dropped_total"]), (1, 1, 0))
        per = {k.split('reason="')[1][:-2]: v for k, v in m.items()
               if k.startswith("fwdlog_container_records_dropped_total{")}
        self.assertEqual(per, {"overflow": 0, "rejected": 1, "out_of_memory": 0, "rate_limit": 0})
        errs = r.errors()
        self.assertEqual(len(errs), 5, errs)
        self.assertTrue(all("exceed limit" in e["error"] for e in errs), errs)
        rej = os.path.join(self.tmp, "state", "rejected")
        segs = [s for dd in os.listdir(rej) for s in os.listdir(os.path.join(rej, dd))]
        self.assertEqual(len(segs), 1, segs)
        self.assertIn("failed 5 sends in a row", d.logtext())

    def test_slow_reader_sigterm_at_once(self):
        # SIGTERM right after the lines were read: the shutdown connects, writes everything
        # and closes while the receiver has most of it still unread; an orderly close keeps it.
        r, d, f = self.strict_case({"throttle": 100000}, {"batch-size": "32k"}, n=5000)
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 5000, 10, "all read")
        self.assertEqual(d.stop(timeout=20), 0)
        self.assertEqual(logs(r.wait_exact(5000, timeout=60)), self.want(5000))


class TestPromises(ProcTest):
    """README promises, each with a test that fails when the promise breaks."""

    def tls_case(self, cert, address, opts, n=300):
        r = self.receiver(tls_cert=self.pki[cert + ".pem"], tls_key=self.pki[cert + ".key"])
        d = self.daemon({"FLUENTD_RETRY_WAIT": "100ms"})
        f = self.fifo()
        cfg = {"fluentd-address": "tls://%s:%d" % (address, r.port)}
        cfg.update(opts)
        st, body = d.api.start(f.path, info(cid(0xd0), config=cfg))
        self.assertEqual(body, {"Err": ""})
        f.write(b"".join(frame(time_nano=i + 1, line=b"v%d" % i) for i in range(n)))
        return r, d

    def assert_tls_refused(self, r, d):
        wait_until(lambda: "certificate verification failed" in d.logtext(), 10,
                   "the verification failure")
        wait_until(lambda: d.api.metrics()["fwdlog_connection_failures_total"] >= 3, 10,
                   "two retries")
        self.assertEqual(r.records(), [], "nothing may pass a refused certificate")

    def test_tls_verification_is_on_by_default(self):
        self.pki = fwdtest.make_certs(self.tmp)
        # no fluentd-tls-ca-file: the system store, which does not know the test CA
        r, d = self.tls_case("server", "127.0.0.1", {})
        self.assert_tls_refused(r, d)

    def test_tls_ip_not_in_the_certificate_is_refused(self):
        self.pki = fwdtest.make_certs(self.tmp)
        r, d = self.tls_case("name-only", "127.0.0.1", {"fluentd-tls-ca-file": self.pki["ca.pem"]})
        self.assert_tls_refused(r, d)

    def test_tls_localhost_checks_the_name(self):
        self.pki = fwdtest.make_certs(self.tmp)
        # a certificate for 127.0.0.1 but not for the name "localhost" we asked for
        r, d = self.tls_case("other-name", "localhost", {"fluentd-tls-ca-file": self.pki["ca.pem"]})
        self.assert_tls_refused(r, d)

    def test_tls_localhost_with_its_name_is_accepted(self):
        self.pki = fwdtest.make_certs(self.tmp)
        r, d = self.tls_case("name-only", "localhost", {"fluentd-tls-ca-file": self.pki["ca.pem"]})
        self.assertEqual(logs(r.wait_exact(300)), ["v%d" % i for i in range(300)])

    def test_tls_below_1_2_is_refused(self):
        self.pki = fwdtest.make_certs(self.tmp)
        r = self.receiver(tls_cert=self.pki["server.pem"], tls_key=self.pki["server.key"],
                          tls_max="1.1")
        # the receiver really speaks TLS 1.1 (so a refusal is fwdlogd's doing)
        ctl = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % r.port,
                              "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], input=b"",
                             capture_output=True, timeout=20)
        self.assertIn(b"TLSv1.1", ctl.stdout, "the receiver does not speak TLS 1.1")
        d = self.daemon({"FLUENTD_RETRY_WAIT": "100ms"})
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd1), config={
            "fluentd-address": "tls://127.0.0.1:%d" % r.port,
            "fluentd-tls-ca-file": self.pki["ca.pem"]}))
        f.write(frame(time_nano=1, line=b"x"))
        wait_until(lambda: d.api.metrics()["fwdlog_connection_failures_total"] >= 3, 10,
                   "three refused handshakes")
        self.assertIn("TLS handshake failed", d.logtext())
        self.assertEqual(r.records(), [])

    def test_sigterm_gives_up_after_8s_on_a_stalled_receiver(self):
        # The receiver accepts and never reads; its small buffer fills at once. SIGTERM:
        # fwdlogd keeps trying for 8 s (FWD_SHUTDOWN_FLUSH_MS), spools the rest, exits 0,
        # inside dockerd's 10 s.
        r = self.receiver(stall=120, rcvbuf=65536)
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port,
                         "FLUENTD_BUFFER_LIMIT": "256m"}, level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd2)))
        n = 50000
        for j in range(0, n, 10000):
            f.write(lines(b"x", j, j + 10000, pad=100))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n, 20, "all read")
        wait_until(lambda: d.api.metrics()["fwdlog_queued_bytes"] > 1024 * 1024, 10,
                   "a backlog behind the stalled receiver")
        t0 = time.time()
        self.assertEqual(d.stop(timeout=30), 0)
        took = time.time() - t0
        self.procs.remove(d)
        self.assertGreater(took, 7.5, "gave up before 8 s")
        self.assertLess(took, 10.0, "past dockerd's 10 s")
        self.assertIn("kept in the spool", d.logtext())

    def test_at_most_32_batches_unacknowledged(self):
        # A receiver that never acks and an ack timeout far away: fwdlogd sends 32 batches
        # and then waits; the 33rd would break the window.
        r = self.receiver(drop_acks=10 ** 9)
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port,
                         "FLUENTD_REQUEST_ACK": "true", "FLUENTD_READ_TIMEOUT": "60s",
                         "FWDLOG_BATCH_SIZE": "4k"}, level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd3)))
        f.write(lines(b"w", 0, 10000))  # ~450 batches of 4 KiB
        wait_until(lambda: len({e["req"] for e in r.records()}) >= 32, 20, "32 batches")
        r.settle(quiet=2)
        self.assertEqual(len({e["req"] for e in r.records()}), 32)

    def test_equal_options_share_one_connection_different_ones_split(self):
        r = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port})
        fs = [self.fifo() for _ in range(3)]
        for i, f in enumerate(fs[:2]):
            self.assertEqual(d.api.start(f.path, info(cid(0xe0 + i), name="/same%d" % i)),
                             (200, {"Err": ""}))
        for i, f in enumerate(fs[:2]):
            f.write(lines(b"e%d" % i, 0, 500))
        evs = r.wait_exact(1000)
        self.assertEqual({e["conn"] for e in evs}, {1}, "one connection for equal options")
        self.assertEqual(d.api.metrics()["fwdlog_destinations"], 1)
        self.assertEqual(d.api.start(fs[2].path, info(cid(0xe2), name="/gz", config={
            "fluentd-compress": "gzip"})), (200, {"Err": ""}))
        fs[2].write(lines(b"g", 0, 500))
        gz = r.wait_exact(500, pred=lambda e: e["record"]["container_name"] == "/gz")
        self.assertEqual({e["mode"] for e in gz}, {"CompressedPackedForward"})
        self.assertEqual({e["conn"] for e in gz}, {2}, "other options, another connection")
        self.assertEqual(d.api.metrics()["fwdlog_destinations"], 2)
        self.assertEqual(len(r.records()), 1500)

    def test_file_buffer_sigkill_while_sending_with_acks(self):
        # buffer-type=file with acks, killed while batches are in flight (slow acks): the next
        # fwdlogd replays the spool and every line arrives (some twice: at-least-once).
        r = self.receiver(ack_delay=0.02)
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port, "FWDLOG_BUFFER_TYPE": "file",
               "FLUENTD_REQUEST_ACK": "true", "FLUENTD_RETRY_WAIT": "50ms",
               "FWDLOG_BATCH_SIZE": "4k"}
        d = self.daemon(env, level="info")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd4)))
        n = 20000
        f.write(lines(b"k", 0, n))
        wait_until(lambda: len(r.records()) >= 2000, 20, "sending under way")
        self.kill_daemon(d)
        self.assertLess(len(r.records()), n, "everything was sent before the kill")
        d2 = self.daemon(env, level="info")
        wait_until(lambda: {"k%07d" % i for i in range(n)} <= set(logs(r.records())), 60,
                   "every line after the restart")
        self.assert_at_least_once([r], {"k%07d" % i for i in range(n)})
        self.assertIn("left in the spool by an earlier run", d2.logtext())

    def test_start_logging_does_not_wait_for_a_silent_peer(self):
        # A peer that accepts and then never reads or answers: neither a TLS handshake nor a
        # HELO ever completes. StartLogging must answer at once all the same.
        r = self.receiver(stall=60)
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port})
        tls = {"fluentd-address": "tls://127.0.0.1:%d" % r.port,
               "fluentd-tls-insecure-skip-verify": "true"}
        for i, cfg in enumerate(({}, {"fluentd-shared-key": "k"}, tls)):
            f = self.fifo()
            t0 = time.time()
            self.assertEqual(d.api.start(f.path, info(cid(0xd6 + i), config=cfg)),
                             (200, {"Err": ""}))
            self.assertLess(time.time() - t0, 1.0, "StartLogging waited for the network")
            f.write(frame(time_nano=1, line=b"x"))
        wait_until(lambda: d.api.metrics()["fwdlog_connects_total"] >= 1, 10, "a connect")
        self.assertEqual(r.records(), [])

    def test_max_retries_drops_the_queue_then_new_lines_flow(self):
        # fluentd-max-retries=2 with the aggregator down: after the third failure the queued
        # records are dropped (counted and logged); once it is up, new lines go through and
        # the dropped ones never come back.
        port = fwdtest.free_port()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
                         "FWDLOG_MAX_RETRY_WAIT": "100ms", "FLUENTD_MAX_RETRIES": "2",
                         "FWDLOG_SPOOL_LIMIT": "0"})
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd7)))
        f.write(lines(b"o", 0, 100))
        wait_until(lambda: d.api.metrics()["fwdlog_records_dropped_total"] == 100, 10,
                   "the queue dropped")
        self.assertIn("dropped 100 queued records: fluentd-max-retries reached", d.logtext())
        self.assertGreaterEqual(d.api.metrics()["fwdlog_connection_failures_total"], 3)
        r = self.receiver(port=port)
        f.write(lines(b"n", 0, 100))
        self.assertEqual(logs(r.wait_exact(100)), ["n%07d" % i for i in range(100)])
        self.assertEqual(d.api.metrics()["fwdlog_records_dropped_total"], 100)

    def test_helo_keepalive_false_with_acks(self):
        # Fluentd's deny_keepalive: HELO says keepalive=false and the server closes after the
        # first request. fwdlogd must handshake again on each new connection; with acks it
        # loses nothing.
        r = self.receiver(shared_key="k", no_keepalive=True)
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % r.port, "FLUENTD_SHARED_KEY": "k",
                         "FLUENTD_REQUEST_ACK": "true", "FLUENTD_RETRY_WAIT": "50ms",
                         "FWDLOG_BATCH_SIZE": "16k"})
        f = self.fifo()
        d.api.start(f.path, info(cid(0xd5)))
        f.write(lines(b"h", 0, 3000))
        want = {"h%07d" % i for i in range(3000)}
        wait_until(lambda: want <= set(logs(r.records())), 30, "every line")
        self.assert_at_least_once([r], want)
        self.assertGreater(len([a for a in r.auths() if a["auth"] == "ok"]), 3,
                           "a handshake on each new connection")


JAVA_TRACE = [
    "2026-11-24 10:00:00 ERROR request failed",
    "java.lang.IllegalStateException: boom",
    "\tat com.example.Service.handle(Service.java:42)",
    "\tat com.example.Main.main(Main.java:7)",
    "Caused by: java.io.IOException: disk full",
    "\tat com.example.Disk.write(Disk.java:9)",
    "\t... 2 more",
]


SHIM = os.environ.get("FAULTSHIM") or os.path.join(
    os.path.dirname(os.environ.get("FWDLOGD", os.path.join(fwdtest.HERE, "..", "build",
                                                           "fwdlogd"))), "tests", "faultshim.so")


def shim_env(**faults):
    """The environment that runs fwdlogd under tests/faultshim.c (see its header for the
    FAULTSHIM_* switches, given here as keywords: path=..., ops=..., errno=...)."""
    if not os.path.exists(SHIM):
        raise AssertionError("%s is missing: make %s" % (SHIM, os.path.relpath(SHIM)))
    env = {"LD_PRELOAD": SHIM,
           # the shim comes before libasan under SAN=address
           "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")}
    env.update({"FAULTSHIM_" + k.upper(): str(v) for k, v in faults.items()})
    return env


class TestHardening(ProcTest):
    """Issue 13 item 10: the state directory is private and locked; StartLogging's File
    stays in the FIFO directory; an empty StartLogging body says so."""

    def test_state_dir_is_made_private(self):
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        os.chmod(state, 0o755)
        d = self.daemon()
        self.assertEqual(os.stat(state).st_mode & 0o7777, 0o700)
        with open(os.path.join(state, "fwdlogd.lock")) as f:
            self.assertEqual(f.read().strip(), str(d.proc.pid))

    def test_new_state_dir_is_0700(self):
        self.daemon()
        self.assertEqual(os.stat(os.path.join(self.tmp, "state")).st_mode & 0o7777, 0o700)

    def test_state_dir_others_can_write_is_refused(self):
        for mode, who in ((0o777, "others"), (0o770, "its group")):
            state = os.path.join(self.tmp, "state")
            os.makedirs(state, exist_ok=True)
            os.chmod(state, mode)
            with self.assertRaises(RuntimeError) as cm:
                self.daemon()  # exits at once (never added to self.procs)
            msg = str(cm.exception)
            self.assertIn("state directory %s is writable by %s (mode %04o)" % (state, who, mode),
                          msg)
            self.assertIn("chmod 0700 " + state, msg)
            self.assertEqual(os.stat(state).st_mode & 0o7777, mode, "left as it was")

    def test_second_daemon_on_the_same_state_dir_exits(self):
        d = self.daemon()
        state = os.path.join(self.tmp, "state")
        fwdlogd = os.environ.get("FWDLOGD", os.path.join(fwdtest.HERE, "..", "build", "fwdlogd"))
        p = subprocess.run([fwdlogd, "--socket",
                            os.path.join(self.tmp, "second.sock"), "--state-dir", state],
                           capture_output=True, text=True, timeout=10,
                           env={"FWDLOG_FIFO_DIR": self.tmp, "PATH": os.environ["PATH"]})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("state directory %s is in use by another fwdlogd (pid %d, holding "
                      "%s/fwdlogd.lock)" % (state, d.proc.pid, state), p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "second.sock")))
        # the first one is untouched
        self.assertEqual(d.api.call("/Plugin.Activate")[0], 200)

    # issue 13 item 11: a peer that vanished (a host gone, a NAT entry expired) is found by
    # TCP keepalive after FWD_TCP_KEEPIDLE_S (60 s) idle, not after the kernel's 2 hours.
    def test_aggregator_sockets_have_tcp_keepalive(self):
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port})
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(0x9f))), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"connected"))
        self.assertEqual(logs(recv.wait_exact(1)), ["connected"])
        out = subprocess.run(["ss", "-tnoH", "state", "established", "dport", "=",
                              ":%d" % recv.port], capture_output=True, text=True, check=True)
        conns = out.stdout.strip().splitlines()
        self.assertEqual(len(conns), 1, out.stdout)
        # e.g. "... timer:(keepalive,59sec,0)": armed, at most 60 s away
        m = re.search(r"timer:\(keepalive,(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)ms)?,0\)", conns[0])
        self.assertIsNotNone(m, conns[0])
        mins, secs, ms = (int(g or 0) for g in m.groups())
        self.assertLessEqual(mins * 60 + secs + ms / 1000, 60, conns[0])

    def test_fifo_outside_the_fifo_dir_is_refused(self):
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port})
        other = fwdtest.tmpdir()
        self.addCleanup(shutil.rmtree, other, ignore_errors=True)
        out = Fifo(other)
        self.addCleanup(out.close)
        os.mkdir(os.path.join(self.tmp, "sub"))
        deeper = Fifo(os.path.join(self.tmp, "sub"))
        self.addCleanup(deeper.close)
        link = os.path.join(self.tmp, "b" * 64)
        os.symlink(out.path, link)
        dotdot = os.path.join(self.tmp, "..", os.path.basename(other),
                              os.path.basename(out.path))
        for n, (path, want) in enumerate([
                (dotdot, "is not in %s, the directory dockerd makes the plugin's FIFOs in "
                 "(it resolves to %s); if dockerd uses another, set FWDLOG_FIFO_DIR"
                 % (self.tmp, out.path)),
                (link, "(it resolves to %s)" % out.path),
                (deeper.path, "(it resolves to %s)" % deeper.path),
                (os.path.basename(out.path), "is not absolute")]):
            st, body = d.api.start(path, info(cid(0x90 + n)))
            self.assertEqual(st, 200)
            self.assertTrue(body["Err"].startswith("fwdlog: "), body)
            self.assertIn(want, body["Err"])
        self.assertEqual(d.api.metrics()["fwdlog_containers"], 0)
        # inside, through a symlink that stays inside: accepted, and read
        f = self.fifo()
        inside = os.path.join(self.tmp, "c" * 64)
        os.symlink(f.path, inside)
        self.assertEqual(d.api.start(inside, info(cid(0x9f))), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"inside"))
        self.assertEqual(logs(recv.wait_exact(1)), ["inside"])
        self.assertEqual(d.api.stop(inside), (200, {"Err": ""}))

    def test_empty_start_logging_body_says_so(self):
        d = self.daemon()
        st, body = d.api.call("/LogDriver.StartLogging", raw=b"")
        self.assertEqual(st, 400)
        self.assertIn("empty request body", body["Err"])
        self.assertNotIn("wrong arguments", body["Err"])
        # an empty StopLogging is dockerd's retry: still a success
        self.assertEqual(d.api.call("/LogDriver.StopLogging", raw=b""), (200, {"Err": ""}))


class TestShutdownBound(ProcTest):
    def test_sigterm_with_writers_that_never_stop(self):
        # Issue 13 item 4: the SIGTERM path drained FIFOs until they were empty, so a
        # container that keeps writing held fwdlogd past dockerd's SIGKILL at 10 s.
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port,
                         "FLUENTD_BUFFER_LIMIT": "1m", "FWDLOG_SPOOL_LIMIT": "0"},
                        level="info")
        f = self.fifo()
        # parsed JSON: each line costs fwdlogd more than the writer, which stays ahead
        self.assertEqual(d.api.start(f.path, info(cid(0xb1), config={"parse": "json"})),
                         (200, {"Err": ""}))
        # Two writers, each writing whole frames in writes of at most PIPE_BUF bytes (atomic:
        # frames never interleave), at a raised priority when the test may: while one waits
        # for the CPU the other keeps the pipe full, so the FIFO is never found empty.
        chunk = os.path.join(self.tmp, "chunk")
        with open(chunk, "wb") as c:
            c.write(b"".join(frame(time_nano=i + 1, line=b'{"n":%d,"msg":"w","l":[1,2,{"k":"v"}]}'
                                   % i) for i in range(8000)))
        writer = ("import os, struct, sys\n"
                  "try:\n    os.nice(-10)\nexcept OSError:\n    pass\n"
                  "d, out, cur = open(sys.argv[2], 'rb').read(), [], b''\n"
                  "while d:\n"
                  "    n = 4 + struct.unpack('>I', d[:4])[0]\n"
                  "    if len(cur) + n > 4096:\n        out.append(cur)\n        cur = b''\n"
                  "    cur, d = cur + d[:n], d[n:]\n"
                  "out.append(cur)\n"
                  "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
                  "while True:\n    for b in out:\n        os.write(fd, b)\n")
        for _ in range(2):
            w = subprocess.Popen([fwdtest.PYTHON, "-c", writer, f.path, chunk],
                                 preexec_fn=fwdtest._die_with_parent)
            self.addCleanup(w.wait)
            self.addCleanup(w.kill)
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] > 100000, 20,
                   "the writer's lines read")
        took = self.timed_stop(d, 20)
        self.assertLess(took, 9.5, "SIGTERM took %.1f s with writers that never stop" % took)
        self.assertIsNone(w.poll(), "the writers still run: they never stopped writing")


class TestFaults(ProcTest):
    """Faults injected with tests/faultshim.c (LD_PRELOAD)."""

    def faults(self):
        return fwdtest.tail(os.path.join(self.tmp, "faults.log")).splitlines()

    def test_emfile_at_start_logging_is_a_clear_err(self):
        recv = self.receiver()
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port}
        env.update(shim_env(path=os.path.join(self.tmp, "emfile-*"), ops="open",
                            errno="EMFILE", log=os.path.join(self.tmp, "faults.log")))
        d = self.daemon(env)
        bad = Fifo(self.tmp, name="emfile-" + "d" * 57)
        self.addCleanup(bad.close)
        st, body = d.api.start(bad.path, info(cid(0xc1)))
        self.assertEqual(self.faults(), ["open " + bad.path], "the shim made that open fail")
        self.assertEqual(st, 200)
        err = body["Err"]
        self.assertTrue(err.startswith("fwdlog: cannot open log FIFO %s: Too many open files"
                                       % bad.path), err)
        self.assertRegex(err, r"RLIMIT_NOFILE \d+")
        self.assertIn("raise the limit", err)
        self.assertIn("StartLogging refused", d.logtext())
        # the daemon goes on: the next container starts and its lines arrive
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(0xc2))), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"after EMFILE"))
        self.assertEqual(logs(recv.wait_exact(1)), ["after EMFILE"])
        self.assertEqual(d.api.metrics()["fwdlog_containers"], 1)

    # issue 13, testing: ENOSPC while spooling. Nothing memory can hold is lost, the log
    # says what happened, and spooling comes back once there is space again.
    def test_enospc_while_spooling(self):
        port = fwdtest.free_port()
        full = os.path.join(self.tmp, "disk-full")
        open(full, "w").close()
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
               "FWDLOG_MAX_RETRY_WAIT": "200ms", "FWDLOG_BATCH_SIZE": "16k",
               "FLUENTD_BUFFER_LIMIT": "1m"}
        env.update(shim_env(path=os.path.join(self.tmp, "state", "spool", "*"), ops="write",
                            errno="ENOSPC", switch=full,
                            log=os.path.join(self.tmp, "faults.log")))
        d = self.daemon(env, level="info")
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(0xc7))), (200, {"Err": ""}))
        # 20,000 records of 90 bytes (about 2.4 MB queued) against 1 MiB of memory and a
        # full disk: memory keeps the newest it can hold, drop-oldest drops the rest
        n1, n2 = 20000, 20000
        for j in range(0, n1, 5000):
            f.write(lines(b"e", j, j + 5000, pad=80))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n1, 20, "all read")
        time.sleep(0.5)  # flush-interval: the last open batch is sealed
        self.assertTrue(self.faults(), "spool writes failed with ENOSPC")
        log = d.logtext()
        self.assertIn("cannot write to the spool", log)
        self.assertIn("No space left on device", log)
        self.assertIn("full and the spool cannot be written (see the error logged before)", log)
        m = d.api.metrics()
        dropped = m["fwdlog_records_dropped_total"]
        self.assertGreater(dropped, 0)
        self.assertLessEqual(m["fwdlog_memory_bytes"], 1024 * 1024 + 16 * 1024)
        self.assertEqual(m["fwdlog_spool_bytes"], 0)
        os.unlink(full)  # space again: what comes now spills to the spool, nothing drops
        for j in range(n1, n1 + n2, 5000):
            f.write(lines(b"e", j, j + 5000, pad=80))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == n1 + n2, 20, "all read")
        wait_until(lambda: d.api.metrics()["fwdlog_spool_bytes"] > 1 << 20, 20, "spilling again")
        self.assertEqual(d.api.metrics()["fwdlog_records_dropped_total"], dropped)
        r = self.receiver(port=port)
        got = r.wait_exact(n1 + n2 - dropped, timeout=60)
        # the oldest went: what arrives is every later record, in order
        self.assertEqual([e["record"]["log"][:8] for e in got],
                         ["e%07d" % i for i in range(dropped, n1 + n2)])

    # issue 13 item 3: without acks, what the aggregator sends is read and thrown away. A
    # peer that never stops sending must not hold the loop: conn_do_read reads at most a
    # budget per wakeup. The shim makes each socket read take 1 ms, so the peer (which
    # writes as fast as loopback takes it) keeps the socket full for as long as we read.
    def test_chatty_aggregator_does_not_hold_the_loop(self):
        import threading
        stop = threading.Event()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        self.addCleanup(srv.close)
        sent = [0]

        def chatter():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                threading.Thread(target=lambda: drain(c), daemon=True).start()
                c.settimeout(0.2)
                while not stop.is_set():
                    try:
                        sent[0] += c.send(b"\x00" * 65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                c.close()

        def drain(c):
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
        t = threading.Thread(target=chatter)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(stop.set)
        rb = self.receiver()
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % rb.port}
        env.update(shim_env(path="socket:*", ops="read", delay_ms=1))
        d = self.daemon(env, level="info")
        fa, fb = self.fifo(), self.fifo()
        self.assertEqual(d.api.start(fa.path, info(cid(0xc5), config={
            "fluentd-address": "127.0.0.1:%d" % srv.getsockname()[1]})), (200, {"Err": ""}))
        self.assertEqual(d.api.start(fb.path, info(cid(0xc6))), (200, {"Err": ""}))
        fa.write(frame(time_nano=1, line=b"to the chatty one"))
        wait_until(lambda: sent[0] > 8 << 20, 20, "the chatty aggregator sending 8 MiB")
        n, slow = 50, []
        for i in range(n):
            fb.write(frame(time_nano=i + 1, line=b"b%03d" % i))
            t1 = time.time()
            self.assertEqual(d.api.call("/LogDriver.Capabilities")[0], 200)
            slow.append(time.time() - t1)
            time.sleep(0.02)
        self.assertEqual(logs(rb.wait_exact(n, timeout=20)), ["b%03d" % i for i in range(n)])
        self.assertLess(max(slow), 1.0, "slowest API call while the aggregator chattered")
        stop.set()

    # issue 13 item 2: fdatasync of a spool segment ran on the loop thread, so a 500 ms
    # sync stalled every container and the API; the syncer thread (syncer.c) takes them.
    def test_stalled_fdatasync_does_not_stall_other_containers(self):
        self.stalled_fdatasync(500)

    def stalled_fdatasync(self, delay_ms):
        """Container A's destination is down and spills to the spool, where every
        fdatasync takes delay_ms; container B's lines keep flowing to its receiver and
        API calls answer within 50 ms meanwhile."""
        down = fwdtest.free_port()
        rb = self.receiver()
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % rb.port, "FWDLOG_BATCH_SIZE": "64k"}
        env.update(shim_env(path=os.path.join(self.tmp, "state", "spool", "*"),
                            ops="fdatasync", delay_ms=delay_ms,
                            log=os.path.join(self.tmp, "faults.log")))
        d = self.daemon(env, level="info")
        fa, fb = self.fifo(), self.fifo()
        self.assertEqual(d.api.start(fa.path, info(cid(0xc3), config={
            "fluentd-address": "127.0.0.1:%d" % down, "fluentd-buffer-limit": "64k"})),
            (200, {"Err": ""}))
        self.assertEqual(d.api.start(fb.path, info(cid(0xc4))), (200, {"Err": ""}))
        import threading
        stop = threading.Event()

        def flood():  # 1 KiB lines, about 48 MiB: a dozen 4 MiB segments, each synced
            for j in range(0, 48000, 2000):
                if stop.is_set():
                    return
                fa.write(lines(b"a", j, j + 2000, pad=1000), timeout=60)
        t = threading.Thread(target=flood)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(stop.set)
        wait_until(lambda: self.faults(), 20, "a first spool fdatasync")
        n, slow, gaps = 200, [], []
        last_seen, last_change = 0, time.time()
        for i in range(n):
            fb.write(frame(time_nano=i + 1, line=b"b%04d" % i))
            t1 = time.time()
            self.assertEqual(d.api.call("/LogDriver.Capabilities")[0], 200)
            slow.append(time.time() - t1)
            seen = len(rb.records())
            if seen != last_seen:
                gaps.append(time.time() - last_change)
                last_seen, last_change = seen, time.time()
            time.sleep(0.02)
        stop.set()
        self.assertEqual(logs(rb.wait_exact(n, timeout=30)), ["b%04d" % i for i in range(n)])
        self.assertGreaterEqual(len(self.faults()), 3, "spool syncs while B was writing")
        self.assertLess(max(slow), 0.05, "slowest API call (of %d) while syncs took %d ms"
                        % (n, delay_ms))
        self.assertLess(max(gaps), 0.4, "longest wait for B's next line at the receiver")

    def test_stalled_options_fsync_does_not_stall_start_logging(self):
        """Issue 13 item 2: a StartLogging with buffer-type=file writes its destination's
        options.json, whose fsync ran on the loop: while the disk took 2 s, no API call was
        answered and no FIFO was read. The sync thread now fsyncs and renames it."""
        import threading
        ra, rb, rc = (self.receiver(name=n) for n in ("ra", "rb", "rc"))
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % rb.port}
        env.update(shim_env(path=os.path.join(self.tmp, "state", "spool", "*", "options.json*"),
                            ops="fsync", delay_ms=2000, log=os.path.join(self.tmp, "faults.log")))
        d = self.daemon(env, level="info")
        fa, fb, fc = self.fifo(), self.fifo(), self.fifo()
        self.assertEqual(d.api.start(fb.path, info(cid(0xc6))), (200, {"Err": ""}))
        fb.write(frame(time_nano=1, line=b"b0"))
        self.assertEqual(logs(rb.wait_exact(1)), ["b0"])
        answers = {}

        def start(f, n, r):  # a new buffer-type=file destination: a new options.json
            t = time.time()
            answers[n] = (d.api.start(f.path, info(cid(n), config={
                "fluentd-address": "127.0.0.1:%d" % r.port, "buffer-type": "file"})),
                time.time() - t)
        ta = threading.Thread(target=start, args=(fa, 0xc5, ra))
        ta.start()
        self.addCleanup(ta.join)
        wait_until(lambda: self.faults(), 5, "the first options.json fsync", interval=0.005)
        start(fc, 0xc7, rc)  # the second container, while the first fsync stalls
        self.assertEqual(answers[0xc7][0], (200, {"Err": ""}))
        self.assertLess(answers[0xc7][1], 0.05, "StartLogging while an options.json fsync "
                        "stalls for 2 s")
        dirs = sorted(os.path.dirname(p) for p in glob.glob(
            os.path.join(self.tmp, "state", "spool", "*", "options.json.tmp")))
        self.assertEqual(len(dirs), 2, "both written, neither renamed yet")
        self.assertEqual([os.path.exists(os.path.join(p, "options.json")) for p in dirs],
                         [False, False], "renamed only after their fsync")
        t = time.time()
        fb.write(frame(time_nano=2, line=b"b1"))
        wait_until(lambda: len(rb.records()) == 2, 5, "B's second line", interval=0.005)
        b_took = time.time() - t
        ta.join()
        self.assertEqual(answers[0xc5][0], (200, {"Err": ""}))
        self.assertLess(answers[0xc5][1], 0.05, "StartLogging whose own fsync stalls for 2 s")
        self.assertLess(b_took, 0.5, "B's line while an options.json fsync stalls")
        fa.write(frame(time_nano=3, line=b"a0"))
        fc.write(frame(time_nano=4, line=b"c0"))
        self.assertEqual(logs(ra.wait_exact(1)), ["a0"])
        self.assertEqual(logs(rc.wait_exact(1)), ["c0"])
        self.assertEqual(logs(rb.wait_exact(2)), ["b0", "b1"])
        # the syncs end (one after the other: 4 s) and each rename follows its fsync
        wait_until(lambda: all(os.path.exists(os.path.join(p, "options.json")) for p in dirs),
                   10, "both options.json in place")
        for p in dirs:
            self.assertFalse(os.path.exists(os.path.join(p, "options.json.tmp")))
            with open(os.path.join(p, "options.json")) as f:
                self.assertEqual(json.load(f)["buffer-type"], "file")
        self.assertEqual(sorted(self.faults()),
                         sorted("fsync " + os.path.join(p, "options.json.tmp") for p in dirs))

    def test_sigterm_with_a_hung_fdatasync_ends_in_time(self):
        """Issue 13 item 2: a spool fdatasync that never returns (a hung disk) held the
        SIGTERM path past dockerd's SIGKILL at 10 s. fwdlogd now gives up on the sync at
        9 s and exits 0; the records are in the page cache, so the next start sends them."""
        port = fwdtest.free_port()  # the aggregator is down: the records stay in the spool
        env = {"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms"}
        env.update(shim_env(path=os.path.join(self.tmp, "state", "spool", "*"),
                            ops="fdatasync", delay_ms=600000,
                            log=os.path.join(self.tmp, "faults.log")))
        d = self.daemon(env, level="info")
        f = self.fifo()
        self.assertEqual(d.api.start(f.path, info(cid(0xc8), config={"buffer-type": "file"})),
                         (200, {"Err": ""}))
        f.write(lines(b"h", 0, 100))
        wait_until(lambda: d.api.metrics()["fwdlog_records_total"] == 100, 10, "all read")
        took = self.timed_stop(d, 30)
        self.assertLess(took, 9.5, "SIGTERM took %.1f s with a hung fdatasync" % took)
        segs = glob.glob(os.path.join(self.tmp, "state", "spool", "*", "*.seg"))
        self.assertEqual(len(segs), 1)
        self.assertEqual(self.faults(), ["fdatasync " + segs[0]])
        self.assertIn("did not finish its syncs by the shutdown deadline", d.logtext())
        r = self.receiver(port=port)
        self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % port}, level="info")
        self.assertEqual(logs(r.wait_exact(100, timeout=20)), ["h%07d" % i for i in range(100)])


class TestParse(Base):
    """parse=, time-*, multiline*, metadata=, seq-key= through fwdlogd."""

    def records(self, f, lines, n, config, source="stdout", **kw):
        self.start(f, cid=cid(0x61), config=config, **kw)
        for i, ln in enumerate(lines):
            f.write(frame(source=source, time_nano=1700000000000000000 + i, line=ln.encode()
                          if isinstance(ln, str) else ln))
        return self.recv.wait(n)

    def failures(self):
        return self.d.api.metrics()['fwdlog_container_parse_failures_total{container_id="%s",'
                                    'container_name="/web"}' % cid(0x61)[:12]]

    def test_json_fields_typed_failures_pass_through_and_are_counted(self):
        f = self.fifo()
        evs = self.records(f, ['{"msg":"hi","n":-3,"f":0.5,"ok":true,"nil":null,'
                               '"o":{"a":[1,"x"]},"big":18446744073709551615}',
                               "not json", '{"cut": "no end', '["array"]'], 4,
                           {"parse": "json"})
        base = {"container_id": cid(0x61), "container_name": "/web", "source": "stdout"}
        self.assertEqual([e["record"] for e in evs], [
            dict(base, msg="hi", n=-3, f=0.5, ok=True, nil=None, o={"a": [1, "x"]},
                 big=18446744073709551615),
            dict(base, log="not json"), dict(base, log='{"cut": "no end'),
            dict(base, log='["array"]')])
        self.assertEqual(len(self.recv.records()), 4)
        self.assertEqual(self.failures(), 3)
        self.assert_no_receiver_errors()

    def test_json_collisions_renamed_keep_log_and_parse_into(self):
        f = self.fifo()
        line = '{"source":"app","container_id":"x","log":"inner","msg":"m"}'
        evs = self.records(f, [line], 1, {"parse": "json", "parse-keep-log": "true",
                                          "labels": "team"}, labels={"team": "core"})
        self.assertEqual(evs[0]["record"], {
            "container_id": cid(0x61), "container_name": "/web", "source": "stdout",
            "log": line, "_source": "app", "_container_id": "x", "_log": "inner", "msg": "m",
            "team": "core"})
        f2 = self.fifo()
        self.d.api.start(f2.path, info(cid(0x62), config={"parse": "json",
                                                          "parse-into": "app"}))
        f2.write(frame(time_nano=5, line=b'{"source":"app","n":1}'))
        rec = self.recv.wait(2)[1]["record"]
        self.assertEqual(rec, {"container_id": cid(0x62), "container_name": "/web",
                               "source": "stdout", "app": {"source": "app", "n": 1}})

    def test_time_key_sets_event_time_with_nanoseconds(self):
        f = self.fifo()
        evs = self.records(f, ['{"ts":"2026-11-24T10:00:00.123456789+01:00","m":1}',
                               '{"ts":"garbage","m":2}'], 2,
                           {"parse": "json", "time-key": "ts"})
        self.assertEqual(evs[0]["time"], [1795510800, 123456789])
        self.assertNotIn("ts", evs[0]["record"])
        self.assertEqual(evs[1]["time"], [1700000000, 1])  # Docker's time stays
        self.assertEqual(evs[1]["record"]["ts"], "garbage")
        f2 = self.fifo()
        self.d.api.start(f2.path, info(cid(0x63), config={
            "parse": "logfmt", "time-key": "t", "time-format": "unix_ms", "time-keep": "true"}))
        f2.write(frame(time_nano=5, line=b't=1700000000123 level=info msg="a \\"b\\""'))
        ev = self.recv.wait(3)[2]
        self.assertEqual(ev["time"], [1700000000, 123000000])
        self.assertEqual(ev["record"], {"container_id": cid(0x63), "container_name": "/web",
                                        "source": "stdout", "t": "1700000000123",
                                        "level": "info", "msg": 'a "b"'})

    def test_regex_named_groups(self):
        f = self.fifo()
        evs = self.records(f, ["10.0.0.1 GET /a 200", "garbage"], 2, {
            "parse": "regex",
            "parse-regex": r"^(?<ip>\S+) (?<method>\S+) (?<path>\S+) (?<code>\d+)$"})
        self.assertEqual(evs[0]["record"], {"container_id": cid(0x61), "container_name": "/web",
                                            "source": "stdout", "ip": "10.0.0.1",
                                            "method": "GET", "path": "/a", "code": "200"})
        self.assertEqual(evs[1]["record"]["log"], "garbage")
        self.assertEqual(self.failures(), 1)

    def test_issue_13_max_record_size_pieces_of_an_event_are_not_parsed(self):
        # a multiline event of 90 KiB under max-record-size=64k: two pieces with an id of
        # fwdlog's own (32 hex), sent as log, not parsed (counted as parse failures)
        f = self.fifo()
        lines = ["S start"] + ["  " + "%04d" % i * 75 for i in range(300)] + ["S next"]
        evs = self.records(f, lines, 3, {"multiline-start": "^S", "max-record-size": "64k",
                                         "parse": "regex", "parse-regex": "^(?<all>.*)$",
                                         "multiline-flush": "100ms"})
        self.recv.wait_exact(3, timeout=10)
        recs = [e["record"] for e in evs]
        self.assertEqual([r.get("partial_ordinal") for r in recs], ["1", "2", None])
        self.assertEqual([r.get("partial_last") for r in recs], ["false", "true", None])
        self.assertEqual(recs[0]["partial_id"], recs[1]["partial_id"])
        self.assertRegex(recs[0]["partial_id"], "^[0-9a-f]{32}$")
        self.assertEqual(recs[0]["log"] + recs[1]["log"], "\n".join(lines[:-1]))
        self.assertEqual(recs[2]["all"], "S next")  # a whole event is parsed as before
        self.assertNotIn("all", recs[0])
        self.assertEqual(self.failures(), 2)

    def test_issue_13_fields_too_long_for_max_record_size_stay_log(self):
        # parse-keep-log doubles a 40 KiB JSON line: over 64k, so it goes as it was
        f = self.fifo()
        big = '{"k":"' + "v" * 40000 + '"}'
        evs = self.records(f, [big, '{"k":"small"}'], 2,
                           {"parse": "json", "parse-keep-log": "true", "max-record-size": "64k"})
        self.assertEqual([set(e["record"]) - {"container_id", "container_name", "source"}
                          for e in evs], [{"log"}, {"log", "k"}])
        self.assertEqual(evs[0]["record"]["log"], big)
        self.assertEqual(self.failures(), 1)

    def test_multiline_java_per_stream_with_a_16k_partial(self):
        f = self.fifo()
        self.start(f, cid=cid(0x61), config={"multiline": "java"})
        long_frame = "\tat " + "x" * 20000
        t = 1700000000000000000
        for i, ln in enumerate(JAVA_TRACE[:3]):
            f.write(frame(source="stdout", time_nano=t + i, line=ln.encode()))
        f.write(frame(source="stderr", time_nano=t + 10, line=b"err line 1"))
        f.write(docker_lines(long_frame, time_nano=t + 11))
        f.write(frame(source="stderr", time_nano=t + 12, line=b"\tat err.Frame(E.java:1)"))
        for i, ln in enumerate(JAVA_TRACE[3:]):
            f.write(frame(source="stdout", time_nano=t + 20 + i, line=ln.encode()))
        f.write(frame(source="stdout", time_nano=t + 30, line=b"next event"))
        self.d.api.stop(f.path)
        evs = self.recv.wait(4)
        got = sorted((e["record"]["source"], e["record"]["log"], e["time"][1]) for e in evs)
        self.assertEqual(got, sorted([
            ("stdout", JAVA_TRACE[0], 0),
            ("stdout", "\n".join(JAVA_TRACE[1:3] + [long_frame] + JAVA_TRACE[3:]), 1),
            ("stderr", "err line 1\n\tat err.Frame(E.java:1)", 10),
            ("stdout", "next event", 30)]))
        time.sleep(0.3)
        self.assertEqual(len(self.recv.records()), 4)

    def test_multiline_flush_timeout_and_max_lines(self):
        f = self.fifo()
        self.start(f, cid=cid(0x61), config={"multiline-start": "^START",
                                             "multiline-flush": "200ms",
                                             "multiline-max-lines": "3"})
        for ln in [b"START a", b"1", b"2", b"3", b"4"]:
            f.write(frame(time_nano=1, line=ln))
        t0 = time.time()
        evs = self.recv.wait(2)  # no StopLogging: the flush timer emits the open event
        self.assertGreaterEqual(time.time() - t0, 0.15)
        self.assertEqual([e["record"]["log"] for e in evs], ["START a\n1\n2", "3\n4"])
        time.sleep(0.3)
        self.assertEqual(len(self.recv.records()), 2)

    def test_multiline_then_parse_metadata_seq(self):
        f = self.fifo()
        self.start(f, cid=cid(0x61), config={
            "multiline": "python", "parse": "regex", "seq-key": "seq",
            "parse-regex": r"(?s)^Traceback.*\n(?<exc>\w+): (?<why>[^\n]*)$",
            "metadata": "image_name,image_id,host,command,created,compose"},
            labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "api"},
            args=["-c", "run"])
        trace = ["Traceback (most recent call last):", '  File "a.py", line 1, in <module>',
                 "    1/0", "ZeroDivisionError: division by zero"]
        for ln in trace + ["plain"]:
            f.write(frame(time_nano=1, line=ln.encode()))
        evs = self.recv.wait(2)
        meta = {"image_name": "busybox:latest", "image_id": "sha256:" + "b" * 64,
                "host": socket.gethostname(), "command": "sh -c run",
                "created": "2026-11-24T10:00:00.123456789Z", "compose_project": "shop",
                "compose_service": "api"}
        base = {"container_id": cid(0x61), "container_name": "/web", "source": "stdout"}
        self.assertEqual(evs[0]["record"], dict(base, exc="ZeroDivisionError",
                                                why="division by zero", seq=1, **meta))
        self.assertEqual(evs[1]["record"], dict(base, log="plain", seq=2, **meta))

    def test_bad_options_name_the_option_and_the_fix(self):
        def err(config):
            f = self.fifo()
            st, body = self.d.api.start(f.path, info(cid(9), config=config))
            return body["Err"]
        self.assertIn('invalid log-opt parse="yaml": want none, json, logfmt or regex',
                      err({"parse": "yaml"}))
        self.assertIn("parse=regex needs parse-regex", err({"parse": "regex"}))
        self.assertIn("no named group", err({"parse": "regex", "parse-regex": "(a)"}))
        self.assertIn('invalid log-opt parse-regex="(?<a>"',
                      err({"parse": "regex", "parse-regex": "(?<a>"}))
        self.assertIn("want none, java, python or go", err({"multiline": "ruby"}))
        self.assertIn("exclude each other", err({"multiline": "go", "multiline-start": "^x"}))
        self.assertIn('invalid log-opt multiline-start="("', err({"multiline-start": "("}))
        self.assertIn("strptime", err({"time-format": "iso"}))
        self.assertIn("other than container_id", err({"seq-key": "source"}))
        self.assertIn("image_name, image_id", err({"metadata": "image,host"}))
        self.assertIn("from 1 to 100000", err({"multiline-max-lines": "0"}))
        self.assertIn("an attribute", err({"seq-key": "image_id", "metadata": "image_id"}))


class TestParseEnv(ProcTest):
    def test_plugin_wide_parse_from_environment(self):
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port,
                         "FWDLOG_PARSE": "json", "FWDLOG_SEQ_KEY": "n"})
        f = self.fifo()
        d.api.start(f.path, info(cid(0x64)))
        f.write(frame(time_nano=1, line=b'{"a":1}'))
        self.assertEqual(recv.wait(1)[0]["record"], {
            "container_id": cid(0x64), "container_name": "/web", "source": "stdout", "a": 1,
            "n": 1})

    def test_bad_plugin_wide_parse_fails_start(self):
        with self.assertRaises(RuntimeError) as cm:
            self.daemon({"FWDLOG_PARSE": "yaml"})
        self.assertIn('invalid FWDLOG_PARSE="yaml"', str(cm.exception))


# What GET /metrics must hold, as prometheus_client names families (a counter without _total).
FAMILIES = {
    "counter": {
        "fwdlog_frames", "fwdlog_records", "fwdlog_fifo_bytes", "fwdlog_corrupt_streams",
        "fwdlog_discarded_bytes", "fwdlog_resyncs", "fwdlog_records_lost",
        "fwdlog_restored_streams", "fwdlog_stream_state_failures", "fwdlog_records_sent",
        "fwdlog_batches_sent", "fwdlog_bytes_sent", "fwdlog_records_dropped",
        "fwdlog_batches_dropped", "fwdlog_connects", "fwdlog_connection_failures",
        "fwdlog_spooled_batches", "fwdlog_replayed_records", "fwdlog_spool_corrupt_records",
        "fwdlog_records_rejected", "fwdlog_batches_rejected",
        "fwdlog_destination_records_rejected",
        "fwdlog_container_records", "fwdlog_container_fifo_bytes",
        "fwdlog_container_records_dropped", "fwdlog_container_corrupt_streams",
        "fwdlog_container_discarded_bytes", "fwdlog_container_parse_failures",
        "fwdlog_container_partial_joins", "fwdlog_container_multiline_joins",
        "fwdlog_destination_connects", "fwdlog_destination_connection_failures",
        "fwdlog_destination_records_sent", "fwdlog_destination_bytes_sent",
        "fwdlog_destination_records_dropped"},
    "gauge": {
        "fwdlog_containers", "fwdlog_queued_bytes", "fwdlog_destinations", "fwdlog_memory_bytes",
        "fwdlog_spool_bytes", "fwdlog_blocked_destinations", "fwdlog_build_info",
        "fwdlog_open_fifos", "fwdlog_fifo_backlog_bytes", "process_resident_memory_bytes",
        "fwdlog_container_fifo_backlog_bytes", "fwdlog_container_pending_bytes",
        "fwdlog_destination_connections",
        "fwdlog_destination_queued_bytes", "fwdlog_destination_memory_bytes",
        "fwdlog_destination_spool_bytes", "fwdlog_destination_oldest_queued_age_seconds",
        "fwdlog_destination_acks_pending", "fwdlog_destination_last_send_timestamp_seconds"},
    "histogram": {"fwdlog_loop_lag_seconds", "fwdlog_destination_ack_rtt_seconds"},
}


def series(fams, name, **labels):
    """{frozenset(labels): value} of the samples called name (the sample's own name, e.g.
    fwdlog_records_total) whose labels include `labels`."""
    out = {}
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out[frozenset(s.labels.items())] = s.value
    return out


def one(fams, name, **labels):
    got = series(fams, name, **labels)
    if len(got) != 1:
        raise AssertionError("%s%r: %d samples, want 1" % (name, labels, len(got)))
    return next(iter(got.values()))


class TestObserve(ProcTest):
    """GET /metrics and GET /healthz: the format (checked by prometheus_client's parser, which
    knows nothing of fwdlog), per container and per destination, the scrape listener of
    FWDLOG_METRICS_ADDRESS, and the health verdict."""

    def observed(self, **env):
        """A daemon with the scrape listener on a reserved loopback port: (daemon, scraper)."""
        mport = fwdtest.free_port()
        e = {"FWDLOG_METRICS_ADDRESS": "127.0.0.1:%d" % mport}
        e.update(env)
        d = self.daemon(e)
        return d, fwdtest.HTTPScraper(port=mport)

    def scrape(self, s):
        return fwdtest.families(s.metrics_text())

    def test_issue_13_pending_lines_count_in_destination_memory(self):
        # Five containers each hold a 16 KiB chunk of a line still being joined, a sixth half
        # a frame: 5 x 16384 + 500 bytes that are not records yet. They are the
        # destination's memory, and with fluentd-buffer-limit=64k under overflow-policy=block
        # the joined lines alone hold the containers back (the frame tail does not count
        # there: only reading on completes it).
        recv = self.receiver()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % recv.port)
        opts = {"fluentd-buffer-limit": "64k", "overflow-policy": "block", "spool-limit": "0",
                "partial-timeout": "10m"}
        fs = [self.fifo() for _ in range(6)]
        for i, f in enumerate(fs):
            st, body = d.api.start(f.path, info(cid(0x90 + i), name="/p%d" % i, config=opts))
            self.assertEqual((st, body), (200, {"Err": ""}))
        tail = frame(time_nano=7, line=b"t" * 1000)
        fs[5].write(tail[:500])
        for i in range(5):
            fs[i].write(frame(time_nano=8, line=b"%d" % i * 16384, partial=True,
                              meta={"id": "%d" % i * 64, "ordinal": 1}))
        want = {cid(0x90 + i)[:12]: 16384 for i in range(5)}
        want[cid(0x95)[:12]] = 500

        def pending():
            fams = self.scrape(s)
            return {dict(k)["container_id"]: v for k, v in
                    series(fams, "fwdlog_container_pending_bytes").items()}
        wait_until(lambda: pending() == want, what="pending bytes per container")
        fams = self.scrape(s)
        self.assertEqual(one(fams, "fwdlog_destination_memory_bytes"), 5 * 16384 + 500)
        self.assertEqual(one(fams, "fwdlog_memory_bytes"), 5 * 16384 + 500)
        self.assertEqual(one(fams, "fwdlog_queued_bytes"), 0)  # no record yet
        self.assertEqual(one(fams, "fwdlog_blocked_destinations"), 1)
        # the rest of each line and frame; StopLogging drains (blocked or not) and flushes
        fs[5].write(tail[500:])
        for i in range(5):
            fs[i].write(frame(time_nano=8, line=b"end", partial=True,
                              meta={"id": "%d" % i * 64, "ordinal": 2, "last": True}))
        for f in fs:
            self.assertEqual(d.api.stop(f.path), (200, {"Err": ""}))
        evs = recv.wait_exact(6, timeout=10)
        self.assertEqual(sorted(logs(evs)), sorted(["%d" % i * 16384 + "end" for i in range(5)]
                                                   + ["t" * 1000]))
        wait_until(lambda: one(self.scrape(s), "fwdlog_memory_bytes") == 0, what="memory freed")
        fams = self.scrape(s)
        self.assertEqual(series(fams, "fwdlog_container_pending_bytes"), {})
        self.assertEqual(one(fams, "fwdlog_blocked_destinations"), 0)

    def test_every_family_parses_with_help_and_type(self):
        recv = self.receiver()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % recv.port,
                             FLUENTD_REQUEST_ACK="true")
        fa, fb = self.fifo(), self.fifo()
        t0 = time.time()
        d.api.start(fa.path, info(cid(0x70), name="/a", config={"parse": "json"}))
        d.api.start(fb.path, info(cid(0x71), name='/we\\ird"\nname',
                                  config={"multiline-start": "^\\S"}))
        long = b'{"k":"' + b"x" * 40000 + b'"}'  # three chunks of Docker's 16 KiB
        data_a = frame(time_nano=1, line=b'{"a":1}') + frame(time_nano=2, line=b"not json") + \
            docker_lines(long, time_nano=3)
        fa.write(data_a)
        fb.write(b"".join(frame(time_nano=10 + i, line=ln) for i, ln in enumerate(
            [b"start1", b"  cont1", b"  cont2", b"start2"])))
        recv.wait_exact(5, timeout=10)  # start2 comes out at multiline-flush
        for text in (s.metrics_text(), d.api.call("/metrics", method="GET")[1]):
            fams = fwdtest.families(text)
            for f in fams.values():
                self.assertNotEqual(f.documentation, "", f.name + " has no HELP")
                self.assertIn(f.type, ("counter", "gauge", "histogram"), f.name)
            for typ, names in FAMILIES.items():
                for n in names:
                    self.assertIn(n, fams, "family " + n)
                    self.assertEqual(fams[n].type, typ, n)
        st, ctype, _ = s.call("/metrics")
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        a = {"container_id": cid(0x70)[:12], "container_name": "/a"}
        b = {"container_id": cid(0x71)[:12], "container_name": '/we\\ird"\nname'}
        self.assertEqual(one(fams, "fwdlog_container_records_total", **a), 3)
        self.assertEqual(one(fams, "fwdlog_container_records_total", **b), 2)
        self.assertEqual(one(fams, "fwdlog_container_fifo_bytes_total", **a), len(data_a))
        self.assertEqual(one(fams, "fwdlog_container_parse_failures_total", **a), 1)
        self.assertEqual(series(fams, "fwdlog_container_parse_failures_total", **b), {})
        self.assertEqual(one(fams, "fwdlog_container_partial_joins_total", **a), 1)
        self.assertEqual(one(fams, "fwdlog_container_partial_joins_total", **b), 0)
        self.assertEqual(one(fams, "fwdlog_container_multiline_joins_total", **b), 1)
        self.assertEqual(series(fams, "fwdlog_container_multiline_joins_total", **a), {})
        for r in ("overflow", "rejected", "out_of_memory"):
            self.assertEqual(one(fams, "fwdlog_container_records_dropped_total", reason=r, **a), 0)
        dest = {"destination": "127.0.0.1:%d" % recv.port}
        self.assertEqual(one(fams, "fwdlog_destination_records_sent_total", **dest), 5)
        self.assertEqual(one(fams, "fwdlog_destination_connections", state="connected", **dest), 1)
        self.assertEqual(one(fams, "fwdlog_destination_acks_pending", **dest), 0)
        self.assertEqual(one(fams, "fwdlog_destination_queued_bytes", **dest), 0)
        self.assertEqual(one(fams, "fwdlog_destination_ack_rtt_seconds_count", **dest),
                         one(fams, "fwdlog_batches_sent_total"))
        self.assertGreater(one(fams, "fwdlog_batches_sent_total"), 0)
        sent_at = one(fams, "fwdlog_destination_last_send_timestamp_seconds", **dest)
        self.assertTrue(t0 - 1 <= sent_at <= time.time(), sent_at)
        self.assertGreater(one(fams, "fwdlog_loop_lag_seconds_count"), 0)
        self.assertGreater(one(fams, "process_resident_memory_bytes"), 1024 * 1024)
        self.assertEqual(one(fams, "fwdlog_open_fifos"), 2)
        for smp in fams["fwdlog_container_records"].samples:
            self.assertRegex(smp.labels["container_id"], "^[0-9a-f]{12}$")

    def test_counters_only_increase(self):
        recv = self.receiver()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % recv.port, FWDLOG_PARSE="json")
        fa, fb = self.fifo(), self.fifo()
        d.api.start(fa.path, info(cid(0x75), name="/a"))
        d.api.start(fb.path, info(cid(0x76), name="/b"))

        def counters():
            out = {}
            for f in self.scrape(s).values():
                if f.type in ("counter", "histogram"):
                    for smp in f.samples:
                        if not smp.name.endswith("_created"):
                            out[(smp.name, frozenset(smp.labels.items()))] = smp.value
            return out
        before, n = counters(), 0
        for rnd in range(8):
            fa.write(lines(b"a", n, n + 300, pad=rnd * 20))
            fb.write(lines(b"{", n, n + 50))  # not JSON: parse failures
            n += 300
            if rnd == 5:
                d.api.stop(fb.path)  # b's series go; nothing else may go down
            want = n + min(rnd + 1, 6) * 50
            wait_until(lambda: s.metrics()["fwdlog_records_total"] == want, 10, "all read")
            now = counters()
            for k, v in now.items():
                if k in before:
                    self.assertGreaterEqual(v, before[k], "%s went down" % (k,))
            grown = [k for k in now if k in before and now[k] > before[k]]
            self.assertIn(("fwdlog_records_total", frozenset()), grown)
            before = now
        recv.wait_exact(8 * 300 + 6 * 50, timeout=20)
        gone = [k for k in counters() if dict(k[1]).get("container_name") == "/b"]
        self.assertEqual(gone, [])

    def test_overflow_drops_and_queued_bytes_are_exact(self):
        port = fwdtest.free_port()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % port, FLUENTD_RETRY_WAIT="50ms",
                             FWDLOG_MAX_RETRY_WAIT="200ms", FLUENTD_BUFFER_LIMIT="64k",
                             FWDLOG_SPOOL_LIMIT="0", FWDLOG_OVERFLOW_POLICY="drop-newest",
                             FWDLOG_BATCH_SIZE="4k", FWDLOG_FLUSH_INTERVAL="50ms")
        fa, fb = self.fifo(), self.fifo()
        d.api.start(fa.path, info(cid(0x72), name="/a"))
        d.api.start(fb.path, info(cid(0x73), name="/b"))
        fa.write(lines(b"a", 0, 3000, pad=60))
        fb.write(lines(b"b", 0, 100))
        dest = {"destination": "127.0.0.1:%d" % port}

        wait_until(lambda: s.metrics()["fwdlog_records_total"] == 3100, 10, "all read")
        # past flush-interval: every batch is sealed, so queued bytes are wire bytes
        time.sleep(0.3)
        fams = self.scrape(s)
        per = [one(fams, "fwdlog_container_records_dropped_total", container_name=n,
                   reason="overflow") for n in ("/a", "/b")]
        dropped = one(fams, "fwdlog_records_dropped_total")
        self.assertGreater(dropped, 0)
        self.assertEqual(sum(per), dropped, "per container")
        self.assertEqual(one(fams, "fwdlog_destination_records_dropped_total", **dest), dropped)
        queued = one(fams, "fwdlog_destination_queued_bytes", **dest)
        self.assertEqual(queued, one(fams, "fwdlog_queued_bytes"))
        self.assertGreaterEqual(one(fams, "fwdlog_destination_memory_bytes", **dest), queued)
        self.assertGreater(queued, 0)
        self.assertLessEqual(queued, 64 * 1024 + 8 * 1024)
        self.assertEqual(one(fams, "fwdlog_destination_records_sent_total", **dest), 0)
        self.assertGreater(one(fams, "fwdlog_destination_oldest_queued_age_seconds", **dest), 0)
        states = {dict(k)["state"]: v for k, v in
                  series(fams, "fwdlog_destination_connections", **dest).items()}
        self.assertEqual(sum(states.values()), 1, states)  # one address: one connection
        self.assertEqual(states["connected"], 0)
        self.assertGreaterEqual(
            one(fams, "fwdlog_destination_connection_failures_total", **dest), 1)
        recv = self.receiver(port=port)
        kept = 3100 - dropped
        recv.wait_exact(kept, timeout=20)
        wait_until(lambda: s.metrics()["fwdlog_queued_bytes"] == 0, 5, "the queue drained")
        after = self.scrape(s)
        # what was queued is exactly what was delivered, byte for byte and record for record
        self.assertEqual(one(after, "fwdlog_destination_bytes_sent_total", **dest), queued)
        self.assertEqual(one(after, "fwdlog_destination_records_sent_total", **dest), kept)
        self.assertEqual(one(after, "fwdlog_records_dropped_total"), dropped)
        self.assertEqual(one(after, "fwdlog_destination_oldest_queued_age_seconds", **dest), 0)

    def test_healthz_503_during_an_outage_and_200_after(self):
        port = fwdtest.free_port()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % port, FLUENTD_RETRY_WAIT="50ms",
                             FWDLOG_MAX_RETRY_WAIT="200ms", FWDLOG_HEALTH_WINDOW="1s",
                             FLUENTD_SHARED_KEY="s3cret-never-shown")
        self.assertEqual(s.healthz(), (200, {"status": "ok", "window_seconds": 1.0,
                                             "failing": [], "destinations": []}))
        f = self.fifo()
        d.api.start(f.path, info(cid(0x77)))
        f.write(lines(b"h", 0, 10))
        wait_until(lambda: s.healthz()[0] == 503, 10, "a 503 from /healthz")
        for st, body in (s.healthz(), d.api.healthz()):
            self.assertEqual(st, 503)
            self.assertEqual(body["status"], "failing")
            self.assertEqual([x["destination"] for x in body["failing"]], ["127.0.0.1:%d" % port])
            bad = body["failing"][0]
            self.assertIn("refused", bad["last_error"].lower())
            self.assertGreater(bad["queued_bytes"], 0)
            self.assertGreater(bad["oldest_queued_age_seconds"], 1.0)
            self.assertEqual(bad["seconds_since_last_send"], -1)
            self.assertNotIn("s3cret", json.dumps(body))
        self.assertNotIn("s3cret", s.metrics_text())
        recv = self.receiver(port=port, shared_key="s3cret-never-shown")
        recv.wait_exact(10, timeout=20)
        st, body = wait_until(lambda: (lambda r: r[0] == 200 and r)(s.healthz()), 10,
                              "a 200 from /healthz")
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["failing"], [])
        self.assertEqual(d.api.healthz()[0], 200)

    def test_listener_refuses_the_plugin_api(self):
        d, s = self.observed()
        f = self.fifo()
        body = json.dumps({"File": f.path, "Info": info(cid(0x78))})
        st, _, text = s.call("/LogDriver.StartLogging", "POST", body)
        self.assertEqual(st, 405)
        self.assertIn("only GET /metrics and GET /healthz", json.loads(text)["Err"])
        for path, method in (("/Plugin.Activate", "POST"), ("/LogDriver.StopLogging", "POST"),
                             ("/LogDriver.Capabilities", "POST"), ("/metrics", "POST"),
                             ("/healthz", "DELETE"), ("/LogDriver.StartLogging", "GET"),
                             ("/", "GET")):
            self.assertEqual(s.call(path, method)[0], 405, (method, path))
        # a body is read (and thrown away) before the answer: the client sees the 405, not
        # a reset while it is still sending
        for _ in range(5):
            self.assertEqual(s.call("/LogDriver.StartLogging", "POST", "x" * 900000)[0], 405)
        self.assertEqual(d.api.metrics()["fwdlog_containers"], 0, "nothing was started")
        self.assertEqual(s.metrics()["fwdlog_containers"], 0)
        self.assertEqual(s.call("/metrics", "HEAD")[0], 200)
        self.assertEqual(d.api.start(f.path, info(cid(0x78))), (200, {"Err": ""}),
                         "the plugin socket still takes it")

    def test_a_thousand_containers_leave_no_series(self):
        recv = self.receiver()
        d, s = self.observed(FLUENTD_ADDRESS="127.0.0.1:%d" % recv.port)
        fifos = []
        for i in range(1000):
            f = self.fifo()
            self.assertEqual(d.api.start(f.path, info("%064x" % (i + 1), name="/c%d" % i)),
                             (200, {"Err": ""}))
            f.write(frame(time_nano=i + 1, line=b"c%d" % i))
            fifos.append(f)
        recv.wait_exact(1000, timeout=30)
        fams = self.scrape(s)
        self.assertEqual(len(series(fams, "fwdlog_container_records_total")), 1000)
        self.assertEqual(set(series(fams, "fwdlog_container_records_total").values()), {1})
        self.assertEqual(one(fams, "fwdlog_open_fifos"), 1000)
        for f in fifos:
            self.assertEqual(d.api.stop(f.path), (200, {"Err": ""}))
        fams = self.scrape(s)
        left = {n: len(f.samples) for n, f in fams.items()
                if n.startswith("fwdlog_container_") and f.samples}
        self.assertEqual(left, {})
        self.assertEqual((one(fams, "fwdlog_containers"), one(fams, "fwdlog_open_fifos")), (0, 0))

    def test_unix_listener(self):
        path = os.path.join(self.tmp, "metrics.sock")
        d = self.daemon({"FWDLOG_METRICS_ADDRESS": "unix://" + path})
        s = fwdtest.HTTPScraper(unix=path)
        self.assertIn("fwdlog_containers", fwdtest.families(s.metrics_text()))
        self.assertEqual(s.healthz()[0], 200)
        self.assertEqual(s.call("/LogDriver.StartLogging", "POST", "{}")[0], 405)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        d.stop()
        self.assertFalse(os.path.exists(path), "removed at shutdown")

    def test_bad_settings_fail_start_naming_the_variable(self):
        for env, want in (
                ({"FWDLOG_METRICS_ADDRESS": "localhost:9880"},
                 'invalid FWDLOG_METRICS_ADDRESS="localhost:9880": the host must be an IP'),
                ({"FWDLOG_METRICS_ADDRESS": "127.0.0.1"}, "give the port"),
                ({"FWDLOG_METRICS_ADDRESS": "tls://127.0.0.1:9880"}, "no TLS here"),
                ({"FWDLOG_HEALTH_WINDOW": "soon"}, 'invalid FWDLOG_HEALTH_WINDOW="soon"')):
            with self.assertRaises(RuntimeError) as cm:
                self.daemon(env)
            self.assertIn(want, str(cm.exception))


if __name__ == "__main__":
    sys.exit(fwdtest.summarize("integration", unittest.main(exit=False, verbosity=2).result))
