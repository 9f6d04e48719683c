#!/usr/bin/python3
"""Integration tests: build/fwdlogd on a temporary socket, real FIFOs fed with frames
encoded as dockerd writes them, and the project's Forward receiver on 127.0.0.1.
No Docker needed. Run with FWDLOGD=path/to/fwdlogd (make integration does)."""
import os
import shutil
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fwdtest  # noqa: E402
from fwdtest import Daemon, Fifo, Receiver, docker_lines, frame, info  # noqa: E402


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
        for p in self.procs:
            if isinstance(p, Receiver):
                p.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for rc, log in rcs:
            self.assertEqual(rc, 0, "fwdlogd exit status; its log ends:\n" + log[-2000:])
            self.assertNotIn("runtime error", log)  # UBSan

    def receiver(self, **kw):
        r = Receiver(self.tmp, **kw)
        self.procs.append(r)
        return r

    def daemon(self, env=None, level="debug"):
        d = Daemon(self.tmp, env=env, level=level)
        self.procs.append(d)
        return d

    def fifo(self):
        f = Fifo(self.tmp)
        self.addCleanup(f.close)
        return f

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

    def test_null_arrays_and_maps(self):
        f = self.fifo()
        i = info(cid(2))
        i.update({"ContainerArgs": None, "ContainerEnv": None, "ContainerLabels": None,
                  "Config": None})
        self.assertEqual(self.d.api.start(f.path, i), (200, {"Err": ""}))
        f.write(frame(time_nano=1, line=b"x"))
        self.assertEqual(len(self.recv.wait(1)), 1)

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
        evs = self.recv.wait(3)
        self.assertEqual(len(evs), 3)
        self.assertEqual(evs[0]["tag"], cid(0xab)[:12])
        self.assertEqual(evs[0]["mode"], "PackedForward")
        self.assertEqual(evs[0]["time_type"], "eventtime")
        self.assertEqual(evs[0]["time"], [1700000000, 123456789])
        self.assertEqual(evs[0]["record"], {"container_id": cid(0xab), "container_name": "/web",
                                            "source": "stdout", "log": "hello out"})
        self.assertEqual(evs[1]["record"]["source"], "stderr")
        self.assertEqual(evs[2]["record"]["log"], "")
        self.assert_no_receiver_errors()

    def test_integer_time_when_subsecond_off(self):
        f = self.fifo()
        self.start(f, cid=cid(1), config={"fluentd-sub-second-precision": "false"})
        f.write(frame(time_nano=1700000000999999999, line=b"x"))
        ev = self.recv.wait(1)[0]
        self.assertEqual((ev["time_type"], ev["time"]), ("int", 1700000000))

    def test_tag_template_every_field(self):
        f = self.fifo()
        tmpl = ("{{.ID}}|{{.FullID}}|{{.Name}}|{{.ImageID}}|{{.ImageFullID}}|{{.ImageName}}|"
                "{{.DaemonName}}|{{ .Command }}|{{.Hostname}}|x")
        self.start(f, cid=cid(5), name="/app", config={"tag": tmpl}, args=["-c", "echo hi"])
        f.write(frame(time_nano=1, line=b"x"))
        ev = self.recv.wait(1)[0]
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
        rec = self.recv.wait(1)[0]["record"]
        self.assertEqual(rec, {"container_id": cid(6), "container_name": "/web",
                               "source": "stdout", "log": "x", "a": "env-a", "b": "label-b",
                               "APP_X": "1", "APP_Y": "2"})

    def test_invalid_utf8_passes_through(self):
        f = self.fifo()
        self.start(f, cid=cid(7))
        raw = b"bad \xff\xfe utf8 \xc3"
        f.write(frame(time_nano=1, line=raw))
        rec = self.recv.wait(1)[0]["record"]
        self.assertEqual(rec["log"].encode("utf-8", "surrogateescape"), raw)

    def test_40k_line_is_one_record(self):
        f = self.fifo()
        self.start(f, cid=cid(8))
        line = (b"0123456789abcdef" * 2560)  # 40 KiB
        f.write(docker_lines(line, pid="c" * 64))
        f.write(docker_lines(b"after", pid="d" * 64))
        evs = self.recv.wait(2)
        self.assertEqual(len(evs), 2)
        self.assertEqual(evs[0]["record"]["log"].encode(), line)
        self.assertNotIn("partial_message", evs[0]["record"])
        self.assertEqual(evs[1]["record"]["log"], "after")

    def test_16k_multiple_with_empty_last_chunk(self):
        f = self.fifo()
        self.start(f, cid=cid(9))
        line = b"z" * 32768
        data = docker_lines(line, pid="e" * 64)
        f.write(data)
        evs = self.recv.wait(1)
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
        evs = self.recv.wait(2)
        got = {e["record"]["source"]: e["record"]["log"] for e in evs}
        self.assertEqual(got, {"stdout": a.decode(), "stderr": b.decode()})
        times = {e["record"]["source"]: e["time"] for e in evs}
        self.assertEqual(times["stdout"], [0, 100])

    def test_over_max_line_emits_docker_partial_keys(self):
        f = self.fifo()
        self.start(f, cid=cid(11), config={"max-line-size": "16k"})
        line = b"q" * 40000
        f.write(docker_lines(line, pid="f" * 64))
        evs = self.recv.wait(3)
        self.assertEqual(len(evs), 3)
        recs = [e["record"] for e in evs]
        self.assertEqual([r["partial_ordinal"] for r in recs], ["1", "2", "3"])
        self.assertEqual([r["partial_last"] for r in recs], ["false", "false", "true"])
        self.assertTrue(all(r["partial_message"] == "true" and r["partial_id"] == "f" * 64
                            for r in recs))
        self.assertEqual(b"".join(r["log"].encode() for r in recs), line)

    def test_partial_timeout(self):
        f = self.fifo()
        self.start(f, cid=cid(12), config={"partial-timeout": "200ms"})
        f.write(frame(time_nano=5, line=b"p" * 16384, partial=True,
                      meta={"id": "9" * 64, "ordinal": 1}))
        evs = self.recv.wait(1, timeout=5)
        self.assertEqual(len(evs), 1)
        r = evs[0]["record"]
        self.assertEqual((r["partial_message"], r["partial_ordinal"], r["partial_last"]),
                         ("true", "1", "false"))
        # the late last chunk continues the numbering and closes the line
        f.write(frame(time_nano=5, line=b"end", partial=True,
                      meta={"id": "9" * 64, "ordinal": 2, "last": True}))
        evs = self.recv.wait(2, timeout=5)
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
        evs = self.recv.wait(50)
        self.assertEqual([e["record"]["log"] for e in evs], ["line %d" % i for i in range(50)])

    def test_zero_length_frame(self):
        f = self.fifo()
        self.start(f, cid=cid(14))
        f.write(struct.pack(">I", 0) + frame(time_nano=1, line=b"after"))
        evs = self.recv.wait(2, timeout=3)
        self.assertEqual([e["record"]["log"] for e in evs], ["", "after"])


