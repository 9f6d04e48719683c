"""What fwdlogd opens at run time inside a plugin rootfs, not only what ldd prints.

trace(rootfs, tmp) runs /usr/bin/fwdlogd from a copy of a plugin rootfs (chroot, as root,
under strace -ff for open/openat), with the env of the config.json beside it and the
host's /etc/hosts and /etc/resolv.conf, as dockerd gives them to a managed plugin. It has fwdlogd resolve a host name
(localhost) and send 100 lines over TLS with a CA file, waits past the resolver thread's
idle exit and stops it with SIGTERM. It returns (opened, missing, failure): the files
fwdlogd opened, the shared objects it looked for and never found, and None or what went
wrong (e.g. fwdlogd aborting after the lookup for want of libgcc_s). Everything it talks
to is on 127.0.0.1.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fwdtest  # noqa: E402

OPEN = re.compile(r'^(?:open|openat)\((?:[^"]*, )?"([^"]+)", [^)]*\) = (-?\d+)')
# Opened by fwdlogd for its own work or by the test, not loaded from the image.
IGNORED = ("/proc/", "/sys/", "/dev/", "/run/docker/", "/var/lib/fwdlog", "/tmp/",
           "/etc/fwdlog/")


class TraceError(RuntimeError):
    pass


def _key(path):
    """Shared objects by file name (the two rootfs variants may keep them in /lib or
    /usr/lib); everything else by path."""
    base = os.path.basename(path)
    return "so " + base if re.search(r"\.so(\.\d+)*$", base) else path


def parse(trace_dir):
    """(opened, missing): the keys fwdlogd opened, and the shared objects it looked for and
    never found."""
    opened, tried = set(), set()
    for name in sorted(os.listdir(trace_dir)):
        with open(os.path.join(trace_dir, name)) as f:
            lines = f.read().splitlines()
        # The first process is chroot(8) from the host: skip what it opens before it
        # executes fwdlogd.
        for i, ln in enumerate(lines):
            if ln.startswith('execve("/usr/bin/fwdlogd"'):
                lines = lines[i + 1:]
                break
        for ln in lines:
            m = OPEN.match(ln)
            if not m or m.group(1).startswith(IGNORED):
                continue
            k = _key(m.group(1))
            (opened if int(m.group(2)) >= 0 else tried).add(k)
    # A file looked for in vain can be normal (an optional config file); a shared object
    # never found is a crash waiting, or a feature gone.
    return opened, {k for k in tried - opened if k.startswith("so ")}


def _chrooted_pid(root):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink("/proc/%s/root" % p) == root:
                    return int(p)
            except OSError:
                pass
    return None


def trace(rootfs, tmp, name_lookup="localhost"):
    if shutil.which("strace") is None:
        raise TraceError("strace not found: run `make deps`")
    root = os.path.join(tmp, "root")
    subprocess.run(["cp", "-a", rootfs, root], check=True)
    for f in ("hosts", "resolv.conf"):
        dst = os.path.join(root, "etc", f)
        if os.path.lexists(dst):
            os.unlink(dst)
        shutil.copy("/etc/" + f, dst)
    for d in ("etc/fwdlog", "run/docker/plugins", "run/docker/logging", "var/lib/fwdlog"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    pki = fwdtest.make_certs(tmp)
    shutil.copy(pki["ca.pem"], os.path.join(root, "etc/fwdlog/ca.crt"))
    recv = fwdtest.Receiver(tmp, tls_cert=pki["server.pem"], tls_key=pki["server.key"])
    traces = os.path.join(tmp, "trace")
    os.makedirs(traces)
    log = open(os.path.join(tmp, "fwdlogd.log"), "w")
    # the environment dockerd gives the plugin: config.json's env values
    with open(os.path.join(os.path.dirname(rootfs), "config.json")) as f:
        env = {e["name"]: e["value"] for e in json.load(f)["env"] if e.get("value")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    proc = subprocess.Popen(["strace", "-ff", "-qq", "-e", "trace=open,openat,execve", "-o",
                             os.path.join(traces, "t"), "chroot", root, "/usr/bin/fwdlogd"],
                            env=env,
                            stdout=log, stderr=log, preexec_fn=fwdtest._die_with_parent)
    fifo, failure = None, None
    try:
        sock = os.path.join(root, "run/docker/plugins/fwdlog.sock")
        deadline = time.time() + 20
        while not os.path.exists(sock):
            if proc.poll() is not None or time.time() > deadline:
                raise TraceError("fwdlogd did not start in %s: %s" % (rootfs, _read(log)))
            time.sleep(0.05)
        api = fwdtest.PluginClient(sock)
        fifo = fwdtest.Fifo(os.path.join(root, "run/docker/logging"))
        inside = "/run/docker/logging/" + os.path.basename(fifo.path)
        st, body = api.start(inside, fwdtest.info("c" * 64, config={
            "fluentd-address": "tls://%s:%d" % (name_lookup, recv.port),
            "fluentd-tls-ca-file": "/etc/fwdlog/ca.crt"}))
        if body != {"Err": ""}:
            raise TraceError("StartLogging: %s" % body)
        fifo.write(b"".join(fwdtest.frame(source="stdout", time_nano=i + 1, line=b"l%d" % i)
                            for i in range(100)))
        got = recv.wait(100)
        if len(got) != 100 or recv.errors():
            raise TraceError("%d of 100 records arrived (%s): %s"
                             % (len(got), recv.errors(), _read(log)))
        # past anything a resolver does after the lookup (glibc's getaddrinfo_a thread
        # exited after 1 s idle, and its pthread_exit loaded libgcc_s)
        time.sleep(2.5)
        pid = _chrooted_pid(root)
        if pid is None or proc.poll() is not None:
            raise TraceError("fwdlogd died after the lookup: %s" % _read(log))
        api.stop(inside)
        os.kill(pid, signal.SIGTERM)
        rc = proc.wait(30)
        if rc != 0:
            raise TraceError("fwdlogd exited %d: %s" % (rc, _read(log)))
    except (TraceError, OSError) as e:
        failure = str(e)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if fifo is not None:
            fifo.close()
        recv.stop()
        log.close()
    return parse(traces) + (failure,)


def _read(f):
    f.flush()
    return fwdtest.tail(f.name, 20)
