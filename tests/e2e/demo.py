#!/usr/bin/python3
"""make demo: build and enable the fwdlog plugin, start a Forward receiver on 127.0.0.1,
run a sample container that logs through fwdlog, and print the records that arrived.

Uses the Docker daemon the docker CLI reaches if there is one (the plugin is created,
or replaced, as `fwdlog` there, and left enabled); otherwise it starts a private dockerd
as the end-to-end tests do and removes it afterwards."""
import json
import time
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import fwdtest  # noqa: E402
from dockerenv import IMAGE, Dockerd  # noqa: E402


def main():
    existing = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if existing and not os.environ.get("FWDLOG_E2E_DOCKER_HOST"):
        os.environ["FWDLOG_E2E_DOCKER_HOST"] = os.environ.get("DOCKER_HOST",
                                                              "unix:///var/run/docker.sock")
    d = Dockerd()
    tmp = fwdtest.tmpdir()
    recv = None
    try:
        print("== Docker: %s" % ("the running daemon (%s)" % d.host if d.external
                                 else "a private dockerd (none was running)"))
        d.start()
        d.import_busybox()
        print("== Building the plugin from this checkout and enabling it (make plugin-local "
              "plugin-enable)")
        d.install_plugin()
        recv = fwdtest.Receiver(tmp)
        print("== Forward receiver listening on 127.0.0.1:%d" % recv.port)
        cmd = ["run", "--rm", "--network", "none", "--name", "fwdlog-demo",
               "--label", "app=demo", "--log-driver", "fwdlog",
               "--log-opt", "fluentd-address=127.0.0.1:%d" % recv.port,
               "--log-opt", "tag=demo.{{.Name}}", "--log-opt", "labels=app",
               IMAGE, "sh", "-c",
               "echo hello from a container; echo this line went to stderr >&2; seq 1 3"]
        print("== docker " + " ".join(a if " " not in a else repr(a) for a in cmd))
        out = d.docker(*cmd)
        sys.stdout.write(out.stdout)
        evs = recv.wait(5, timeout=15)
        print("\n== The receiver got %d records:" % len(evs))
        for e in sorted(evs, key=lambda e: e["time"]):
            sec, nsec = e["time"]
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % nsec
            print("%s  %s  %s" % (e["tag"], when, json.dumps(e["record"])))
        print("""
What happened: dockerd handed the container's stdout and stderr to fwdlog through a FIFO;
fwdlog turned each line into the same record Docker's built-in fluentd driver makes
(container_id, container_name, source, log, plus the 'app' label), batched them and sent
them over the Fluentd Forward protocol to the receiver on 127.0.0.1.

To use a real Fluentd or Fluent Bit, point fluentd-address at its forward input:
  docker run --log-driver fwdlog --log-opt fluentd-address=fluentd.example:24224 ...
or set it once for every container:
  docker plugin disable fwdlog && docker plugin set fwdlog FLUENTD_ADDRESS=fluentd.example:24224
  docker plugin enable --timeout 0 fwdlog""")
        if d.external:
            print("\nThe plugin stays enabled as 'fwdlog' (remove it: make plugin-rm).")
        return 0 if len(evs) == 5 else 1
    finally:
        if recv is not None:
            recv.stop()
        if not d.external:
            d.cleanup()
        else:
            shutil.rmtree(d.base, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
