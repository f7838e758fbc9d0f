"""Process plumbing shared by the test drivers scripts/chaos.py and scripts/playground_test.py.

Python 3 standard library only. Each driver runs, in a temporary folder of its own, a redis-server, tether gateways
and workers (and whatever else it needs) as child processes that die with it even if it is SIGKILLed (setpriv
--pdeathsig), each restartable, its output appended to logs/<name>.log. What they have in common is here:

  free_port, http_request  a loopback port nobody listens on; one HTTP request to 127.0.0.1
  short                    a text cut to one line for a message
  Proc                     one child process: start (again), alive, kill, kill_group, the tail of its log
  Harness                  the base of a driver's harness: the temporary folder, its children and ports; a copy of
                           the tether binary; redis-server; the tether processes' environment; `tether keys
                           create`; waiting for an HTTP 200 on /healthz; removing (or, with --keep, keeping) the folder
  QuietHTTPServer          a threaded HTTP server run in the driver itself (a fake model, a tool endpoint, a proxy)
  run_harness              a driver's main: SIGINT, SIGTERM and SIGHUP interrupt the run, the harness always cleans up

Not a test driver itself: the drivers import it (each inserts its own folder into sys.path first).
"""

import http.client
import http.server
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETPRIV = shutil.which("setpriv")  # children die with us even if we are SIGKILLed (--pdeathsig)


def short(text, limit=240):
    text = str(text).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def free_port(taken):
    """A port nobody listens on at 127.0.0.1 and not in `taken`, which it is added to."""
    chooser = random.SystemRandom()
    for _ in range(500):
        # Below the ephemeral range (32768+), so no outgoing connection holds it when a process is restarted on it.
        port = chooser.randint(20000, 32000)
        if port in taken:
            continue
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        taken.add(port)
        return port
    raise RuntimeError("no free port")


def http_request(port, method, path, body=None, headers=None, timeout=10):
    """One request; returns (status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Child processes.


class Proc:
    """One child process, restartable, its output appended to logs/<name>.log in `directory`, which it runs in."""

    def __init__(self, directory, name, argv, env=None):
        self.directory = directory
        self.name = name
        self.argv = argv
        self.env = env
        self.log = os.path.join(directory, "logs", name + ".log")
        self.popen = None
        self.starts = 0

    def start(self):
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(("--- start %d at %s\n" % (self.starts, time.strftime("%H:%M:%S"))).encode())
            log.flush()
            argv = ([SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []) + self.argv
            self.popen = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.directory)

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill(self):
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()

    def kill_group(self):
        """The child and everything left in its process group (its own session: chromedriver's browsers, nginx's
        workers)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.kill()

    def tail(self, lines=6, needle=None):
        """The last `lines` lines of its log (of those that contain `needle`, if given)."""
        try:
            with open(self.log, "rb") as log:
                text = log.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        if needle is not None:
            text = [line for line in text if needle in line]
        return text[-lines:]


class Harness:
    """The base of a driver's harness. A subclass names `prog` (for its messages), `tmp_prefix` (of the temporary
    folder), `redis_key_prefix` (TETHER_PREFIX) and `tether_variables` (more environment for every tether process),
    and `proc_class` if its children need more than Proc. `args` must have `tether` and `keep`."""

    prog = "tether"
    tmp_prefix = "tether."
    redis_key_prefix = "tether"
    tether_variables = {}
    proc_class = Proc

    def __init__(self, args):
        self.args = args
        self.tether = os.path.abspath(args.tether)
        self.tmp = tempfile.mkdtemp(prefix=self.tmp_prefix)
        os.makedirs(os.path.join(self.tmp, "logs"))
        self.ports = set()
        self.procs = []
        self.redis_proc = None
        self.redis_port = None
        self.redis_started_at = -1e9  # when redis-server was last started (monotonic)

    def spawn(self, name, argv, env=None):
        proc = self.proc_class(self.tmp, name, argv, env)
        self.procs.append(proc)
        proc.start()
        return proc

    def copy_tether(self):
        """Runs a copy of its own from now on: a rebuild of the original during the run must not stop restarted
        processes from starting ("Text file busy") or swap the code under test."""
        copy = os.path.join(self.tmp, "tether")
        shutil.copy2(self.tether, copy)
        self.tether = copy

    def start_redis(self, options, server="redis-server"):
        """redis-server on a free port, its home tmp/redis; `options` say how it persists (and where it logs)."""
        directory = os.path.join(self.tmp, "redis")
        os.makedirs(directory, exist_ok=True)
        self.redis_port = free_port(self.ports)
        argv = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", directory] + list(options) \
            + ["--daemonize", "no"]
        self.redis_proc = self.spawn("redis", argv)
        self.redis_started_at = time.monotonic()
        self.wait_redis()

    def wait_redis(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.redis_proc.alive():
                raise RuntimeError("redis-server exited: " + " | ".join(self.redis_proc.tail(5)))
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def tether_env(self, **extra):
        """Ours without any TETHER_ variable, then the Redis URL, the prefix, `tether_variables` and `extra`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("TETHER_")}
        env.update({
            "TETHER_REDIS_URL": "redis://127.0.0.1:%d/0" % self.redis_port,
            "TETHER_PREFIX": self.redis_key_prefix,
            "LOG_LEVEL": "warning",
        })
        env.update(self.tether_variables)
        env.update(extra)
        return env

    def new_api_key(self, config, tenant, agent, cwd=None):
        """`tether keys create`; returns the API key (tk_…)."""
        result = subprocess.run([self.tether, "keys", "create", "--config", config, "--tenant", tenant,
                                 "--agent", agent], env=self.tether_env(), capture_output=True, text=True,
                                timeout=60, cwd=cwd)
        token = result.stdout.strip().split()[-1] if result.stdout.strip() else ""
        if result.returncode != 0 or not token.startswith("tk_"):
            raise RuntimeError("tether keys create failed (%d): %s %s"
                               % (result.returncode, result.stdout.strip(), result.stderr.strip()))
        return token

    def wait_http(self, port, proc, path="/healthz", timeout=60):
        """Until `proc` answers 200 on `path` (it must not exit meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError("%s exited: %s" % (proc.name, " | ".join(proc.tail(6))))
            try:
                if http_request(port, "GET", path, timeout=2)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not answer %s on port %d" % (proc.name, path, port))

    def remove_tmp(self):
        """The last step of a cleanup: the temporary folder goes, unless --keep."""
        if self.args.keep:
            print("%s: kept %s" % (self.prog, self.tmp), file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self):
        raise NotImplementedError

    def cleanup(self):
        raise NotImplementedError


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded, its threads daemons; says nothing of a peer gone in the middle of a response (a worker killed, a
    browser or a gateway gone)."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


def run_harness(harness_class, args):
    """A driver's main after its arguments: runs harness_class(args), cleans up whatever happens, and exits with the
    run's status (130 when interrupted, 1 on an unexpected error)."""
    prog = harness_class.prog

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    # Explicitly: a shell that starts us in the background without job control leaves SIGINT ignored.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    harness = harness_class(args)
    status = 1
    try:
        status = harness.run()
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        status = 130
    except Exception as error:
        print("%s: %s" % (prog, error), file=sys.stderr)
        traceback.print_exc()
        status = 1
    finally:
        harness.cleanup()
    sys.exit(status)
