#!/usr/bin/python3
"""A Fluentd Forward protocol v1 receiver for fwdlog's tests, written from the spec
(../shared/reference/fluentd-forward-protocol.md: the v1 spec and what Fluentd and Fluent Bit
do), not from fwdlog's sender, and decoded with Debian's python3-msgpack.

It accepts Message, Forward, PackedForward and CompressedPackedForward (gzip, also
concatenated gzip members), answers {"ack": chunk} when a request carries a chunk option,
and writes each event as one JSON line:

  {"tag": ..., "time": [sec, nsec] | sec, "time_type": "eventtime"|"int",
   "record": {...}, "mode": "Message"|"Forward"|"PackedForward"|"CompressedPackedForward",
   "conn": N, "req": M, "run": PID, "chunk": ...}

conn numbers the connections and req the requests (both from the first, across all
connections; run tells a restarted receiver's apart); chunk is there when the request
carried one. Events are written to the file before their ack is sent, so an acknowledged
event is on disk.

Strict by default, as strict as the real aggregators are together. A request that breaks a
rule is written as an {"error": "..."} line and the connection is closed (as Fluent Bit
does), so tests can assert there are none:
  - the root must be an array [tag(str), ...] (Fluent Bit closes on anything else, nil
    heartbeats included); the option must be a map or nil, its chunk a str (Fluent Bit),
    its size an integer, its compressed "gzip" or "text";
  - PackedForward must be [tag, bin, {"size": N}] with N the number of entries, the form
    fwdlog's README promises (the spec lets a client send str and omit size:
    --allow-str-entries, --allow-missing-size); the entries must decode whole;
  - time is an integer or EventTime (ext 0, 8 bytes) with nanoseconds below 10^9;
  - records are maps with str keys;
  - one request (and a decompressed payload) may be at most --max-message-size bytes,
    default 6,144,000 (Fluent Bit's buffer_max_size); past it: "incoming data exceed
    limit", and the connection is closed.
  --lenient            log the error and keep reading instead (the old behaviour)
Strings that are not valid UTF-8 are kept with surrogateescape (json escapes them as
\\udcXX; decode with .encode("utf-8", "surrogateescape")).

Usage: forward_receiver.py --out FILE [--host 127.0.0.1] [--port 0] [--unix PATH] [switches]
Scripted misbehaviour, for delivery tests:
  --stall S            each connection is accepted but not read for S seconds (slow aggregator)
  --throttle BPS       read at most BPS bytes per second, steadily, on every connection
  --stall-every N --stall-for S  stop reading for S seconds after each N bytes read
  --close-after-requests N  close each connection after its N-th request (after the ack)
  --idle-close S       close a connection that sent nothing for S seconds
  --ack-delay S        each ack is sent S seconds late
  --wrong-acks N       the first N acks carry a wrong chunk id
  --drop-acks N        the first N requests with a chunk get no ack at all
  --bad-replies N      the first N requests with a chunk get a reply that is not an ack
  --close-after-bytes N  the first connection is closed after N bytes (mid-batch)
  --rcvbuf N           SO_RCVBUF of every connection (a small one fills up sooner)
Shared-key authentication (spec v1 handshake: HELO, PING, PONG):
  --shared-key K       require the handshake; each outcome is written as an {"auth": ...} line
  --nonce-type bin|str send HELO nonce/auth as bin (Fluentd, default) or str (Fluent Bit)
  --no-keepalive       HELO says keepalive=false and the connection is closed after its
                       first request (Fluentd's deny_keepalive)
  --user NAME:PASSWORD also require user authentication (HELO carries an auth salt)
  --server-hostname H  our hostname in the PONG (default "receiver")
  --bad-pong-digest    answer with a wrong digest (a client must refuse it)
  --close-on-refusal   refuse a PING by closing the connection, with no PONG (as Fluent Bit)
TLS (Python's ssl module, OpenSSL: TLS 1.3 servers send two session tickets after the
handshake, which a client that closes without reading them has unread):
  --tls-cert F --tls-key F   serve TLS with this certificate
  --tls-client-ca F          require a client certificate signed by this CA
  --tls-max 1.1|1.2|1.3      the highest TLS version offered (default 1.3; 1.1 offers
                             TLS 1.1 only, at OpenSSL security level 0)
  --tls-close-notify         send close_notify before each close of a connection
  --tls-tickets N            TLS 1.3 session tickets sent after the handshake (default 2,
                             OpenSSL's)
  A failed TLS handshake is written as an {"auth": "tls failed: ..."} line.
Prints "LISTENING <port-or-path>" on stdout once it accepts connections.
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import warnings
import zlib

import msgpack


class EventTime:
    __slots__ = ("sec", "nsec")

    def __init__(self, sec, nsec):
        self.sec, self.nsec = sec, nsec


class Violation(ValueError):
    """A request the strict receiver refuses: written as an error, then the connection is
    closed (unless --lenient)."""


class TooBig(Violation):
    """Past --max-message-size: the connection is closed even with --lenient."""


def ext_hook(code, data):
    # Spec: EventTime is ext type 0 with 8 bytes: uint32 BE seconds, uint32 BE nanoseconds.
    # (check_time refuses anything else where a time belongs, and nanoseconds >= 10^9.)
    if code == 0 and len(data) == 8:
        return EventTime(*struct.unpack(">II", data))
    return msgpack.ExtType(code, data)


def unpacker(limit):
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=ext_hook,
                            strict_map_key=False,
                            max_buffer_size=max(limit, 1 << 20) * 2 if limit else 256 << 20)


class Sink:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8", errors="surrogateescape")
        self.lock = threading.Lock()

    def write(self, objs):
        if not objs:
            return
        lines = "".join(json.dumps(o, ensure_ascii=True) + "\n" for o in objs)
        with self.lock:
            self.f.write(lines)
            self.f.flush()


def check_time(t):
    if isinstance(t, EventTime):
        if t.nsec >= 1000000000:
            raise Violation("EventTime nanoseconds %d not below 10^9" % t.nsec)
        return [t.sec, t.nsec], "eventtime"
    if isinstance(t, int) and not isinstance(t, bool) and t >= 0:
        return t, "int"
    raise Violation("time must be an integer or EventTime, got %r" % (t,))


def check_record(r):
    if not isinstance(r, dict):
        raise Violation("record must be a map, got %s" % type(r).__name__)
    for k in r:
        if not isinstance(k, str):
            raise Violation("record key must be a string, got %r" % (k,))
    return r


def event(tag, t, r, mode, conn):
    tv, tt = check_time(t)
    return {"tag": tag, "time": tv, "time_type": tt, "record": check_record(r), "mode": mode,
            "conn": conn}


class Script:
    """Options and the counters of the scripted misbehaviour, shared by all connections."""

    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.acks = 0
        self.chunks = 0
        self.replies = 0
        self.reqs = 0
        self.run = os.getpid()  # tells a restarted receiver's connections apart
        self.tls = None

    def take(self, attr):
        with self.lock:
            v = getattr(self, attr)
            setattr(self, attr, v + 1)
            return v


def check_option(option):
    if option is None:
        return None  # Fluent Bit: "Old Docker 18.x sends a NULL options parameter"
    if not isinstance(option, dict):
        raise Violation("option must be a map or nil, got %s" % type(option).__name__)
    if "chunk" in option and not isinstance(option["chunk"], str):
        raise Violation("option chunk must be a str (Fluent Bit closes otherwise), got %s"
                        % type(option["chunk"]).__name__)
    if "size" in option and (not isinstance(option["size"], int) or
                             isinstance(option["size"], bool) or option["size"] < 0):
        raise Violation("option size must be a non-negative integer, got %r" % (option["size"],))
    if option.get("compressed", "text") not in ("gzip", "text"):
        raise Violation("option compressed must be gzip or text, got %r" % (option["compressed"],))
    return option


def gunzip(data, limit):
    """Every gzip member of data (concatenated members are one stream), at most limit bytes
    out (Fluent Bit caps the decompressed size at buffer_max_size too)."""
    out, rest = [], data
    total = 0
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        piece = d.decompress(rest, limit + 1 - total if limit else 0)
        total += len(piece)
        if limit and total > limit:
            raise TooBig("incoming data exceed limit: decompressed past %d bytes" % limit)
        if not d.eof:
            raise Violation("gzip payload cut short")
        out.append(piece)
        rest = d.unused_data
    return b"".join(out)


def handle_request(req, conn_id, a):
    """Return (events, ack_value or None) for one decoded request."""
    if not isinstance(req, list):
        raise Violation("request must be an array, got %s (Fluent Bit closes the connection)"
                        % type(req).__name__)
    if len(req) < 2 or not isinstance(req[0], str):
        raise Violation("request must be [tag(str), ...], got %r" % (req[:1],))
    tag, second = req[0], req[1]
    events = []
    if isinstance(second, (int, EventTime)) and not isinstance(second, bool):
        if len(req) not in (3, 4):
            raise Violation("Message mode needs 3 or 4 elements, got %d" % len(req))
        option = check_option(req[3] if len(req) == 4 else None)
        events.append(event(tag, second, req[2], "Message", conn_id))
    elif isinstance(second, list):
        if len(req) not in (2, 3):
            raise Violation("Forward mode needs 2 or 3 elements")
        option = check_option(req[2] if len(req) == 3 else None)
        for e in second:
            if not isinstance(e, list) or len(e) != 2:
                raise Violation("Forward entry must be [time, record]")
            events.append(event(tag, e[0], e[1], "Forward", conn_id))
    elif isinstance(second, (bytes, str)):
        if len(req) not in (2, 3):
            raise Violation("PackedForward needs 2 or 3 elements, got %d" % len(req))
        option = check_option(req[2] if len(req) == 3 else None)
        if isinstance(second, str) and not a.allow_str_entries:
            raise Violation("PackedForward entries must be bin, got str")
        if not a.allow_missing_size and (option is None or "size" not in option):
            raise Violation("PackedForward without a size option")
        data = second if isinstance(second, bytes) else second.encode("utf-8", "surrogateescape")
        mode = "PackedForward"
        if isinstance(option, dict) and option.get("compressed") == "gzip":
            mode = "CompressedPackedForward"
            try:
                data = gunzip(data, a.max_message_size)
            except (zlib.error, EOFError) as e:
                raise Violation("gzip: %s" % e)
        u = unpacker(a.max_message_size)
        u.feed(data)
        for e in u:
            if not isinstance(e, list) or len(e) != 2:
                raise Violation("packed entry must be [time, record], got %r" % (e,))
            events.append(event(tag, e[0], e[1], mode, conn_id))
        if u.tell() != len(data):
            raise Violation("packed entries end in a cut entry (%d of %d bytes decoded)"
                            % (u.tell(), len(data)))
    else:
        raise Violation("cannot tell the mode from a %s second element" % type(second).__name__)
    ack = None
    if isinstance(option, dict):
        if "size" in option and option["size"] != len(events):
            raise Violation("option size %r but %d entries" % (option["size"], len(events)))
        ack = option.get("chunk")
    return events, ack


def sha512_hex(*parts):
    return hashlib.sha512(b"".join(parts)).hexdigest()


def handshake(sock, u, a, sink, conn_id):
    """Server side of the spec v1 handshake. Returns True when the client may send data."""
    nonce, auth = os.urandom(16), (os.urandom(16) if a.user else b"")
    helo = {"nonce": nonce, "auth": auth}
    if a.nonce_type == "bin":
        # Fluentd: bin nonce and auth, with keepalive (false with deny_keepalive)
        helo["keepalive"] = not a.no_keepalive
        sock.sendall(msgpack.packb(["HELO", helo], use_bin_type=True))
    else:
        # Fluent Bit: the raw bytes packed as str (use_bin_type=False), no keepalive
        sock.sendall(msgpack.packb(["HELO", helo], use_bin_type=False))
    ping = None
    while ping is None:
        data = sock.recv(4096)
        if not data:
            sink.write([{"auth": "client closed before PING", "conn": conn_id}])
            return False
        u.feed(data)
        for obj in u:
            ping = obj
            break

    def refuse(reason):
        sink.write([{"auth": "refused: " + reason, "conn": conn_id}])
        if not a.close_on_refusal:
            sock.sendall(msgpack.packb(["PONG", False, reason, "", ""]))
        return False

    # Like Fluent Bit: exactly 6 elements, every one a str.
    if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING" and
            all(isinstance(x, str) for x in ping)):
        return refuse("invalid ping message")
    _, host, salt, digest, user, pwdigest = ping
    enc = lambda s: s.encode("utf-8", "surrogateescape")  # noqa: E731
    if digest != sha512_hex(enc(salt), enc(host), nonce, a.shared_key.encode()):
        return refuse("shared_key mismatch")
    if a.user:
        name, pw = a.user.split(":", 1)
        if user != name or pwdigest != sha512_hex(auth, name.encode(), pw.encode()):
            return refuse("username/password mismatch")
    mine = sha512_hex(enc(salt), a.server_hostname.encode(), nonce, a.shared_key.encode())
    if a.bad_pong_digest:
        mine = "0" * 128
    sock.sendall(msgpack.packb(["PONG", True, "", a.server_hostname, mine]))
    sink.write([{"auth": "ok", "client": host, "conn": conn_id}])
    return True


class Pacer:
    """Reads on a schedule: --throttle (steady bytes per second) and --stall-every/--stall-for."""

    def __init__(self, a):
        self.a = a
        self.t0 = time.monotonic()
        self.got = 0
        self.next_stall = a.stall_every

    def size(self):
        if self.a.throttle:
            return max(1, min(1 << 16, self.a.throttle // 20))
        return 1 << 20

    def account(self, n):
        self.got += n
        if self.a.throttle:
            ahead = self.got / self.a.throttle - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)
        if self.a.stall_every and self.got >= self.next_stall:
            self.next_stall += self.a.stall_every
            time.sleep(self.a.stall_for)
            self.t0 += self.a.stall_for


def close(sock, sc):
    """Close a connection; with --tls-close-notify, a TLS one sends close_notify first."""
    if sc.a.tls_close_notify and isinstance(sock, ssl.SSLSocket):
        try:
            sock.settimeout(2)
            sock.unwrap()
        except (ssl.SSLError, OSError):
            pass
    sock.close()


def serve_conn(sock, sink, conn_id, sc):
    a = sc.a
    limit = a.max_message_size
    u = unpacker(limit)
    got = 0
    if sc.tls is not None:
        try:
            sock = sc.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sink.write([{"auth": "tls failed: %s" % e, "conn": conn_id}])
            sock.close()
            return
    if a.stall:
        time.sleep(a.stall)
    if a.shared_key and not handshake(sock, u, a, sink, conn_id):
        # give the client time to read the PONG before the close
        time.sleep(0.1)
        close(sock, sc)
        return
    if a.idle_close:
        sock.settimeout(a.idle_close)
    pacer = Pacer(a)
    nreq = 0
    fed = 0  # bytes fed to u; fed - u.tell() is the request being read

    def refuse(msg):
        sink.write([{"error": msg, "conn": conn_id}])

    try:
        while True:
            try:
                data = sock.recv(pacer.size())
            except socket.timeout:
                return  # --idle-close
            if not data:
                return
            pacer.account(len(data))
            close_now = False
            if a.close_after_bytes and conn_id == 1 and got + len(data) > a.close_after_bytes:
                data = data[:a.close_after_bytes - got]
                close_now = True
            got += len(data)
            u.feed(data)
            fed += len(data)
            while True:
                start = u.tell()
                try:
                    req = u.unpack()
                except msgpack.OutOfData:
                    break
                except (ValueError, msgpack.UnpackException) as e:
                    refuse("undecodable request: %s" % e)
                    return
                if limit and u.tell() - start > limit:
                    refuse("incoming data exceed limit: a request of %d bytes, limit %d"
                           % (u.tell() - start, limit))
                    return
                try:
                    evs, ack = handle_request(req, conn_id, a)
                except TooBig as e:
                    refuse(str(e))
                    return
                except Violation as e:
                    refuse(str(e))
                    if a.lenient:
                        continue
                    return
                req_id = sc.take("reqs")
                for e in evs:
                    e["req"], e["run"] = req_id, sc.run
                    if ack is not None:
                        e["chunk"] = ack
                sink.write(evs)  # on disk before the ack goes out
                nreq += 1
                if ack is not None and sc.take("chunks") >= a.drop_acks:
                    if a.ack_delay:
                        time.sleep(a.ack_delay)
                    if sc.take("replies") < a.bad_replies:
                        reply = {"status": "ok", "chunk": ack}  # a map, but not an ack
                    elif sc.take("acks") < a.wrong_acks:
                        reply = {"ack": "wrong" + str(ack)}
                    else:
                        reply = {"ack": ack}
                    sock.sendall(msgpack.packb(reply))
                if a.close_after_requests and nreq >= a.close_after_requests:
                    return
                if a.no_keepalive:
                    return  # Fluentd deny_keepalive: closes after the first message
            if limit and fed - u.tell() > limit:
                refuse("incoming data exceed limit: more than %d bytes without a whole request"
                       % limit)
                return
            if close_now:
                return
    except (ConnectionError, OSError):
        return
    except Exception as e:  # noqa: BLE001
        refuse("stream: %s" % e)
    finally:
        close(sock, sc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--lenient", action="store_true")
    ap.add_argument("--allow-str-entries", action="store_true")
    ap.add_argument("--allow-missing-size", action="store_true")
    ap.add_argument("--max-message-size", type=int, default=6144000)
    ap.add_argument("--stall", type=float, default=0)
    ap.add_argument("--throttle", type=int, default=0)
    ap.add_argument("--stall-every", type=int, default=0)
    ap.add_argument("--stall-for", type=float, default=1.0)
    ap.add_argument("--close-after-requests", type=int, default=0)
    ap.add_argument("--idle-close", type=float, default=0)
    ap.add_argument("--ack-delay", type=float, default=0)
    ap.add_argument("--wrong-acks", type=int, default=0)
    ap.add_argument("--drop-acks", type=int, default=0)
    ap.add_argument("--bad-replies", type=int, default=0)
    ap.add_argument("--close-after-bytes", type=int, default=0)
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--shared-key")
    ap.add_argument("--nonce-type", choices=("bin", "str"), default="bin")
    ap.add_argument("--no-keepalive", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--server-hostname", default="receiver")
    ap.add_argument("--bad-pong-digest", action="store_true")
    ap.add_argument("--close-on-refusal", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca")
    ap.add_argument("--tls-max", choices=("1.1", "1.2", "1.3"), default="1.3")
    ap.add_argument("--tls-close-notify", action="store_true")
    ap.add_argument("--tls-tickets", type=int, default=2)
    a = ap.parse_args()
    if a.unix:
        if os.path.exists(a.unix):
            os.unlink(a.unix)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(a.unix)
        where = a.unix
    else:
        fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        where = None
    if a.rcvbuf:  # before listen, so the window is sized from it; accepted sockets inherit it
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    if where is None:
        ls.bind((a.host, a.port))
        where = ls.getsockname()[1]
    ls.listen(256)
    sink = Sink(a.out)
    sc = Script(a)
    if a.tls_cert:
        sc.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.tls.load_cert_chain(a.tls_cert, a.tls_key)
        sc.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        if a.tls_max == "1.2":
            sc.tls.maximum_version = ssl.TLSVersion.TLSv1_2
        elif a.tls_max == "1.1":  # only below 1.2, which a client must refuse
            sc.tls.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                sc.tls.minimum_version = ssl.TLSVersion.TLSv1_1
                sc.tls.maximum_version = ssl.TLSVersion.TLSv1_1
        sc.tls.num_tickets = a.tls_tickets
        if a.tls_client_ca:
            sc.tls.verify_mode = ssl.CERT_REQUIRED
            sc.tls.load_verify_locations(a.tls_client_ca)
    print("LISTENING %s" % where, flush=True)
    n = 0
    while True:
        s, _ = ls.accept()
        n += 1
        threading.Thread(target=serve_conn, args=(s, sink, n, sc), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
