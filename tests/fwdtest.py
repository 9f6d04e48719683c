"""Helpers shared by fwdlog's integration and end-to-end tests (stdlib + python3-msgpack).

- frame(): a Docker log frame exactly as dockerd writes it: [uint32 BE length][LogEntry],
  LogEntry marshalled like gogo/protobuf (fields in number order, proto3 zero values
  omitted). Written from moby's entry.proto, not from fwdlog's decoder.
- PluginClient: HTTP/1.1 over the plugin's unix socket, shaped like dockerd's calls
  (POST, JSON body with Content-Length, no Content-Type).
- Receiver: runs tests/forward_receiver.py and reads the events it wrote.
- Daemon: runs fwdlogd on a temporary socket and state directory.
"""
import atexit
import http.client
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"


def _die_with_parent():
    """Children of a test die with it (PR_SET_PDEATHSIG), so a test killed by a timeout
    leaves no receiver or daemon behind holding its pipes open."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def terminate(proc, sig=signal.SIGTERM, timeout=15):
    """Send sig, wait up to timeout seconds, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tail(path, n=None):
    """The last n lines of a log file (all of it when n is None); "" if it is not there."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]) if n else f.read()
    except OSError:
        return ""


def _varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    return _varint(num << 3 | wire) + payload


def _bytes_field(num, b):
    return _field(num, 2, _varint(len(b)) + b)


def log_entry(source="stdout", time_nano=0, line=b"", partial=False, meta=None):
    """meta: None or dict(last=bool, id=str, ordinal=int)."""
    if isinstance(line, str):
        line = line.encode()
    out = b""
    if source:
        out += _bytes_field(1, source.encode())
    if time_nano:
        out += _field(2, 0, _varint(time_nano))
    if line:
        out += _bytes_field(3, line)
    if partial:
        out += _field(4, 0, b"\x01")
    if meta is not None:
        m = b""
        if meta.get("last"):
            m += _field(1, 0, b"\x01")
        if meta.get("id"):
            m += _bytes_field(2, meta["id"].encode())
        if meta.get("ordinal"):
            m += _field(3, 0, _varint(meta["ordinal"]))
        out += _bytes_field(5, m)
    return out


def frame(**kw):
    e = log_entry(**kw)
    return struct.pack(">I", len(e)) + e


def docker_lines(line, source="stdout", time_nano=None, pid="a" * 64):
    """The frames dockerd's copier emits for one logical line (split at 16 KiB)."""
    if isinstance(line, str):
        line = line.encode()
    t = time_nano or time.time_ns()
    if len(line) <= 16384:
        return frame(source=source, time_nano=t, line=line)
    out, ordinal, off = b"", 1, 0
    while len(line) - off >= 16384:
        out += frame(source=source, time_nano=t, line=line[off:off + 16384], partial=True,
                     meta={"id": pid, "ordinal": ordinal, "last": False})
        off += 16384
        ordinal += 1
    out += frame(source=source, time_nano=t, line=line[off:], partial=True,
                 meta={"id": pid, "ordinal": ordinal, "last": True})
    return out


class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("plugin.moby.localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class PluginClient:
    def __init__(self, sock_path):
        self.sock_path = sock_path

    def call(self, path, body=None, method="POST", raw=None, headers=None, timeout=30):
        """Returns (status, parsed JSON or text); socket.timeout past timeout seconds."""
        c = _UnixConn(self.sock_path, timeout=timeout)
        try:
            data = raw if raw is not None else (
                b"" if body is None else (json.dumps(body) + "\n").encode())
            h = {"Accept": "application/vnd.docker.plugins.v1.2+json"}
            h.update(headers or {})
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
        finally:
            c.close()

    def start(self, fifo, info, timeout=30):
        return self.call("/LogDriver.StartLogging", {"File": fifo, "Info": info}, timeout=timeout)

    def stop(self, fifo):
        return self.call("/LogDriver.StopLogging", {"File": fifo})

    def metrics(self):
        """{'name{labels}': value} of GET /metrics (comments skipped)."""
        st, text = self.call("/metrics", method="GET")
        if st != 200:
            raise AssertionError("GET /metrics: %d %r" % (st, text))
        return parse_samples(text)

    def healthz(self):
        return self.call("/healthz", method="GET")


def parse_samples(text):
    """The samples of an exposition as {'name{labels}': value}, values int when integral.
    A quick reader for exact checks; families() is the independent parser."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        k, v = ln.rsplit(" ", 1)
        f = float(v)
        out[k] = int(f) if f.is_integer() else f
    return out


def families(text):
    """{family name: Metric} from prometheus_client's parser (Debian's
    python3-prometheus-client), which knows nothing of fwdlog."""
    from prometheus_client.parser import text_string_to_metric_families
    return {f.name: f for f in text_string_to_metric_families(text)}


class HTTPScraper:
    """GET (or any method) against the scrape listener on 127.0.0.1:port or a unix socket."""

    def __init__(self, port=None, unix=None):
        self.port, self.unix = port, unix

    def call(self, path, method="GET", body=None):
        if self.unix:
            c = _UnixConn(self.unix, timeout=10)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode()
        finally:
            c.close()

    def metrics_text(self):
        st, ctype, text = self.call("/metrics")
        if st != 200:
            raise AssertionError("GET /metrics: %d %r" % (st, text))
        return text

    def metrics(self):
        return parse_samples(self.metrics_text())

    def healthz(self):
        st, _, text = self.call("/healthz")
        return st, json.loads(text)


def info(cid, name="/web", config=None, labels=None, env=None, args=None, image="busybox:latest"):
    return {
        "Config": config or {},
        "ContainerID": cid,
        "ContainerName": name,
        "ContainerEntrypoint": "sh",
        "ContainerArgs": args,
        "ContainerImageID": "sha256:" + "b" * 64,
        "ContainerImageName": image,
        "ContainerCreated": "2026-11-24T10:00:00.123456789Z",
        "ContainerEnv": env,
        "ContainerLabels": labels,
        "LogPath": "",
        "DaemonName": "docker",
    }


_RESERVED = {}


def free_port():
    """A loopback port reserved for the rest of this test process: bound (SO_REUSEADDR) but
    never listening, so connections to it are refused until a Receiver listens on it, and
    nothing else can take it meanwhile (not an ephemeral port, not a program binding without
    SO_REUSEADDR). For tests about an aggregator that is down first, or restarted on the same
    port; everything else binds port 0 and uses the port the receiver reports."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    _RESERVED[p] = s
    return p