class TestStreams(Base):
    def test_over_cap_frame_stops_only_that_stream(self):
        bad, good = self.fifo(), self.fifo()
        self.start(bad, cid=cid(20))
        self.start(good, cid=cid(21))
        bad.write(frame(time_nano=1, line=b"before"))
        self.assertEqual(len(self.recv.wait(1)), 1)
        bad.write(struct.pack(">I", 2 * 1024 * 1024) + b"garbage")
        # the corrupt FIFO is still drained: 1 MiB more must not block the writer
        bad.write(b"\0" * (1024 * 1024))
        good.write(frame(time_nano=2, line=b"good"))
        evs = self.recv.wait(2)
        self.assertEqual([e["record"]["log"] for e in evs], ["before", "good"])
        m = self.d.api.metrics()
        self.assertEqual(m["fwdlog_corrupt_streams_total"], 1)
        self.assertIn("corrupt log stream", self.d.logtext())

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
        evs = self.recv.wait(n)
        self.assertEqual([e["record"]["log"] for e in evs], ["l%d" % i for i in range(n)])

    def test_hundred_fifos(self):
        fifos = [self.fifo() for _ in range(100)]
        for i, f in enumerate(fifos):
            self.start(f, cid=cid(i), name="/c%d" % i)
        per = 500
        for j in range(0, per, 100):
            for i, f in enumerate(fifos):
                f.write(b"".join(frame(time_nano=k + 1, line=b"%d:%d" % (i, k))
                                 for k in range(j, j + 100)))
        evs = self.recv.wait(100 * per, timeout=60)
        self.assertEqual(len(evs), 100 * per)
        by = {}
        for e in evs:
            by.setdefault(e["record"]["container_name"], []).append(e["record"]["log"])
        for i in range(100):
            self.assertEqual(by["/c%d" % i], ["%d:%d" % (i, k) for k in range(per)])
        self.assert_no_receiver_errors()

    def test_duplicate_start_replaces_stream(self):
        a, b = self.fifo(), self.fifo()
        self.start(a, cid=cid(30))
        a.write(frame(time_nano=1, line=b"old"))
        self.start(b, cid=cid(30))  # live-restore: new FIFO, same container
        b.write(frame(time_nano=2, line=b"new"))
        evs = self.recv.wait(2)
        self.assertEqual([e["record"]["log"] for e in evs], ["old", "new"])
        self.assertEqual(self.d.api.metrics()["fwdlog_containers"], 1)

    def test_eof_without_stoplogging(self):
        f = self.fifo()
        self.start(f, cid=cid(31))
        f.write(frame(time_nano=1, line=b"bye"))
        os.close(f.fd)
        f.fd = None
        self.assertEqual(len(self.recv.wait(1)), 1)
        deadline = time.time() + 5
        while self.d.api.metrics()["fwdlog_containers"] != 0 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.d.api.metrics()["fwdlog_containers"], 0)


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
        time.sleep(0.5)
        self.assertIn("retrying in", d.logtext())
        recv = self.receiver(port=port)
        evs = recv.wait(1000, timeout=20)
        self.assertEqual([e["record"]["log"] for e in evs], ["d%d" % i for i in range(1000)])

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
        evs = recv.wait(kept, timeout=20)
        logs = [e["record"]["log"][:6] for e in evs]
        self.assertEqual(len(logs), kept)
        self.assertEqual(logs[-1], "%06d" % (n - 1), "the newest records are kept")
        self.assertEqual(logs, sorted(logs))
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
        evs = recv.wait(n, timeout=60)
        self.assertEqual(len(evs), n)
        self.assertEqual([e["record"]["log"][:6] for e in evs[:3]], ["000000", "000001",
                                                                    "000002"])
        self.assertEqual(evs[-1]["record"]["log"][:6], "%06d" % (n - 1))
        self.assertEqual(recv.errors(), [])


