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
        port = fwdtest.free_port()
        d = self.daemon({"FLUENTD_ADDRESS": "127.0.0.1:%d" % port, "FLUENTD_RETRY_WAIT": "50ms",
                         "FLUENTD_BUFFER_LIMIT": "64k"})
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
        self.assertIn("buffer limit", d.logtext())


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


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("integration: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
