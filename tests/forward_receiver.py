#!/usr/bin/python3
"""A Fluentd Forward protocol v1 receiver for fwdlog's tests, written from the spec
(https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1), not from
fwdlog's sender, and decoded with Debian's python3-msgpack.

It accepts Message, Forward, PackedForward and CompressedPackedForward (gzip, also
concatenated gzip members), answers {"ack": chunk} when a request carries a chunk
option, ignores non-array requests (nil heartbeats) as the spec says, and writes each
event as one JSON line:

  {"tag": ..., "time": [sec, nsec] | sec, "time_type": "eventtime"|"int",
   "record": {...}, "mode": "Message"|"Forward"|"PackedForward"|"CompressedPackedForward",
   "conn": N, "req": M, "run": PID, "chunk": ...}

conn numbers the connections and req the requests (both from the first, across all
connections; run tells a restarted receiver's apart); chunk is there when the request carried one.

Everything that breaks the spec (wrong types, a size option that does not match the
entries, undecodable bytes) becomes a {"error": "..."} line, so tests can assert there
are none. Strings that are not valid UTF-8 are kept with surrogateescape (json escapes
them as \\udcXX; decode with .encode("utf-8", "surrogateescape")).

Usage: forward_receiver.py --out FILE [--host 127.0.0.1] [--port 0] [--unix PATH]
                           [--stall SECONDS] [--ack-delay SECONDS] [--wrong-acks N]
                           [--drop-acks N] [--close-after-bytes N]
Scripted misbehaviour, for delivery tests:
  --stall S            each connection is accepted but not read for S seconds (slow aggregator)
  --ack-delay S        each ack is sent S seconds late
  --wrong-acks N       the first N acks carry a wrong chunk id
  --drop-acks N        the first N requests with a chunk get no ack at all
  --close-after-bytes N  the first connection is closed after N bytes (mid-batch)
  --rcvbuf N           SO_RCVBUF of every connection (a small one fills up sooner)
Events are written to the file before their ack is sent, so an acknowledged event is on disk.
Shared-key authentication (spec v1 handshake: HELO, PING, PONG):
  --shared-key K       require the handshake; each outcome is written as an {"auth": ...} line
  --nonce-type bin|str send HELO nonce/auth as bin (Fluentd, default) or str (Fluent Bit)
  --user NAME:PASSWORD also require user authentication (HELO carries an auth salt)
  --server-hostname H  our hostname in the PONG (default "receiver")
  --bad-pong-digest    answer with a wrong digest (a client must refuse it)
TLS (Python's ssl module):
  --tls-cert F --tls-key F   serve TLS with this certificate
  --tls-client-ca F          require a client certificate signed by this CA
  A failed TLS handshake is written as an {"auth": "tls failed: ..."} line.
Prints "LISTENING <port-or-path>" on stdout once it accepts connections.
"""
import argparse
import gzip
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

import msgpack


class EventTime:
    __slots__ = ("sec", "nsec")

    def __init__(self, sec, nsec):
        self.sec, self.nsec = sec, nsec


def ext_hook(code, data):
    # Spec: EventTime is ext type 0 with 8 bytes: uint32 BE seconds, uint32 BE nanoseconds.
    if code == 0 and len(data) == 8:
        sec, nsec = struct.unpack(">II", data)
        return EventTime(sec, nsec)
    return msgpack.ExtType(code, data)


def unpacker():
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=ext_hook,
                            strict_map_key=False, max_buffer_size=64 * 1024 * 1024)


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
        return [t.sec, t.nsec], "eventtime"
    if isinstance(t, int) and not isinstance(t, bool) and t >= 0:
        return t, "int"
    raise ValueError("time must be an integer or EventTime, got %r" % (t,))


def check_record(r):
    if not isinstance(r, dict):
        raise ValueError("record must be a map, got %s" % type(r).__name__)
    for k in r:
        if not isinstance(k, str):
            raise ValueError("record key must be a string, got %r" % (k,))
    return r


def event(tag, t, r, mode, conn):
    tv, tt = check_time(t)
    return {"tag": tag, "time": tv, "time_type": tt, "record": check_record(r), "mode": mode,
            "conn": conn}


class Script:
    """Counters for the scripted misbehaviour, shared by all connections."""

    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.acks = 0
        self.chunks = 0
        self.reqs = 0
        self.run = os.getpid()  # tells a restarted receiver's connections apart
        self.first_conn_closed = False

    def take(self, attr):
        with self.lock:
            v = getattr(self, attr)
            setattr(self, attr, v + 1)
            return v


