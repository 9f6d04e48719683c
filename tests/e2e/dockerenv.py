"""A Docker daemon for fwdlog's end-to-end tests and demo.

By default it starts a private dockerd (its own data-root, exec-root, pidfile and socket
under a temporary directory) with container networking off (--bridge=none
--iptables=false --ip-masq=false); containers run with --network none and the only
addresses used are loopback. It never touches a Docker daemon it did not start, unless
FWDLOG_E2E_DOCKER_HOST names one (e.g. unix:///var/run/docker.sock) to use instead.
The image is imported from Debian's busybox-static (docker import), no registry needed.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fwdtest  # noqa: E402

IMAGE = "fwdtest-busybox:latest"
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class DockerError(RuntimeError):
    pass


class Dockerd:
    def __init__(self):
        self.external = os.environ.get("FWDLOG_E2E_DOCKER_HOST")
        self.proc = None
        if self.external:
            self.host = self.external
            self.base = tempfile.mkdtemp(prefix="fwde2e-")
        else:
            if os.geteuid() != 0:
                raise DockerError("the end-to-end tests start a private dockerd and need root "
                                  "(or set FWDLOG_E2E_DOCKER_HOST to a daemon to use)")
            if shutil.which("dockerd") is None:
                raise DockerError("dockerd not found: run `make deps` (Debian's docker.io)")
            # short: containerd's socket lives under exec-root (108-byte sun_path)
            self.base = tempfile.mkdtemp(prefix="fwde2e-", dir="/tmp")
            self.host = "unix://%s/docker.sock" % self.base
        self.env = dict(os.environ, DOCKER_HOST=self.host)
        self.log = os.path.join(self.base, "dockerd.log")
        self.registry = None
        self.timings = {}

    # ---- lifecycle --------------------------------------------------------------
    def start(self, config=None):
        if self.external:
            self._wait_ready()
            return
        cfg = os.path.join(self.base, "daemon.json")
        with open(cfg, "w") as f:
            json.dump(config or {}, f)
        args = ["dockerd", "--config-file", cfg, "--bridge=none", "--iptables=false",
                "--ip-masq=false", "--data-root", os.path.join(self.base, "root"),
                "--exec-root", os.path.join(self.base, "exec"),
                "--pidfile", os.path.join(self.base, "dockerd.pid"), "-H", self.host]
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        self._wait_ready()

    def _wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DockerError("dockerd exited:\n" + self.logtail())
            if self.docker("info", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise DockerError("dockerd not ready after %ss:\n%s" % (timeout, self.logtail()))

    def stop(self):
        if self.proc is None:
            return
        fwdtest.terminate(self.proc, timeout=60)
        self.proc = None

    def restart(self, config=None):
        self.stop()
        self.start(config)

    def cleanup(self):
        """Stop a private daemon (and the registry) and remove everything they had."""
        if self.registry is not None:
            self.registry.stop()
        if self.external:
            self.docker("plugin", "rm", "-f", "fwdlog", check=False)
            shutil.rmtree(self.base, ignore_errors=True)
            return
        self.stop()
        # Unmount anything dockerd left mounted under its directories, deepest first.
        with open("/proc/self/mounts") as f:
            mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(self.base)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def logtail(self, n=40):
        return fwdtest.tail(self.log, n)

    # ---- commands ---------------------------------------------------------------
    def docker(self, *args, check=True, timeout=120, input=None):
        r = subprocess.run(["docker"] + list(args), env=self.env, capture_output=True,
                           text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise DockerError("docker %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                              r.stderr.strip()))
        return r

    def make(self, *targets, timeout=300):
        san = os.environ.get("SAN", "")
        r = subprocess.run(["make", "--no-print-directory"] + (["SAN=" + san] if san else []) +
                           list(targets), cwd=ROOT, env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise DockerError("make %s failed:\n%s%s" % (" ".join(targets), r.stdout, r.stderr))
        return r

    # ---- fixtures ---------------------------------------------------------------
    def import_busybox(self):
        if self.docker("image", "inspect", IMAGE, check=False).returncode == 0:
            return
        bb = "/bin/busybox"
        if subprocess.run(["ldd", bb], capture_output=True).returncode == 0:
            raise DockerError("%s is dynamically linked: install busybox-static" % bb)
        d = os.path.join(self.base, "img")
        os.makedirs(os.path.join(d, "bin"))
        shutil.copy(bb, os.path.join(d, "bin", "busybox"))
        for applet in ("sh", "echo", "seq", "sleep", "cat", "head", "tr", "yes", "printf"):
            os.symlink("busybox", os.path.join(d, "bin", applet))
        tar = subprocess.run(["tar", "-C", d, "-c", "."], capture_output=True, check=True)
        r = subprocess.run(["docker", "import", "-", IMAGE], env=self.env, input=tar.stdout,
                           capture_output=True)
        if r.returncode != 0:
            raise DockerError("docker import failed: %s" % r.stderr.decode())

    def plugin_starts(self):
        """How often fwdlogd started so far, by its own start line in dockerd's log."""
        try:
            with open(self.log) as f:
                return sum(1 for ln in f if "fwdlogd" in ln and " listening on " in ln)
        except OSError:
            return 0

    def plugin_id(self, name="fwdlog"):
        return self.docker("plugin", "inspect", "-f", "{{.Id}}", name).stdout.strip()

    def plugin_dir(self, name="fwdlog"):
        """The plugin's directory on the host (rootfs/, propagated-mount/)."""
        return os.path.join(self.base, "root", "plugins", self.plugin_id(name))

    def plugin_spool_segments(self):
        """The spool's segment files in the plugin's state directory (/run/docker/logging,
        its propagated mount), as the host sees them."""
        top = os.path.join(self.plugin_dir(), "propagated-mount", "spool")
        return sorted(glob.glob(os.path.join(top, "**", "*.seg"), recursive=True))

    def plugin_pid(self):
        """The pid of this dockerd's fwdlogd, or None while there is none: the process whose
        executable is the very file in this plugin's rootfs (same device and inode; the
        process lives in its own mount namespace, so paths cannot tell)."""
        try:
            want = os.stat(os.path.join(self.plugin_dir(), "rootfs", "usr", "bin", "fwdlogd"))
        except OSError:
            return None
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = os.stat("/proc/%s/exe" % d)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                return int(d)
        return None


    # ---- the plugin ---------------------------------------------------------------
    # FWDLOG_E2E_PLUGIN=release (make release-test) installs the plugin as users get it:
    # built from the Dockerfile, pushed to a local registry, `docker plugin install`ed.
    # Otherwise (make e2e) from `make plugin-local`. Either way the plugin's /etc/fwdlog
    # mount points at self.config_dir, where cases put CA files and secrets: a temporary
    # directory with the private daemon, the default /etc/fwdlog with a daemon of the
    # machine's (make demo leaves the plugin there, so its mount must outlive the run).
    def install_plugin(self):
        self.config_dir = (os.path.join(self.base, "etc-fwdlog") if not self.external
                           else "/etc/fwdlog")
        os.makedirs(self.config_dir, exist_ok=True)
        self.mode = os.environ.get("FWDLOG_E2E_PLUGIN", "local")
        if self.mode == "release":
            from registry import Registry
            self.registry = Registry(self.base)
            self.plugin_ref = self.publish_plugin(self.registry.ref("e2e"))
            self.install_from_registry(self.plugin_ref)
            # both variants' rootfs, for tests/e2e/rootfs.py
            self.release_rootfs = os.path.join(ROOT, "build", "plugin", "rootfs")
            self.make("plugin-rootfs-local", "PLUGIN_DIR=build/plugin-local")
            self.local_rootfs = os.path.join(ROOT, "build", "plugin-local", "rootfs")
        elif self.mode == "local":
            self.make("plugin-local")
            self.docker("plugin", "set", "fwdlog", "config.source=" + self.config_dir)
            self.make("plugin-enable")
        else:
            raise DockerError("FWDLOG_E2E_PLUGIN=%r: use local or release" % self.mode)

    def reinstall_plugin(self):
        """The suite's plugin again, as install_plugin made it (after a case replaced it)."""
        if self.mode == "release":
            self.install_from_registry(self.plugin_ref)
        else:
            self.make("plugin-local")
            self.docker("plugin", "set", "fwdlog", "config.source=" + self.config_dir)
            self.make("plugin-enable")

    def publish_plugin(self, ref, *make_vars):
        """What a maintainer does: `make plugin` (the Dockerfile's rootfs) as REF, then
        `docker plugin push REF`; the local copy is removed. make_vars: e.g. VERSION=..."""
        t0 = time.time()
        self.make("base-image", timeout=900)
        self.timings["base image"] = time.time() - t0
        t0 = time.time()
        self.make("plugin", "PLUGIN=" + ref, *make_vars, timeout=900)
        t1 = time.time()
        self.docker("plugin", "push", ref, timeout=600)
        self.docker("plugin", "rm", "-f", ref)
        self.timings["build"] = t1 - t0
        self.timings["push"] = time.time() - t1
        return ref

    def install_from_registry(self, ref, alias="fwdlog"):
        """What a user does: docker plugin install --alias fwdlog REF (it enables too),
        with the config mount's source set at install."""
        t0 = time.time()
        self.docker("plugin", "install", "--grant-all-permissions", "--alias", alias, ref,
                    "config.source=" + self.config_dir, timeout=600)
        self.timings["install"] = time.time() - t0

    def logtext(self):
        """dockerd's log so far (fwdlogd's stderr is in it)."""
        return fwdtest.tail(self.log)
