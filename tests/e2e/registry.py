"""A local Docker registry for the end-to-end tests: the release path (a plugin pushed and
then installed with `docker plugin install`, as users get it) and plugin upgrades.

Debian's docker-registry serves HTTP on 127.0.0.1 at a free port, with its storage in a
directory of its own. dockerd accepts 127.0.0.0/8 as an insecure registry by default, so
no daemon.json change and no certificate are needed. Nothing but loopback is used.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fwdtest  # noqa: E402


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, base, name="fwdlog"):
        """base: a directory that is removed with the test run (e.g. Dockerd.base)."""
        if shutil.which("docker-registry") is None:
            raise RegistryError("docker-registry not found: run `make deps` (Debian's "
                                "docker-registry)")
        self.name = name
        self.dir = os.path.join(base, "registry")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.log = os.path.join(self.dir, "registry.log")
        self.proc = None
        # free_port() can race with another process taking the port: try a few.
        for _ in range(5):
            self.port = fwdtest.free_port()
            if self._start():
                return
        raise RegistryError("docker-registry did not start:\n" + self.logtail())

    def _start(self):
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\n"
                    "log:\n  level: warn\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:%d\n" % (os.path.join(self.dir, "data"),
                                                      self.port))
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=fwdtest._die_with_parent)
        logf.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/v2/" % self.port,
                                            timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        return False

    def ref(self, tag):
        """The plugin reference for tag, e.g. 127.0.0.1:40123/fwdlog:v1."""
        return "127.0.0.1:%d/%s:%s" % (self.port, self.name, tag)

    def tags(self):
        url = "http://127.0.0.1:%d/v2/%s/tags/list" % (self.port, self.name)
        with urllib.request.urlopen(url, timeout=5) as r:
            return sorted(json.load(r).get("tags") or [])

    def logtail(self, n=20):
        return fwdtest.tail(self.log, n)

    def stop(self):
        if self.proc is not None:
            fwdtest.terminate(self.proc, timeout=10)
        self.proc = None