def handle_request(req, conn_id):
    """Return (events, ack_value or None) for one decoded request."""
    if not isinstance(req, list):
        return [], None  # spec: "SHOULD ignore any request value other than array"
    if len(req) < 2 or not isinstance(req[0], str):
        raise ValueError("request must be [tag(str), ...], got %r" % (req[:1],))
    tag, second = req[0], req[1]
    events = []
    if isinstance(second, (int, EventTime)) and not isinstance(second, bool):
        if len(req) not in (3, 4):
            raise ValueError("Message mode needs 3 or 4 elements, got %d" % len(req))
        option = req[3] if len(req) == 4 else None
        events.append(event(tag, second, req[2], "Message", conn_id))
    elif isinstance(second, list):
        if len(req) not in (2, 3):
            raise ValueError("Forward mode needs 2 or 3 elements")
        option = req[2] if len(req) == 3 else None
        for e in second:
            if not isinstance(e, list) or len(e) != 2:
                raise ValueError("Forward entry must be [time, record]")
            events.append(event(tag, e[0], e[1], "Forward", conn_id))
    elif isinstance(second, (bytes, str)):
        if len(req) not in (2, 3):
            raise ValueError("PackedForward needs 2 or 3 elements")
        option = req[2] if len(req) == 3 else None
        data = second if isinstance(second, bytes) else second.encode("utf-8", "surrogateescape")
        mode = "PackedForward"
        if isinstance(option, dict) and option.get("compressed") == "gzip":
            mode = "CompressedPackedForward"
            data = gzip.decompress(data)  # handles concatenated members
        u = unpacker()
        u.feed(data)
        for e in u:
            if not isinstance(e, list) or len(e) != 2:
                raise ValueError("packed entry must be [time, record], got %r" % (e,))
            events.append(event(tag, e[0], e[1], mode, conn_id))
    else:
        raise ValueError("cannot tell the mode from a %s second element" % type(second).__name__)
    if option is not None and not isinstance(option, dict):
        raise ValueError("option must be a map or nil")
    ack = None
    if isinstance(option, dict):
        if "size" in option and option["size"] != len(events):
            raise ValueError("option size %r but %d entries" % (option["size"], len(events)))
        ack = option.get("chunk")
    return events, ack


def sha512_hex(*parts):
    return hashlib.sha512(b"".join(parts)).hexdigest()


def handshake(sock, u, a, sink, conn_id):
    """Server side of the spec v1 handshake. Returns True when the client may send data."""
    nonce, auth = os.urandom(16), (os.urandom(16) if a.user else b"")
    helo = {"nonce": nonce, "auth": auth}
    if a.nonce_type == "bin":
        # Fluentd: bin nonce and auth, with keepalive
        helo["keepalive"] = True
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


def serve_conn(sock, sink, conn_id, sc):
    a = sc.a
    u = unpacker()
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
        sock.close()
        return
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return
            if a.close_after_bytes and conn_id == 1 and got + len(data) > a.close_after_bytes:
                u.feed(data[:a.close_after_bytes - got])
                data = b""
                close_now = True
            else:
                close_now = False
            got += len(data)
            u.feed(data)
            for req in u:
                try:
                    evs, ack = handle_request(req, conn_id)
                except Exception as e:  # noqa: BLE001 - report, keep serving
                    sink.write([{"error": str(e), "conn": conn_id}])
                    continue
                req_id = sc.take("reqs")
                for e in evs:
                    e["req"], e["run"] = req_id, sc.run
                    if ack is not None:
                        e["chunk"] = ack
                sink.write(evs)  # on disk before the ack goes out
                if ack is None:
                    continue
                if sc.take("chunks") < a.drop_acks:
                    continue
                if a.ack_delay:
                    time.sleep(a.ack_delay)
                if sc.take("acks") < a.wrong_acks:
                    ack = "wrong" + str(ack)
                sock.sendall(msgpack.packb({"ack": ack}))
            if close_now:
                return
    except (ConnectionError, OSError):
        return
    except Exception as e:  # noqa: BLE001
        sink.write([{"error": "stream: %s" % e, "conn": conn_id}])
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--stall", type=float, default=0)
    ap.add_argument("--ack-delay", type=float, default=0)
    ap.add_argument("--wrong-acks", type=int, default=0)
    ap.add_argument("--drop-acks", type=int, default=0)
    ap.add_argument("--close-after-bytes", type=int, default=0)
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--shared-key")
    ap.add_argument("--nonce-type", choices=("bin", "str"), default="bin")
    ap.add_argument("--user")
    ap.add_argument("--server-hostname", default="receiver")
    ap.add_argument("--bad-pong-digest", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca")
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
        if a.rcvbuf:  # before listen, so the window is sized from it; accepted sockets inherit it
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        ls.bind((a.host, a.port))
        where = ls.getsockname()[1]
    ls.listen(256)
    sink = Sink(a.out)
    sc = Script(a)
    sc.tls = None
    if a.tls_cert:
        sc.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.tls.load_cert_chain(a.tls_cert, a.tls_key)
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