@atexit.register
def _release_ports():
    for s in _RESERVED.values():
        s.close()


def wait_until(cond, timeout=20, what="the condition", interval=0.05):
    """Poll cond() until it returns something true; return it, or raise AssertionError
    naming `what` after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("%s did not happen within %ss" % (what, timeout))
        time.sleep(interval)


def logs(evs):
    return [e["record"]["log"] for e in evs]


def streams(evs, key="container_id"):
    """{(record[key], source): [log, ...]} in arrival order: the order fwdlog promises is
    per container and stream."""
    out = {}
    for e in evs:
        r = e["record"]
        out.setdefault((r.get(key), r.get("source")), []).append(r.get("log"))
    return out


class Receiver:
    QUIET = 1.0  # seconds with nothing new before wait_exact counts

    def __init__(self, tmpdir, port=0, unix=None, name="recv", append=False, expect_errors=None,
                 **script):
        """script: the receiver's switches as keywords (stall=1.5, drop_acks=1, ...; see
        forward_receiver.py). append: keep the events file (a restarted receiver).
        expect_errors: why this test expects the receiver to report errors; without it the
        test's tearDown asserts that errors() is empty."""
        self.expect_errors = expect_errors
        self.out = os.path.join(tmpdir, name + ".jsonl")
        if not append:
            open(self.out, "w").close()
        else:
            # A receiver killed mid-write left half a line: that event was never recorded
            # (nor acknowledged); cut it, or the next receiver's first line is glued to it.
            with open(self.out, "rb+") as f:
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
        args = [PYTHON, os.path.join(HERE, "forward_receiver.py"), "--out", self.out]
        if unix:
            args += ["--unix", unix]
        else:
            args += ["--port", str(port)]
        for k, v in script.items():
            if v is True:
                args += ["--" + k.replace("_", "-")]
            elif v:
                args += ["--" + k.replace("_", "-"), str(v)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING"):
            raise RuntimeError("receiver did not start: %r" % line)
        self.where = line.split()[1]
        self.port = int(self.where) if not unix else None
        self._seen = 0
        self._records = []
        self._errors = []
        self._auths = []

    def _poll(self):
        """Read the lines written since the last call (only complete ones)."""
        with open(self.out, "rb") as f:
            f.seek(self._seen)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self._seen += cut
        for ln in data[:cut].splitlines():
            e = json.loads(ln.decode("utf-8", "surrogateescape"))
            if "auth" in e:
                self._auths.append(e)
            else:
                (self._errors if "error" in e else self._records).append(e)

    def events(self):
        self._poll()
        return self._records + self._errors

    def errors(self):
        self._poll()
        return list(self._errors)

    def auths(self):
        """The handshake outcomes the receiver wrote ({"auth": ...} lines)."""
        self._poll()
        return list(self._auths)

    def records(self):
        self._poll()
        return list(self._records)

    def wait(self, n, timeout=20, pred=None):
        """The first n records (matching pred), or fewer if timeout passes first. Says
        nothing about what came after them: use wait_exact when a test means exactly n."""
        deadline = time.time() + timeout
        matched, checked = [], 0
        while True:
            self._poll()
            while checked < len(self._records) and len(matched) < n:
                if pred is None or pred(self._records[checked]):
                    matched.append(self._records[checked])
                checked += 1
            if len(matched) >= n or time.time() > deadline:
                return matched
            time.sleep(0.05)

    def _size(self):
        try:
            return os.path.getsize(self.out)
        except OSError:
            return 0

    def settle(self, quiet=None, timeout=60):
        """Wait until nothing new has been written for `quiet` seconds."""
        quiet = self.QUIET if quiet is None else quiet
        deadline = time.time() + timeout
        size, since = self._size(), time.time()
        while time.time() - since < quiet:
            if time.time() > deadline:
                raise AssertionError("receiver %s never went quiet for %ss" % (self.out, quiet))
            time.sleep(0.05)
            now = self._size()
            if now != size:
                size, since = now, time.time()

    def wait_exact(self, n, timeout=20, quiet=None, pred=None):
        """Exactly n records (matching pred): wait for n, then for `quiet` seconds with
        nothing new, then assert that there are exactly n and return them in arrival
        order. Duplicates, extra records and late resends fail here."""
        got = self.wait(n, timeout=timeout, pred=pred)
        if len(got) == n:
            self.settle(quiet)
        self._poll()
        allm = [e for e in self._records if pred is None or pred(e)]
        if len(allm) != n:
            sample = [str(e["record"].get("log"))[:40] for e in allm[-5:]]
            raise AssertionError("receiver %s: %d records, want exactly %d (last: %r; "
                                 "errors: %r)" % (os.path.basename(self.out), len(allm), n,
                                                  sample, self._errors[:3]))
        return allm

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Daemon:
    def __init__(self, tmpdir, env=None, level="debug", wrap=None):
        """wrap: a command line that runs fwdlogd's (given after it), e.g. hosts_file()."""
        self.tmpdir = tmpdir
        self.sock = os.path.join(tmpdir, "fwdlog.sock")
        self.log = os.path.join(tmpdir, "fwdlogd.log")
        e = {k: v for k, v in os.environ.items()
             if not (k.startswith("FLUENTD_") or k.startswith("FWDLOG_"))}
        e.update(env or {})
        # the tests' FIFOs are made in tmpdir (Fifo), not in dockerd's /run/docker/logging
        e.setdefault("FWDLOG_FIFO_DIR", tmpdir)
        cmd = [os.environ.get("FWDLOGD", os.path.join(HERE, "..", "build", "fwdlogd")),
               "--socket", self.sock, "--state-dir", os.path.join(tmpdir, "state"),
               "--log-level", level]
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen((wrap or []) + cmd, env=e, stderr=self.logf, preexec_fn=_die_with_parent)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("fwdlogd did not start:\n" + self.logtext())
            time.sleep(0.01)
        self.api = PluginClient(self.sock)

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, timeout=15):
        rc = terminate(self.proc, timeout=timeout)
        self.logf.close()
        return rc