class TestGzip(Base):
    env = {"FLUENTD_COMPRESS": "gzip"}

    def test_compressed_packed_forward(self):
        f = self.fifo()
        self.start(f, cid=cid(80), config={"batch-size": "8k"})
        n = 3000
        f.write(b"".join(frame(time_nano=i + 1, line=b"gz line %d" % i) for i in range(n)))
        evs = self.recv.wait(n)
        self.assertEqual([e["record"]["log"] for e in evs], ["gz line %d" % i for i in range(n)])
        self.assertEqual({e["mode"] for e in evs}, {"CompressedPackedForward"})
        m = self.d.api.metrics()
        self.assertLess(m["fwdlog_bytes_sent_total"], n * 40, "gzip must shrink the batches")
        self.assert_no_receiver_errors()


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

    def wait_all(self, r, n, timeout=30):
        want = {"a%06d" % i for i in range(n)}
        deadline = time.time() + timeout
        while time.time() < deadline and not want <= set(self.logs(r)):
            time.sleep(0.05)
        got = set(self.logs(r))
        self.assertEqual(want - got, set(), "lines never delivered")
        return self.logs(r)

    def test_acked_batches_carry_chunk_ids(self):
        r = self.receiver()
        d = self.ack_daemon(r.port)
        self.feed(d, 1000)
        logs = self.wait_all(r, 1000)
        self.assertEqual(len(logs), 1000)  # no resends when every ack is right
        chunks = {e["chunk"] for e in r.records()}
        self.assertTrue(all(len(c) == 24 and c.endswith("==") for c in chunks), chunks)
        time.sleep(0.2)
        self.assertEqual(d.api.metrics()["fwdlog_records_sent_total"], 1000)

    def test_wrong_ack_discards_connection_and_resends(self):
        r = self.receiver(wrong_acks=1)
        d = self.ack_daemon(r.port)
        self.feed(d, 3000)
        logs = self.wait_all(r, 3000)
        self.assertGreater(len(logs), 3000, "the batch with the wrong ack must be resent")
        self.assertIn("ack does not match", d.logtext())

    def test_lost_ack_times_out_and_resends(self):
        # One batch in flight and its ack lost: only the ack timeout can notice. (With more
        # in flight, the next ack would not match the oldest batch, the mismatch path.)
        r = self.receiver(drop_acks=1)
        d = self.ack_daemon(r.port, FLUENTD_READ_TIMEOUT="300ms")
        self.feed(d, 50)
        self.wait_all(r, 50)
        evs = r.wait(100, timeout=10)
        self.assertEqual(len(evs), 100, "the batch is delivered twice: once unacked")
        time.sleep(0.5)
        self.assertEqual(len(r.records()), 100, "and only twice: the resend was acked")
        self.assertIn("no ack within", d.logtext())

    def test_late_acks_are_not_failures(self):
        # The deadline runs from the write: 14 batches acked 50 ms apart stay well inside 3 s.
        r = self.receiver(ack_delay=0.05)
        d = self.ack_daemon(r.port, FLUENTD_READ_TIMEOUT="3s")
        self.feed(d, 2000)
        logs = self.wait_all(r, 2000)
        self.assertEqual(len(logs), 2000)
        self.assertNotIn("no ack within", d.logtext())

    def test_gzip_with_acks(self):
        r = self.receiver(close_after_bytes=3000)
        d = self.ack_daemon(r.port, FLUENTD_COMPRESS="gzip")
        self.feed(d, 20000)
        self.wait_all(r, 20000)
        self.assertEqual({e["mode"] for e in r.records()}, {"CompressedPackedForward"})

    def test_close_mid_batch_resends(self):
        r = self.receiver(close_after_bytes=20000)
        d = self.ack_daemon(r.port)
        self.feed(d, 5000)
        self.wait_all(r, 5000)
        # A close with unread data arrives as a reset, not an orderly close.
        self.assertRegex(d.logtext(), "closed by aggregator|Connection reset by peer")

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
        logs = self.wait_all(r, n, timeout=60)
        self.assertGreaterEqual(len(logs), n)
        self.assertEqual(r.errors(), [])
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
        """Until fwdlogd has read n records and sealed them (flush-interval is 100 ms)."""
        deadline = time.time() + 20
        while d.api.metrics()["fwdlog_records_total"] < n and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(d.api.metrics()["fwdlog_records_total"], n)
        time.sleep(0.5)

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
        time.sleep(0.3)
        m = d.api.metrics()
        self.assertLessEqual(m["fwdlog_memory_bytes"], 256 * 1024)
        self.assertGreater(m["fwdlog_spool_bytes"], 3 * 1024 * 1024)
        self.assertEqual(m["fwdlog_records_dropped_total"], 0)
        r = self.receiver(port=port)
        got = r.wait(n, timeout=30)
        self.assertEqual(self.logs(r), ["s%07d" % i for i in range(n)])
        self.assertEqual(len(got), n)
        d.api.stop(f.path)
        deadline = time.time() + 10
        while self.spool_files() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.spool_files(), [], "delivered batches leave the spool")

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
        r = self.receiver(port=port)
        d2 = self.spool_daemon(port, **env)
        got = r.wait(n, timeout=30)
        self.assertEqual(self.logs(r), ["k%07d" % i for i in range(n)])
        self.assertEqual(len(got), n)
        self.assertEqual(d2.api.metrics()["fwdlog_replayed_records_total"], n)
        self.assertIn("left in the spool by an earlier run", d2.logtext())

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
        deadline = time.time() + 20
        while d2.api.metrics()["fwdlog_records_sent_total"] < 1900 and time.time() < deadline:
            time.sleep(0.05)
        sent = d2.api.metrics()["fwdlog_records_sent_total"]
        logs = [e["record"]["log"][:8] for e in r.wait(sent, timeout=20)]  # the receiver's pace
        m = d2.api.metrics()
        self.assertEqual(m["fwdlog_spool_corrupt_records_total"], 1)
        self.assertEqual(logs, ["t%07d" % i for i in range(len(logs))], "a prefix, in order")
        self.assertGreater(len(logs), 1900)  # only the cut batch (< 100 records) is missing
        self.assertIn("cut short", d2.logtext())

    def test_sigterm_while_down_keeps_memory_batches(self):
        port = fwdtest.free_port()
        d = self.spool_daemon(port)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa3)))
        f.write(lines(b"m", 0, 3000))
        time.sleep(0.3)
        self.assertEqual(d.stop(timeout=20), 0)
        self.procs.remove(d)
        self.assertIn("kept in the spool", d.logtext())
        r = self.receiver(port=port)
        self.spool_daemon(port)
        self.assertEqual(len(r.wait(3000, timeout=20)), 3000)
        self.assertEqual(self.logs(r), ["m%07d" % i for i in range(3000)])

    def fill(self, policy, n):
        port = fwdtest.free_port()
        d = self.spool_daemon(port, FLUENTD_BUFFER_LIMIT="256k", FWDLOG_SPOOL_LIMIT="16m",
                              FWDLOG_OVERFLOW_POLICY=policy)
        f = self.fifo()
        d.api.start(f.path, info(cid(0xa4)))
        for j in range(0, n, 5000):
            f.write(lines(b"p", j, j + 5000, pad=200))
        time.sleep(0.3)
        d.api.stop(f.path)
        return port, d

    def check_counts(self, d, r, n):
        m = d.api.metrics()
        dropped = m["fwdlog_records_dropped_total"]
        self.assertGreater(dropped, 0)
        # memory: the limit plus at most the open batch (batch-size 16k)
        self.assertLessEqual(m["fwdlog_memory_bytes"], 256 * 1024 + 16 * 1024)
        self.assertLessEqual(m["fwdlog_spool_bytes"], 16 * 1024 * 1024 + 4 * 1024 * 1024)
        got = r.wait(n - dropped, timeout=30)
        time.sleep(0.5)
        self.assertEqual(len(r.records()), n - dropped, "every record kept arrives, once")
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
        time.sleep(0.3)
        m = d.api.metrics()
        per = {k: v for k, v in m.items() if k.startswith("fwdlog_container_records_dropped")}
        a = per['fwdlog_container_records_dropped_total{container="%s"}' % cid(0xa5)[:12]]
        b = per['fwdlog_container_records_dropped_total{container="%s"}' % cid(0xa6)[:12]]
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
        got = r.wait(n, timeout=30)
        self.assertEqual([e["record"]["log"] for e in got], ["b%07d" % i for i in range(n)])
        self.assertEqual(d.api.metrics()["fwdlog_records_dropped_total"], 0)
        self.assertIn("containers' logs are not read", d.logtext())
        self.assertIn("reading containers' logs again", d.logtext())


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
        deadline = time.time() + timeout
        while sum(len(r.records()) for r in rs) < n and time.time() < deadline:
            time.sleep(0.05)

    def test_failover_uses_the_first_then_the_standby(self):
        ports, rs, d = self.two("failover")
        f = self.fifo()
        d.api.start(f.path, info(cid(0xb0)))
        f.write(lines(b"f", 0, 5000))
        self.wait_total(rs, 5000)
        self.assertEqual(len(rs[0].records()), 5000)
        self.assertEqual(len(rs[1].records()), 0, "the standby gets nothing while the first is up")
        rs[0].stop()  # killed: the standby takes over
        f.write(lines(b"f", 5000, 10000))
        self.wait_total(rs[1:], 5000)
        self.assertGreaterEqual(len(rs[1].records()), 5000)
        # the first comes back and rejoins: new batches go to it again
        rs[0] = self.receiver(port=ports[0], name="a", append=True)
        deadline = time.time() + 10
        before = len(rs[0].records())
        while time.time() < deadline:
            f.write(lines(b"g", 0, 100))
            time.sleep(0.2)
            if len(rs[0].records()) > before:
                break
        self.assertGreater(len(rs[0].records()), before, "the first aggregator rejoins")
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
        got = set(self.all_logs(*rs))
        self.assertEqual(got, {"k%07d" % i for i in range(n)}, "every line at least once")
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
        self.assertEqual(set(self.all_logs(*rs)), {"r%07d" % i for i in range(n)})

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
        self.assertEqual(len(r.wait(200)), 200)
        self.assertEqual([(a["auth"], a["client"]) for a in r.auths()], [("ok", "client1")])
        self.assertNotIn("s3cret", d.logtext())

    def test_fluent_bit_style_str_nonce_with_acks(self):
        r, d = self.run_case({"shared_key": "k", "nonce_type": "str"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_REQUEST_ACK": "true"})
        self.assertEqual(len(r.wait(200)), 200, d.logtext() + str(r.auths()) + str(r.errors()))
        self.assertEqual(r.auths()[0]["auth"], "ok")

    def test_user_and_password_from_file(self):
        pw = os.path.join(self.tmp, "pw")
        with open(pw, "w") as fh:
            fh.write("hunter2\n")
        r, d = self.run_case({"shared_key": "k", "user": "alice:hunter2"},
                             {"FLUENTD_SHARED_KEY": "k", "FLUENTD_USERNAME": "alice",
                              "FLUENTD_PASSWORD_FILE": pw})
        self.assertEqual(len(r.wait(200)), 200)
        self.assertNotIn("hunter2", d.logtext())

    def assert_refused(self, r, d, log_part, recv_part=None):
        time.sleep(1.0)
        self.assertEqual(r.records(), [], "no record may pass a failed handshake")
        self.assertIn(log_part, d.logtext())
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
        r, d = self.run_case({}, {"FLUENTD_SHARED_KEY": "k"})
        time.sleep(0.5)
        self.assertEqual(r.records(), [])

    def test_username_without_key_is_an_option_error(self):
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:9"})
        f = self.fifo()
        st, body = d.api.start(f.path, info(cid(91), config={"fluentd-username": "u"}))
        self.assertIn("need fluentd-shared-key", body["Err"])
        st, body = d.api.start(f.path, info(cid(91), config={
            "fluentd-shared-key-file": "/nonexistent/key"}))
        self.assertIn('fluentd-shared-key-file="/nonexistent/key"', body["Err"])


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
        self.assertEqual(len(r.wait(300)), 300)
        self.assertIn("TLS", d.logtext())

    def test_server_name_and_everything_together(self):
        r, d, body = self.run_case({"shared_key": "k"}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"], "fluentd-tls-server-name": "localhost",
            "fluentd-shared-key": "k", "fluentd-request-ack": "true",
            "fluentd-compress": "gzip"})
        self.assertEqual(len(r.wait(300)), 300)
        self.assertEqual({e["mode"] for e in r.records()}, {"CompressedPackedForward"})
        self.assertEqual(r.auths()[0]["auth"], "ok")

    def refused(self, r, d, log_part):
        time.sleep(1.0)
        self.assertEqual(r.records(), [], "nothing may pass a failed TLS handshake")
        self.assertIn(log_part, d.logtext())

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
        self.assertEqual(len(r.wait(300)), 300)

    def test_client_certificate(self):
        r, d, body = self.run_case({"tls_client_ca": self.pki["ca.pem"]}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"],
            "fluentd-tls-cert-file": self.pki["client.pem"],
            "fluentd-tls-key-file": self.pki["client.key"]})
        self.assertEqual(len(r.wait(300)), 300)

    def test_client_certificate_missing(self):
        r, d, body = self.run_case({"tls_client_ca": self.pki["ca.pem"]}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"]})
        time.sleep(1.0)
        self.assertEqual(r.records(), [])
        self.assertTrue(any("tls failed" in a["auth"] for a in r.auths()), r.auths())

    def test_short_writes_under_tls(self):
        # A stalled reader makes SSL_write come back short or blocked again and again; the
        # retries must resume exactly where they stopped ("bad write retry" otherwise).
        r, d, body = self.run_case({"stall": 1.5}, {
            "fluentd-tls-ca-file": self.pki["ca.pem"], "batch-size": "4k",
            "fluentd-buffer-limit": "256m"}, n=0)
        f = self.fifo()
        d.api.start(f.path, info(cid(96), config={
            "fluentd-address": "tls://127.0.0.1:%d" % r.port,
            "fluentd-tls-ca-file": self.pki["ca.pem"], "batch-size": "4k",
            "fluentd-buffer-limit": "256m"}))
        n = 50000
        for j in range(0, n, 10000):
            f.write(b"".join(frame(time_nano=i + 1, line=b"%06d" % i + b"z" * 150)
                             for i in range(j, j + 10000)))
        evs = r.wait(n, timeout=60)
        self.assertEqual([e["record"]["log"][:6] for e in evs], ["%06d" % i for i in range(n)])
        self.assertNotIn("retrying", d.logtext())

    def test_key_not_matching_certificate_is_a_start_error(self):
        r, d, body = self.run_case({}, {"fluentd-tls-ca-file": self.pki["ca.pem"],
                                        "fluentd-tls-cert-file": self.pki["client.pem"],
                                        "fluentd-tls-key-file": self.pki["server.key"]}, n=0)
        self.assertIn("fluentd-tls-key-file", body["Err"])


class TestShutdownAndTransports(ProcTest):
    def test_sigterm_flushes(self):
        recv = self.receiver()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % recv.port,
                         "FWDLOG_FLUSH_INTERVAL": "10s"})
        f = self.fifo()
        d.api.start(f.path, info(cid(50)))
        f.write(b"".join(frame(time_nano=i + 1, line=b"s%d" % i) for i in range(300)))
        time.sleep(0.2)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(len(recv.wait(300, timeout=5)), 300)

    def test_unix_socket_aggregator_and_plugin_wide_tag(self):
        path = os.path.join(self.tmp, "fluent.sock")
        recv = self.receiver(unix=path)
        d = self.daemon({"FLUENTD_ADDRESS": "unix://" + path, "FWDLOG_TAG": "docker.{{.Name}}"})
        f = self.fifo()
        d.api.start(f.path, info(cid(51), name="/svc"))
        f.write(frame(time_nano=1, line=b"via unix"))
        ev = recv.wait(1)[0]
        self.assertEqual((ev["tag"], ev["record"]["log"]), ("docker.svc", "via unix"))

    def test_bad_plugin_wide_default_fails_start(self):
        with self.assertRaises(RuntimeError) as cm:
            self.daemon({"FLUENTD_RETRY_WAIT": "soon"})
        self.assertIn("FLUENTD_RETRY_WAIT", str(cm.exception))


JAVA_TRACE = [
    "2026-11-24 10:00:00 ERROR request failed",
    "java.lang.IllegalStateException: boom",
    "\tat com.example.Service.handle(Service.java:42)",
    "\tat com.example.Main.main(Main.java:7)",
    "Caused by: java.io.IOException: disk full",
    "\tat com.example.Disk.write(Disk.java:9)",
    "\t... 2 more",
]


class TestParse(Base):
    """parse=, time-*, multiline*, metadata=, seq-key= through fwdlogd."""

    def records(self, f, lines, n, config, source="stdout", **kw):
        self.start(f, cid=cid(0x61), config=config, **kw)
        for i, ln in enumerate(lines):
            f.write(frame(source=source, time_nano=1700000000000000000 + i, line=ln.encode()
                          if isinstance(ln, str) else ln))
        return self.recv.wait(n)

    def failures(self):
        return self.d.api.metrics()['fwdlog_parse_failures_total{container="%s"}' % cid(0x61)[:12]]

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


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("integration: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