class Fifo:
    """A log FIFO held the way dockerd holds it: created 0700 and opened O_RDWR (blocking)."""

    def __init__(self, tmpdir, name=None):
        self.path = os.path.join(tmpdir, name or os.urandom(32).hex())
        os.mkfifo(self.path, 0o700)
        self.fd = os.open(self.path, os.O_RDWR)
        # Our own descriptor is non-blocking so a reader that stops draining shows up as a
        # test failure ("the container would block"), not as a hung test.
        os.set_blocking(self.fd, False)

    def write(self, data, timeout=20):
        view = memoryview(data)
        deadline = time.time() + timeout
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                if time.time() > deadline:
                    raise AssertionError("FIFO full for %ss: a container would block" % timeout)
                select.select([], [self.fd], [], 0.05)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if os.path.exists(self.path):
            os.unlink(self.path)


def hosts_file(path):
    """A wrap= for Daemon: fwdlogd runs in its own mount namespace where path is
    /etc/hosts, so a test can give names the addresses it wants (root only)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', path]


def make_certs(d):
    """A test PKI made now with the openssl CLI (EC keys, valid one day): ca.pem signs
    server.pem (localhost, 127.0.0.1), client.pem, name-only.pem (localhost, no IP) and
    other-name.pem (fluentd.example, 127.0.0.1); other-ca.pem signs nothing of ours."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "1",
            "-subj", "/CN=fwdlog test " + ca)
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:fwdlog-client"),
                      ("name-only", "DNS:localhost"),
                      ("other-name", "DNS:fluentd.example,IP:127.0.0.1")):
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "1", "-extfile", name + ".ext")
    return {k: os.path.join(d, k) for k in (
        "ca.pem", "other-ca.pem", "server.pem", "server.key", "client.pem", "client.key",
        "name-only.pem", "name-only.key", "other-name.pem", "other-name.key")}


def summarize(suite, result, skip_fails=False):
    """Print "<suite>: P passed, F failed, S skipped" and return the exit status. Skipped
    cases are counted apart from passed ones; with skip_fails they fail the run."""
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    xfail = len(result.expectedFailures)
    passed = result.testsRun - failed - skipped - xfail
    print("%s: %d passed, %d failed, %d skipped, %d expected failures"
          % (suite, passed, failed, skipped, xfail))
    for test, reason in result.skipped:
        print("%s: SKIPPED %s: %s" % (suite, test.id(), reason))
    return 1 if failed or (skip_fails and skipped) or result.testsRun == 0 else 0


def tmpdir():
    return tempfile.mkdtemp(prefix="fwdlog-test-")
