#!/usr/bin/env python3
"""Chaos test of Tether: nothing lost, nothing duplicated, while processes are killed.

Started by scripts/chaos (see there). Python 3 standard library only. The process plumbing it shares with
scripts/playground_test.py (child processes, free ports, redis-server, the private copy of the tether binary, the
signal handling around the run) is in scripts/tether_procs.py.

In a temporary folder it starts a redis-server (append-only, fsync always, so a restart keeps everything), a fake
OpenAI-compatible model and an HTTP tool endpoint (both threaded servers in this process), two gateways and three
workers (lease 2 s) and nginx in front of the gateways (config/nginx.conf with its ports rewritten). K clients keep
executions in flight through nginx, each of a random scenario (text, tool, approve, deny, timeout, cancel); they
create with an Idempotency-Key (retried on errors), read the stream and reconnect with Last-Event-ID after every
disconnect, and answer approval requests as their scenario says. Meanwhile a seeded chaos loop SIGKILLs workers and
gateways (and restarts them), SIGSTOPs workers past their lease, and restarts Redis. Afterwards every execution is
checked against Redis: terminal, the frames its client got are exactly its event log, the log's grammar, the tool
calls the endpoint saw per Idempotency-Key, and the scenario's outcome. One summary line; exit status 0 iff no
violation.
"""

import argparse
import collections
import heapq
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tether_procs, from any working directory
import tether_procs  # noqa: E402
from tether_procs import ROOT, QuietHTTPServer, free_port, run_harness, short  # noqa: E402

PREFIX = "chaos"
TENANT = "chaos"
LEASE_SECONDS = 2.0
MODEL_KEY_VARIABLE = "CHAOS_MODEL_KEY"
SCENARIOS = ["text", "tool", "approve", "deny", "timeout", "cancel"]
TERMINAL = {"completed", "failed", "cancelled"}
RETRY_STATUSES = {502, 503, 504}
STREAM_READ_TIMEOUT = 30.0  # seconds of silence on a stream (heartbeats come every 5 s) before reconnecting
DRAIN_SECONDS = 60.0  # after the chaos, how long executions may take to finish
GATEWAYS = 2
WORKERS = 3


def now_ms():
    return int(time.time() * 1000)


def stream_id(text):
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq or 0))


# ---------------------------------------------------------------------------------------------------------------
# A tiny RESP client (XRANGE, HGETALL, SCAN…), reconnecting across Redis restarts.


class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.reader = None

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.reader = None

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def read(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise EOFError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            if len(data) != size + 2:
                raise EOFError("short read")
            return data[:-2].decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise RedisError("unexpected reply %r" % line)

    def call(self, *args, attempts=100):
        for attempt in range(attempts):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    self.reader = self.sock.makefile("rb")
                self.sock.sendall(self.encode(args))
                return self.read()
            except RedisError as error:
                if not str(error).startswith("LOADING") or attempt == attempts - 1:
                    raise
                time.sleep(0.1)
            except (OSError, EOFError):
                self.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    def scan(self, pattern):
        cursor, found = "0", []
        while True:
            cursor, keys = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found += keys
            if cursor == "0":
                return found


# ---------------------------------------------------------------------------------------------------------------
# Child processes.


class Proc(tether_procs.Proc):
    """A child the chaos loop may also SIGSTOP (and SIGCONT) or kill on purpose."""

    def __init__(self, directory, name, argv, env=None):
        super().__init__(directory, name, argv, env)
        self.stopped = False  # SIGSTOPped by the chaos loop
        self.down = False  # killed on purpose, a restart scheduled

    def start(self):
        super().start()
        self.stopped = False
        self.down = False

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def send(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def terminate(self, timeout=10):
        if not self.alive():
            if self.popen is not None:
                self.popen.wait()
            return
        if self.stopped:
            self.send(signal.SIGCONT)
            self.stopped = False
        self.send(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


# ---------------------------------------------------------------------------------------------------------------
# The fake model (OpenAI Chat Completions, streamed as FakeProvider streams the captured fixtures) and the tool
# endpoint.


class QuietServer(QuietHTTPServer):
    request_queue_size = 256  # every worker's model and tool calls at once


def read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def final_text(scenario, tool_results):
    """What the fake model answers last, word by word: the check compares the log's last turn with it."""
    return ["Chaos", " done:", " scenario", " " + scenario, " after", " %d" % tool_results, " tool", " results."]


TOOL_ARGUMENTS = {"count_tool": {"n": 7, "what": "count"}, "risky_tool": {"n": 9, "what": "launch"}}


class FakeModel:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.requests = collections.Counter()
        self.server = None

    def start(self, port):
        model = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = read_body(self)
                try:
                    request = json.loads(body)
                except ValueError:
                    self.send_error(400)
                    return
                chunks = model.reply(request)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pace = random.Random()
                for chunk in chunks:
                    piece = ("data: %s\n\n" % chunk).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    time.sleep(pace.uniform(0.02, 0.05))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = QuietServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, name="fake-model", daemon=True).start()

    def reply(self, request):
        messages = request.get("messages") or []
        last_user = ""
        for message in reversed(messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
                last_user = content if isinstance(content, str) else ""
                break
        found = re.search(r"scenario:(\w+)", last_user)
        scenario = found.group(1) if found else "text"
        tool_results = sum(1 for message in messages if message.get("role") == "tool")
        with self.lock:
            self.calls += 1
            number = self.calls
            self.requests[scenario] += 1
        head = {"id": "chatcmpl-chaos-%d" % number, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": "fake-model"}

        def chunk(delta, finish=None, usage=None, choices=True):
            value = dict(head)
            value["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices \
                else []
            value["usage"] = usage
            return json.dumps(value, separators=(",", ":"))

        usage = {"prompt_tokens": 20 + 10 * tool_results, "completion_tokens": 8, "total_tokens": 28 + 10 * tool_results}
        tool = None
        if tool_results == 0 and scenario == "tool":
            tool = "count_tool"
        elif tool_results == 0 and scenario in ("approve", "deny", "timeout", "cancel"):
            tool = "risky_tool"
        if tool is None:
            chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
            chunks += [chunk({"content": word}) for word in final_text(scenario, tool_results)]
            chunks.append(chunk({}, finish="stop"))
        else:
            call_id = "call_chaos%06d" % number
            arguments = json.dumps(TOOL_ARGUMENTS[tool], separators=(",", ":"))
            cut = len(arguments) // 2
            chunks = [
                chunk({"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": tool, "arguments": ""}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:cut]}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[cut:]}}]}),
                chunk({}, finish="tool_calls"),
            ]
        chunks.append(chunk(None, usage=usage, choices=False))
        chunks.append("[DONE]")
        return chunks


class ToolEndpoint:
    """Counts calls per Idempotency-Key, with the time each arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = collections.defaultdict(list)  # key -> [(ms, tool)]
        self.server = None

    def start(self, port):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                read_body(self)
                key = self.headers.get("Idempotency-Key", "")
                tool = self.path.strip("/")
                with endpoint.lock:
                    endpoint.calls[key].append((now_ms(), tool))
                    count = len(endpoint.calls[key])
                # Long enough for a kill to land during the call now and then.
                time.sleep(random.uniform(0.05, 0.25))
                answer = json.dumps({"ok": True, "tool": tool, "call": count}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = QuietServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, name="tool-endpoint", daemon=True).start()

    def snapshot(self):
        with self.lock:
            return {key: list(calls) for key, calls in self.calls.items()}


# ---------------------------------------------------------------------------------------------------------------
# Clients.


class Execution:
    def __init__(self, client, number, scenario, key, agent):
        self.client = client
        self.number = number
        self.scenario = scenario
        self.key = key
        self.agent = agent
        self.id = None
        self.received = []  # frame ids, in the order received, each once
        self.seen = set()
        self.last = None
        self.finish = None  # finish_reason of the final frame
        self.problems = []  # what the client saw go wrong
        self.approvals = []  # toolCallIds of the approval requests received
        self.answers = []  # (what, status, code) of decisions and cancels sent
        self.posts = 0
        self.reconnects = 0
        self.replayed = 0
        self.frames = {}  # id -> the frame's data, as received
        self.kinds = {}  # id -> the event type the frame renders
        self.replay_after = None  # re-POST (same key) after this many frames: Idempotent-Replayed, from the start
        self.internal_errors = set()
        self.done = False

    def name(self):
        return "%s (%s, client %d)" % (self.id or self.key, self.scenario, self.client)


class Backoff:
    def __init__(self):
        self.delay = 0.05

    def sleep(self):
        time.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(1.0, self.delay * 2)


class Client:
    def __init__(self, harness, index):
        self.h = harness
        self.index = index
        self.random = random.Random(harness.seed * 1000 + index)

    def run(self):
        number = 0
        while not self.h.stop_new.is_set():
            number += 1
            scenario = self.random.choice(SCENARIOS)
            agent = "chaos-timeout" if scenario == "timeout" else "chaos"
            key = "chaos-s%d-c%d-n%d" % (self.h.seed, self.index, number)
            execution = Execution(self.index, number, scenario, key, agent)
            if self.random.random() < 0.25:
                execution.replay_after = self.random.randint(1, 8)
            with self.h.lock:
                self.h.executions.append(execution)
            try:
                self.drive(execution)
            except Exception:
                execution.problems.append("the client crashed: " + short(traceback.format_exc(), 600))
            execution.done = True

    def past_deadline(self):
        return time.monotonic() > self.h.hard_deadline

    def attempt(self, execution, what, method, path, body=None, headers=None, timeout=STREAM_READ_TIMEOUT):
        """One request through nginx. Returns (connection, response) once the answer is not a proxy or outage
        error; None (connection closed, a 500 recorded as a violation) when the caller should back off and retry."""
        conn = http.client.HTTPConnection("127.0.0.1", self.h.nginx_port, timeout=timeout)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            conn.close()
            return None
        if response.status in RETRY_STATUSES or response.status == 500:
            self.internal_error(execution, what, response)
            conn.close()
            return None
        return conn, response

    def drive(self, execution):
        token = self.h.keys[execution.agent]
        body = json.dumps({"messages": [
            {"role": "user", "content": "scenario:%s run:%s" % (execution.scenario, execution.key)}]}).encode()
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                   "Accept": "text/event-stream", "Idempotency-Key": execution.key}
        backoff = Backoff()
        while execution.id is None:
            if self.past_deadline():
                execution.problems.append("never created: %d POSTs failed" % execution.posts)
                return
            execution.posts += 1
            answer = self.attempt(execution, "POST", "POST", "/run/api/executions", body, headers)
            if answer is None:
                backoff.sleep()
                continue
            conn, response = answer
            if response.status not in (200, 201):
                execution.problems.append("POST answered %d: %s" % (response.status, short(self.drain(response))))
                conn.close()
                return
            execution.id = response.getheader("x-workflow-run-id")
            if response.getheader("Idempotent-Replayed", "").lower() == "true":
                execution.replayed += 1
            if not execution.id:
                execution.problems.append("POST answered %d without x-workflow-run-id" % response.status)
                conn.close()
                return
            self.read_stream(execution, response, stop_after=execution.replay_after)
            conn.close()
        if execution.replay_after is not None and execution.finish is None:
            self.replay(execution, body, headers)
        backoff = Backoff()
        while execution.finish is None:
            if self.past_deadline():
                execution.problems.append(
                    "no final frame within the drain (%d frames, %d reconnects)"
                    % (len(execution.received), execution.reconnects))
                return
            execution.reconnects += 1
            stream_headers = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
            if execution.received:
                stream_headers["Last-Event-ID"] = execution.received[-1]
            answer = self.attempt(execution, "GET …/stream", "GET", "/run/api/executions/%s/stream" % execution.id,
                                  headers=stream_headers)
            if answer is None:
                backoff.sleep()
                continue
            conn, response = answer
            if response.status == 204:
                execution.problems.append(
                    "reconnect after %s answered 204 (has the final frame) but no final frame was received"
                    % stream_headers.get("Last-Event-ID"))
                conn.close()
                return
            if response.status != 200:
                execution.problems.append("reconnect answered %d: %s" % (response.status, short(self.drain(response))))
                conn.close()
                return
            before = len(execution.received)
            self.read_stream(execution, response)
            conn.close()
            if len(execution.received) > before:
                backoff = Backoff()
            elif execution.finish is None:
                backoff.sleep()

    def replay(self, execution, body, headers):
        """The same POST again, after leaving the first response midway: the same execution, replayed from its
        start, each frame identical to the one received before."""
        backoff = Backoff()
        while not self.past_deadline():
            answer = self.attempt(execution, "the repeated POST", "POST", "/run/api/executions", body, headers)
            if answer is None:
                backoff.sleep()
                continue
            conn, response = answer
            if response.status not in (200, 201):
                execution.problems.append("the repeated POST answered %d: %s"
                                          % (response.status, short(self.drain(response))))
            elif response.getheader("x-workflow-run-id") != execution.id:
                execution.problems.append("the repeated POST (same Idempotency-Key) streams %s"
                                          % response.getheader("x-workflow-run-id"))
            elif response.getheader("Idempotent-Replayed", "").lower() != "true":
                execution.problems.append("the repeated POST has no Idempotent-Replayed: true")
            else:
                execution.replayed += 1
                self.read_stream(execution, response, replay=[0, len(execution.received)])
            conn.close()
            return

    def internal_error(self, execution, what, response):
        """502/503/504 are retried silently. A 500 is a violation (Redis trouble must be a 503 `unavailable`,
        docs/operations.md), recorded once per request kind and execution; the client retries it all the same, so
        that one wrong status does not leave the execution stuck and hide what else happens to it."""
        text = self.drain(response)
        if response.status != 500 or what in execution.internal_errors:
            return
        execution.internal_errors.add(what)
        since = time.monotonic() - self.h.redis_started_at
        execution.problems.append(
            "%s answered 500 %s, %d ms after redis-server was (re)started (retried)"
            % (what, short(text, 80), since * 1000))

    @staticmethod
    def drain(response):
        try:
            return response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException, ValueError):
            return ""

    def read_stream(self, execution, response, stop_after=None, replay=None):
        """Reads frames until the final one or a disconnect (any error counts as one), or until `stop_after` frames
        were received. `replay` ([position, count]: where the replay is in what was received, and how many frames were
        received before it) is given for a replay from the start: those frames are compared, not taken again."""
        frame_id, data = None, []
        try:
            while True:
                raw = response.readline(1 << 22)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    if frame_id is not None or data:
                        text = "\n".join(data)
                        if replay is not None and replay[0] < replay[1]:
                            expected = execution.received[replay[0]]
                            if frame_id != expected:
                                execution.problems.append("the replay's frame %d is %s, it was %s"
                                                          % (replay[0], frame_id, expected))
                                return
                            if execution.frames.get(frame_id) != text:
                                execution.problems.append("the replay of frame %s differs: %s, was %s"
                                                          % (frame_id, short(text, 120),
                                                             short(execution.frames.get(frame_id), 120)))
                            replay[0] += 1
                        else:
                            self.frame(execution, frame_id, text)
                        if execution.finish is not None:
                            return
                        if stop_after is not None and len(execution.received) >= stop_after:
                            return
                    frame_id, data = None, []
                    continue
                if line.startswith(":"):
                    continue  # heartbeat
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "id":
                    frame_id = value
                elif field == "data":
                    data.append(value)
        except (OSError, http.client.HTTPException, ValueError):
            return

    def frame(self, execution, frame_id, data):
        if frame_id is None:
            execution.problems.append("a frame without id: %s" % short(data))
            return
        try:
            position = stream_id(frame_id)
        except ValueError:
            execution.problems.append("a frame with a malformed id %r" % frame_id)
            return
        if frame_id in execution.seen:
            execution.problems.append(
                "frame %s received twice (after %d reconnects, %d POSTs)"
                % (frame_id, execution.reconnects, execution.posts))
            return
        if execution.last is not None and position <= execution.last:
            execution.problems.append("frame %s received out of order, after %s" % (frame_id, execution.received[-1]))
        execution.seen.add(frame_id)
        execution.received.append(frame_id)
        execution.frames[frame_id] = data
        execution.last = position if execution.last is None else max(position, execution.last)
        try:
            chunk = json.loads(data)
            choice = chunk["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            execution.problems.append("frame %s is not a chat.completion.chunk: %s" % (frame_id, short(data)))
            return
        if chunk.get("id") != execution.id:
            execution.problems.append("frame %s names execution %s" % (frame_id, chunk.get("id")))
        kind, payload = self.kind(choice)
        execution.kinds[frame_id] = kind
        if choice.get("finish_reason"):
            execution.finish = choice["finish_reason"]
        if kind == "tool-approval-request":
            self.on_approval(execution, payload.get("toolCallId"))

    @staticmethod
    def kind(choice):
        """The event type a frame renders (docs/protocol.md, "Frame types"), and its payload when it carries one;
        for a text delta the payload is its text."""
        if choice.get("finish_reason"):
            return "finish", None
        delta = choice.get("delta") or {}
        if delta.get("tool_calls"):
            call = delta["tool_calls"][0]
            return ("tool-call-start" if "name" in (call.get("function") or {}) else "tool-call-delta"), call
        content = delta.get("content")
        if isinstance(content, str) and content.startswith("{"):
            try:
                payload = json.loads(content)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                if payload.get("type") == "data-operation" and isinstance(payload.get("data"), dict):
                    return payload["data"].get("type"), payload["data"]
                if isinstance(payload.get("type"), str):
                    return payload["type"], payload
        return "text-delta", content

    def on_approval(self, execution, call_id):
        execution.approvals.append(call_id)
        if call_id in execution.approvals[:-1]:
            return
        scenario = execution.scenario
        if scenario in ("approve", "deny"):
            approved = scenario == "approve"
            body = {"approved": approved} if approved else {"approved": False, "reason": "chaos says no"}
            status, code = self.post(execution, "the decision", "/run/api/executions/%s/approvals/%s"
                                     % (execution.id, call_id), body)
            execution.answers.append(("approve" if approved else "deny", status, code))
            if status != 200:
                execution.problems.append("the decision on %s answered %s %s" % (call_id, status, code))
        elif scenario == "cancel":
            status, code = self.post(execution, "the cancel", "/run/api/executions/%s/cancel" % execution.id, None)
            execution.answers.append(("cancel", status, code))
            if status != 200:
                execution.problems.append("the cancel answered %s %s" % (status, code))
        elif scenario != "timeout":
            execution.problems.append("an approval request in a %s execution" % scenario)

    def post(self, execution, what, path, body):
        """POSTs until an answer that is not a proxy or outage error; returns (status, code)."""
        headers = {"Authorization": "Bearer " + self.h.keys[execution.agent]}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        backoff = Backoff()
        while not self.past_deadline():
            answer = self.attempt(execution, what, "POST", path, data, headers, timeout=10)
            if answer is None:
                backoff.sleep()
                continue
            conn, response = answer
            try:
                text = response.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                conn.close()
                backoff.sleep()
                continue
            conn.close()
            try:
                code = json.loads(text).get("code", "") if text else ""
            except (ValueError, AttributeError):
                code = short(text, 80)
            return response.status, code
        return None, "gave up at the deadline"


# ---------------------------------------------------------------------------------------------------------------
# The harness.


class Violations:
    def __init__(self):
        self.items = []  # (line, execution id or None, extra lines)

    def add(self, line, execution_id=None, extra=()):
        self.items.append((line, execution_id, list(extra)))


class Harness(tether_procs.Harness):
    prog = "chaos"
    tmp_prefix = "tether-chaos."
    redis_key_prefix = PREFIX
    tether_variables = {"TETHER_LEASE_SECONDS": "%g" % LEASE_SECONDS, MODEL_KEY_VARIABLE: "sk-chaos-0123456789"}
    proc_class = Proc

    def __init__(self, args):
        super().__init__(args)
        self.seed = args.seed
        self.duration = args.duration
        self.gateways = []
        self.workers = []
        self.nginx = None
        self.model = FakeModel()
        self.tools = ToolEndpoint()
        self.keys = {}
        self.lock = threading.Lock()
        self.executions = []
        self.stop_new = threading.Event()
        self.hard_deadline = float("inf")
        self.violations = Violations()
        self.counts = collections.Counter()
        self.tasks = []  # heap of (monotonic time, sequence, what, callable)
        self.task_sequence = 0
        self.last_redis_restart = -1e9

    # -- processes ----------------------------------------------------------------------------------------------

    def write_config(self):
        model_url = "http://127.0.0.1:%d/v1" % self.model_port
        tool_url = "http://127.0.0.1:%d" % self.tool_port
        model = ('{provider: openai, name: fake-model, baseURL: "%s", apiKeyEnv: %s, timeoutSeconds: 30}'
                 % (model_url, MODEL_KEY_VARIABLE))
        config = """\
redis:
  url: redis://127.0.0.1:%(redis)d/0
  prefix: %(prefix)s
http:
  host: 127.0.0.1
  port: 0
  heartbeatSeconds: 5
workers:
  concurrency: 64
  leaseSeconds: %(lease)g
tools:
  http:
    - name: count_tool
      description: Counts something (no approval needed)
      url: %(tools)s/count_tool
      timeoutSeconds: 20
    - name: risky_tool
      description: Does something that needs a human's approval
      url: %(tools)s/risky_tool
      timeoutSeconds: 20
      needsApproval: true
agents:
  - id: chaos
    model: %(model)s
    system: "You are the chaos agent."
    tools: [count_tool, risky_tool]
    maxSteps: 8
    approvalTimeoutSeconds: 600
  - id: chaos-timeout
    model: %(model)s
    system: "You are the chaos agent whose approvals time out."
    tools: [count_tool, risky_tool]
    maxSteps: 8
    approvalTimeoutSeconds: 2
""" % {"redis": self.redis_port, "prefix": PREFIX, "lease": LEASE_SECONDS, "tools": tool_url, "model": model}
        self.config = os.path.join(self.tmp, "tether.yaml")
        with open(self.config, "w") as file:
            file.write(config)

    def create_keys(self):
        for agent in ("chaos", "chaos-timeout"):
            self.keys[agent] = self.new_api_key(self.config, TENANT, agent)

    def start_tether(self):
        for index in range(GATEWAYS):
            port = free_port(self.ports)
            proc = self.spawn("gateway-%d" % (index + 1), [self.tether, "gateway", "--config", self.config],
                              self.tether_env(TETHER_PORT=str(port)))
            proc.port = port
            self.gateways.append(proc)
        for index in range(WORKERS):
            self.workers.append(self.spawn("worker-%d" % (index + 1), [self.tether, "worker", "--config", self.config],
                                           self.tether_env(TETHER_WORKERS="64")))
        for gateway in self.gateways:
            self.wait_http(gateway.port, gateway)

    def start_nginx(self):
        with open(os.path.join(ROOT, "config", "nginx.conf")) as file:
            text = file.read()
        self.nginx_port = free_port(self.ports)
        text, listens = re.subn(r"listen 127\.0\.0\.1:8080;", "listen 127.0.0.1:%d;" % self.nginx_port, text)
        gateway_ports = iter(gateway.port for gateway in self.gateways)
        text, servers = re.subn(r"(\n\s*server 127\.0\.0\.1:)808\d( )", lambda m: m.group(1) + str(next(gateway_ports))
                                + m.group(2), text)
        if listens != 1 or servers != GATEWAYS:
            raise RuntimeError("config/nginx.conf: expected one listen line and %d upstream servers, found %d and %d"
                               % (GATEWAYS, listens, servers))
        prefix = os.path.join(self.tmp, "nginx")
        os.makedirs(prefix)
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as file:
            file.write(text)
        self.nginx = self.spawn("nginx", ["nginx", "-p", prefix, "-c", path, "-e", "stderr", "-g", "daemon off;"])
        self.wait_http(self.nginx_port, self.nginx)

    # -- the chaos ----------------------------------------------------------------------------------------------

    def schedule(self, delay, what, action):
        self.task_sequence += 1
        heapq.heappush(self.tasks, (time.monotonic() + delay, self.task_sequence, what, action))

    def run_due_tasks(self, everything=False):
        while self.tasks and (everything or self.tasks[0][0] <= time.monotonic()):
            _, _, _, action = heapq.heappop(self.tasks)
            action()

    def restart(self, proc):
        if not proc.alive():
            proc.start()

    def resume(self, proc):
        if proc.stopped:
            proc.send(signal.SIGCONT)
            proc.stopped = False

    def watch(self):
        """A process that exited without being killed by the chaos loop is a violation (then it is restarted)."""
        for proc in self.procs:
            if proc.down or proc.alive():
                continue
            status = proc.popen.returncode if proc.popen else None
            self.violations.add(
                "%s exited by itself (status %s); restarted" % (proc.name, status), None,
                ["    %s: %s" % (proc.name, short(line, 300)) for line in proc.tail(6)])
            if proc is self.redis_proc:
                proc.start()
                self.wait_redis()
            else:
                proc.start()

    def chaos_action(self, rnd, started):
        now = time.monotonic()
        running_workers = [w for w in self.workers if w.alive() and not w.stopped and not w.down]
        choices = []
        if len(running_workers) >= 2:
            choices += [("kill-worker", 3), ("stop-worker", 2)]
        if all(g.alive() and not g.down for g in self.gateways):
            choices.append(("kill-gateway", 2))
        if now - self.last_redis_restart >= 20 and now - started >= 3:
            choices.append(("restart-redis", 2))
        if not choices:
            return
        action = rnd.choices([c[0] for c in choices], weights=[c[1] for c in choices])[0]
        if action == "kill-worker":
            worker = rnd.choice(running_workers)
            worker.down = True
            worker.kill()
            self.counts["kills"] += 1
            self.counts["worker-kills"] += 1
            self.schedule(0.5, "restart " + worker.name, lambda: self.restart(worker))
        elif action == "stop-worker":
            worker = rnd.choice(running_workers)
            worker.send(signal.SIGSTOP)
            worker.stopped = True
            self.counts["stops"] += 1
            self.schedule(LEASE_SECONDS + 1.5, "resume " + worker.name, lambda: self.resume(worker))
        elif action == "kill-gateway":
            gateway = rnd.choice(self.gateways)
            gateway.down = True
            gateway.kill()
            self.counts["kills"] += 1
            self.counts["gateway-kills"] += 1
            self.schedule(0.5, "restart " + gateway.name, lambda: self.restart(gateway))
        elif action == "restart-redis":
            self.last_redis_restart = now
            self.redis_proc.down = True
            self.redis_proc.terminate(timeout=15)
            self.redis_proc.start()
            self.redis_started_at = time.monotonic()
            self.wait_redis()
            self.counts["restarts"] += 1

    def chaos(self):
        rnd = random.Random(self.seed)
        started = time.monotonic()
        end = started + self.duration
        next_action = started + rnd.uniform(1, 3)
        while time.monotonic() < end:
            self.run_due_tasks()
            self.watch()
            if time.monotonic() >= next_action:
                self.chaos_action(rnd, started)
                next_action = time.monotonic() + rnd.uniform(1, 3)
            time.sleep(0.02)
        # Heal: resume the stopped, restart the killed.
        self.run_due_tasks(everything=True)

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self):
        if not (os.path.isfile(self.tether) and os.access(self.tether, os.X_OK)):
            print("chaos: %s is not an executable; build tether first (or pass --tether PATH)" % self.tether,
                  file=sys.stderr)
            return 2
        self.copy_tether()
        # Append-only, fsync always: a restart keeps everything.
        self.start_redis(["--appendonly", "yes", "--appendfsync", "always", "--save", "",
                          "--logfile", os.path.join(self.tmp, "logs", "redis-server.log")])
        self.model_port = free_port(self.ports)
        self.model.start(self.model_port)
        self.tool_port = free_port(self.ports)
        self.tools.start(self.tool_port)
        self.write_config()
        self.create_keys()
        self.start_tether()
        self.start_nginx()

        self.hard_deadline = time.monotonic() + self.duration + DRAIN_SECONDS
        clients = [threading.Thread(target=Client(self, index).run, name="client-%d" % index, daemon=True)
                   for index in range(self.args.executions_in_flight)]
        for thread in clients:
            thread.start()
        self.chaos()
        self.stop_new.set()
        while any(thread.is_alive() for thread in clients) and time.monotonic() < self.hard_deadline + 5:
            self.watch()
            time.sleep(0.05)
        for thread in clients:
            thread.join(0.1)
        self.check()
        return self.report()

    # -- the checks ---------------------------------------------------------------------------------------------

    def status(self, execution):
        token = self.keys[execution.agent]
        for _ in range(100):
            conn = http.client.HTTPConnection("127.0.0.1", self.nginx_port, timeout=10)
            try:
                conn.request("GET", "/run/api/executions/%s" % execution.id, headers={"Authorization": "Bearer " + token})
                response = conn.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
                continue
            finally:
                conn.close()
            if response.status in RETRY_STATUSES:
                time.sleep(0.1)
                continue
            if response.status != 200:
                return None, "GET answered %d" % response.status
            return json.loads(text), None
        return None, "GET kept failing"

    def check(self):
        redis = Redis(self.redis_port)
        add = self.violations.add
        executions = list(self.executions)
        ids = collections.Counter(e.id for e in executions if e.id)
        for execution_id, count in ids.items():
            if count > 1:
                add("%d clients' executions (different Idempotency-Keys) got the same id %s" % (count, execution_id),
                    execution_id)
        stored = {key[len(PREFIX) + 2:-len("}:meta")] for key in redis.scan(PREFIX + ":{exec_*}:meta")}
        for extra in sorted(stored - set(ids)):
            meta = self.hgetall(redis, "%s:{%s}:meta" % (PREFIX, extra))
            add("execution %s is in Redis but no client got it (a duplicate create?): input %s"
                % (extra, short(meta.get("input"), 120)), extra)
        calls = self.tools.snapshot()
        logs = {}
        for execution in executions:
            for problem in execution.problems:
                add("%s: %s" % (execution.name(), problem), execution.id)
            if execution.id is None:
                continue
            entries = redis.call("XRANGE", "%s:{%s}:events" % (PREFIX, execution.id), "-", "+")
            events = []
            for entry_id, fields in entries:
                event = dict(zip(fields[::2], fields[1::2]))
                try:
                    event["payload"] = json.loads(event.get("data") or "{}")
                except ValueError:
                    event["payload"] = {}
                event["id"] = entry_id
                events.append(event)
            logs[execution.id] = events
            self.counts["events"] += len(events)
            self.check_execution(redis, execution, events, calls)
        for key, made in sorted(calls.items()):
            execution_id, _, call_id = key.partition(":")
            if execution_id not in logs:
                add("the tool endpoint got %d calls with Idempotency-Key %r, of no known execution" % (len(made), key),
                    execution_id if execution_id.startswith("exec_") else None)
                continue
            if not any(e["type"] == "turn-finished" and any(c.get("toolCallId") == call_id
                                                              for c in e["payload"].get("toolCalls") or [])
                       for e in logs[execution_id]):
                add("%s: the tool endpoint got a call %s that no finished turn of the log made" % (execution_id, call_id),
                    execution_id)
        self.check_leftovers(redis)
        redis.close()

    @staticmethod
    def hgetall(redis, key):
        values = redis.call("HGETALL", key) or []
        return dict(zip(values[::2], values[1::2]))

    def check_execution(self, redis, execution, events, calls):
        name = execution.name()
        problems = []
        ids = [event["id"] for event in events]
        # 1. Terminal, by the status endpoint and by the final frame.
        status, error = self.status(execution)
        state = (status or {}).get("status")
        if status is None:
            problems.append("status: %s" % error)
        elif state not in TERMINAL:
            problems.append("status is %s, not terminal" % state)
        if execution.finish is None and not execution.problems:
            problems.append("no final frame was received")
        # 2. The frames received are the log, in order, each once.
        if execution.received != ids:
            missing = [i for i in ids if i not in execution.seen]
            extra = [i for i in execution.received if i not in set(ids)]
            detail = []
            if missing:
                missing_types = [e["type"] for e in events if e["id"] in set(missing)]
                detail.append("missing %d (%s…: %s)" % (len(missing), missing[0], ",".join(missing_types[:6])))
            if extra:
                detail.append("%d not in the log (%s…)" % (len(extra), extra[0]))
            if not missing and not extra:
                detail.append("same ids in another order")
            problems.append("frames received (%d) differ from the log (%d): %s"
                            % (len(execution.received), len(ids), "; ".join(detail)))
        wrong = [(e["id"], execution.kinds.get(e["id"]), e["type"]) for e in events
                 if e["id"] in execution.kinds and execution.kinds[e["id"]] != e["type"]]
        if wrong:
            problems.append("%d frames render another event than the log's: %s is %s, the log says %s"
                            % (len(wrong), wrong[0][0], wrong[0][1], wrong[0][2]))
        texts = [(e["id"], e) for e in events if e["type"] == "text-delta" and e["id"] in execution.frames]
        for entry_id, event in texts:
            choice = json.loads(execution.frames[entry_id])["choices"][0]
            if (choice.get("delta") or {}).get("content") != event["payload"].get("text"):
                problems.append("frame %s has the text %r, the log %r" % (
                    entry_id, (choice.get("delta") or {}).get("content"), event["payload"].get("text")))
                break
        # 3. The grammar of the log.
        grammar, calls_in_log, final_status, outcome = self.grammar(events)
        problems += grammar
        if state in TERMINAL and final_status is not None and final_status != state:
            problems.append("the log's final status is %s, the status endpoint says %s" % (final_status, state))
        meta = self.hgetall(redis, "%s:{%s}:meta" % (PREFIX, execution.id))
        if meta.get("status") != state:
            problems.append("meta status %s, status endpoint %s" % (meta.get("status"), state))
        if ids and meta.get("lastEventId") != ids[-1]:
            problems.append("meta lastEventId %s, newest event %s" % (meta.get("lastEventId"), ids[-1]))
        conversation = meta.get("conversationId")
        if conversation and state in TERMINAL:
            running = redis.call("HGET", "%s:{conv:%s:%s}:state" % (PREFIX, TENANT, conversation), "running")
            if running:
                problems.append("its conversation %s still names %s as running" % (conversation, running))
        # 4. No worker appended after its successor took over (a stopped one resumed, or a killed one's last append):
        # the fence each worker entry was appended under never goes down along the log, and is at most the meta's.
        fenced = [(e["id"], int(e["fence"])) for e in events if e.get("fence", "").isdigit()]
        for (_, before), (entry_id, after) in zip(fenced, fenced[1:]):
            if after < before:
                problems.append("entry %s was appended under fence %d after an entry of fence %d (a worker wrote "
                                "after its takeover)" % (entry_id, after, before))
                break
        if fenced and meta.get("fence", "").isdigit() and fenced[-1][1] > int(meta["fence"]):
            problems.append("entry %s has fence %d, above the meta's %s" % (fenced[-1][0], fenced[-1][1], meta["fence"]))
        self.counts["later-claims"] += len({fence for _, fence in fenced}) - 1 if fenced else 0
        # 5. Tool side effects against the log.
        for call_id, call in calls_in_log.items():
            made = calls.get("%s:%s" % (execution.id, call_id), [])
            if len(made) > len(call["starts"]):
                problems.append("tool %s (%s) was called %d times but has %d tool-started"
                                % (call["name"], call_id, len(made), len(call["starts"])))
            if call["result"] == "tool-output-available":
                if not made:
                    problems.append("tool %s (%s) has an output but the endpoint never got the call"
                                    % (call["name"], call_id))
                late = [t for t, _ in made if t > call["result_ts"]]
                if late:
                    problems.append("tool %s (%s) was called %d ms after its output was logged"
                                    % (call["name"], call_id, late[-1] - call["result_ts"]))
            if call["result"] in ("tool-output-denied",) and made:
                problems.append("tool %s (%s) was denied but the endpoint got %d calls"
                                % (call["name"], call_id, len(made)))
        # 6. The scenario's outcome.
        problems += self.outcome(execution, state, status, calls_in_log, calls, outcome)
        for problem in problems:
            self.violations.add("%s: %s" % (name, problem), execution.id, [self.describe(events)])

    @staticmethod
    def describe(events):
        """The log's types, run-length encoded: `execution-started turn-started text-delta×9 …`."""
        out, previous, count = [], None, 0
        for event in events + [None]:
            kind = event["type"] if event else None
            if kind == previous:
                count += 1
                continue
            if previous is not None:
                out.append(previous + ("×%d" % count if count > 1 else ""))
            previous, count = kind, 1
        return "    log: " + short(" ".join(out), 600)

    def grammar(self, events):
        """Checks the log's grammar (docs/protocol.md, version 2). Returns (problems, calls of finished turns by id,
        the final status the log moved to, facts about its outcome)."""
        problems = []
        calls = {}  # toolCallId -> facts, for calls of finished turns
        turn = None  # the open turn: {"id", "calls": [ids], "text"}
        turn_ids = set()
        turn_count = 0
        finished_turns = []
        pending = []  # calls of the last finished turn without a result
        status = None
        finished = False
        outcome = {"error": None, "finish": None, "last_text": None, "aborted_in_a_row": 0, "max_aborted": 0}
        needs_approval = {"risky_tool": True, "count_tool": False}
        for index, event in enumerate(events):
            kind, payload = event.get("type"), event["payload"]
            where = "event %d (%s, %s)" % (index, kind, event["id"])
            if payload.get("type") != kind:
                problems.append("%s: payload type %r" % (where, payload.get("type")))
            if event.get("status"):
                status = event["status"]
            if finished:
                problems.append("%s after the finish event" % where)
            if index == 0 and kind != "execution-started":
                problems.append("the log starts with %s" % kind)
            call_id = payload.get("toolCallId")
            call = calls.get(call_id)
            if kind == "execution-started":
                if index != 0:
                    problems.append("%s: execution-started again" % where)
            elif kind == "turn-started":
                turn_count += 1
                if turn is not None:
                    problems.append("%s: turn %s started while turn %s is open" % (where, payload.get("turnId"),
                                                                                    turn["id"]))
                if pending:
                    problems.append("%s: a new turn while calls %s have no result" % (where, ",".join(pending)))
                if payload.get("turnId") in turn_ids:
                    problems.append("%s: turn id %s used twice" % (where, payload.get("turnId")))
                if payload.get("step") != turn_count:
                    problems.append("%s: step %s, but it is turn %d" % (where, payload.get("step"), turn_count))
                turn_ids.add(payload.get("turnId"))
                turn = {"id": payload.get("turnId"), "calls": [], "args": {}, "text": ""}
            elif kind in ("text-delta", "tool-call-start", "tool-call-delta"):
                if turn is None or payload.get("turnId") != turn["id"]:
                    problems.append("%s: of turn %s, but the open turn is %s"
                                    % (where, payload.get("turnId"), turn and turn["id"]))
                    continue
                if kind == "text-delta":
                    turn["text"] += payload.get("text") or ""
                elif kind == "tool-call-start":
                    if call_id in turn["calls"] or call_id in calls:
                        problems.append("%s: tool call %s started twice" % (where, call_id))
                    turn["calls"].append(call_id)
                    turn["args"][call_id] = ""
                else:
                    if call_id not in turn["args"]:
                        problems.append("%s: arguments of %s, which did not start" % (where, call_id))
                    else:
                        turn["args"][call_id] += payload.get("argumentsDelta") or ""
            elif kind == "turn-finished":
                if turn is None or payload.get("turnId") != turn["id"]:
                    problems.append("%s: finishes turn %s, but the open turn is %s"
                                    % (where, payload.get("turnId"), turn and turn["id"]))
                    continue
                listed = [c.get("toolCallId") for c in payload.get("toolCalls") or []]
                if listed != turn["calls"]:
                    problems.append("%s: lists calls %s, the turn streamed %s" % (where, listed, turn["calls"]))
                for entry in payload.get("toolCalls") or []:
                    cid = entry.get("toolCallId")
                    streamed = turn["args"].get(cid, "")
                    try:
                        parsed = json.loads(streamed) if streamed.strip() else {}
                    except ValueError:
                        parsed = None
                    if entry.get("input") != parsed:
                        problems.append("%s: input of %s is %s, its streamed arguments %r"
                                        % (where, cid, entry.get("input"), streamed))
                    name = entry.get("toolName")
                    if TOOL_ARGUMENTS.get(name) != entry.get("input"):
                        problems.append("%s: %s was called with %s, the model sent %s"
                                        % (where, name, entry.get("input"), TOOL_ARGUMENTS.get(name)))
                    calls[cid] = {"name": name, "request": None, "response": None, "starts": [], "result": None,
                                  "result_ts": None, "turn": turn["id"]}
                pending = listed
                outcome["last_text"] = turn["text"]
                outcome["aborted_in_a_row"] = 0
                finished_turns.append(turn)
                turn = None
            elif kind == "turn-aborted":
                if turn is None or payload.get("turnId") != turn["id"]:
                    problems.append("%s: aborts turn %s, but the open turn is %s"
                                    % (where, payload.get("turnId"), turn and turn["id"]))
                turn = None
                self.counts["turns-aborted"] += 1
                outcome["aborted_in_a_row"] += 1
                outcome["max_aborted"] = max(outcome["max_aborted"], outcome["aborted_in_a_row"])
            elif kind in ("tool-approval-request", "tool-approval-response", "tool-started", "tool-output-available",
                          "tool-output-error", "tool-output-denied"):
                if call is None:
                    problems.append("%s: names %s, a call of no finished turn" % (where, call_id))
                    continue
                if turn is not None:
                    problems.append("%s: while turn %s is open" % (where, turn["id"]))
                if call["result"] is not None:
                    problems.append("%s: %s already has a result (%s)" % (where, call_id, call["result"]))
                if kind == "tool-approval-request":
                    if not needs_approval.get(call["name"]):
                        problems.append("%s: %s needs no approval" % (where, call["name"]))
                    if call["request"] is not None:
                        problems.append("%s: a second approval request for %s" % (where, call_id))
                    if call["starts"]:
                        problems.append("%s: the approval request comes after tool-started" % where)
                    call["request"] = payload
                elif kind == "tool-approval-response":
                    if call["request"] is None:
                        problems.append("%s: a decision on %s without a request" % (where, call_id))
                    if call["response"] is not None:
                        problems.append("%s: a second decision on %s" % (where, call_id))
                    if payload.get("decidedBy") == "system" and payload.get("approved") is not False:
                        problems.append("%s: the deadline approved %s" % (where, call_id))
                    call["response"] = payload
                elif kind == "tool-started":
                    if needs_approval.get(call["name"]) and (call["response"] or {}).get("approved") is not True:
                        problems.append("%s: %s started without an approval" % (where, call_id))
                    if payload.get("attempt") != len(call["starts"]) + 1:
                        problems.append("%s: attempt %s after %d starts" % (where, payload.get("attempt"),
                                                                              len(call["starts"])))
                    if call["starts"]:
                        self.counts["tool-reruns"] += 1
                    call["starts"].append(int(event.get("ts") or 0))
                else:
                    if kind == "tool-output-available" and not call["starts"]:
                        problems.append("%s: an output of %s without tool-started" % (where, call_id))
                    if kind == "tool-output-denied" and (call["response"] or {}).get("approved") is not False:
                        problems.append("%s: %s denied without a denial" % (where, call_id))
                    if kind == "tool-output-denied" and call["starts"]:
                        problems.append("%s: %s denied after it started" % (where, call_id))
                    if kind == "tool-output-error":
                        problems.append("%s: %s failed: %s" % (where, call_id, short(payload.get("errorText"), 160)))
                    call["result"] = kind
                    call["result_ts"] = int(event.get("ts") or 0)
                    if call_id in pending:
                        pending = [c for c in pending if c != call_id]
            elif kind == "error":
                outcome["error"] = payload.get("code")
                if index + 1 >= len(events) or events[index + 1].get("type") != "finish":
                    problems.append("%s: not followed by the finish event" % where)
            elif kind == "finish":
                finished = True
                outcome["finish"] = payload.get("status")
                if payload.get("status") != event.get("status"):
                    problems.append("%s: finish says %s, the entry's status is %s"
                                    % (where, payload.get("status"), event.get("status")))
                if payload.get("status") == "completed":
                    if outcome["error"] is not None:
                        problems.append("%s: completed after an error event" % where)
                    if turn is not None or pending or not finished_turns or finished_turns[-1]["calls"]:
                        problems.append("%s: completed, but the last turn is not a finished turn without calls"
                                        % where)
                elif index == 0 or events[index - 1].get("type") != "error":
                    problems.append("%s: %s without an error event just before" % (where, payload.get("status")))
            else:
                problems.append("%s: unknown event type" % where)
        if not finished:
            problems.append("the log has no finish event")
        return problems, calls, status, outcome

    def outcome(self, execution, state, status, calls_in_log, calls, outcome):
        """What each scenario must come to."""
        problems = []
        scenario = execution.scenario
        if state not in TERMINAL:
            return problems
        if state == "failed" and outcome["error"] == "model_error" and outcome["aborted_in_a_row"] >= 3:
            # Documented: three aborted turns in a row fail the execution. Chaos can do that; it is not a loss.
            self.counts["failed-after-3-aborts"] += 1
            return problems
        risky = [(cid, c) for cid, c in calls_in_log.items() if c["name"] == "risky_tool"]
        counted = [(cid, c) for cid, c in calls_in_log.items() if c["name"] == "count_tool"]
        made = {cid: calls.get("%s:%s" % (execution.id, cid), []) for cid in calls_in_log}
        if scenario == "cancel":
            if state != "cancelled":
                problems.append("cancelled, but its status is %s" % state)
            if (status.get("error") or {}).get("code") != "cancelled":
                problems.append("status error %s, not cancelled" % status.get("error"))
            for cid, _ in risky:
                if made[cid]:
                    problems.append("risky_tool (%s) ran %d times in a cancelled execution" % (cid, len(made[cid])))
            return problems
        if state != "completed":
            problems.append("status %s (error %s), not completed" % (state, status.get("error")))
            return problems
        expected_results = 0 if scenario == "text" else 1
        expected_text = "".join(final_text(scenario, expected_results))
        if outcome["last_text"] != expected_text:
            problems.append("the last turn's text is %r, the model said %r" % (outcome["last_text"], expected_text))
        if scenario == "text":
            if calls_in_log:
                problems.append("tool calls in a text execution: %s" % list(calls_in_log))
        elif scenario == "tool":
            if len(counted) != 1 or risky:
                problems.append("expected one count_tool call, the log has %s"
                                % [(c["name"], cid) for cid, c in calls_in_log.items()])
            for cid, call in counted:
                if call["result"] != "tool-output-available" or not made[cid]:
                    problems.append("count_tool (%s): result %s, %d calls" % (cid, call["result"], len(made[cid])))
        else:
            if len(risky) != 1 or counted:
                problems.append("expected one risky_tool call, the log has %s"
                                % [(c["name"], cid) for cid, c in calls_in_log.items()])
            for cid, call in risky:
                response = call["response"] or {}
                if scenario == "approve":
                    if response.get("approved") is not True or response.get("decidedBy") != "user":
                        problems.append("approved, but the decision is %s" % response)
                    if call["result"] != "tool-output-available" or not made[cid]:
                        problems.append("approved risky_tool (%s): result %s, %d calls"
                                        % (cid, call["result"], len(made[cid])))
                else:
                    by = "user" if scenario == "deny" else "system"
                    if response.get("approved") is not False or response.get("decidedBy") != by:
                        problems.append("%s, but the decision is %s" % (scenario, response))
                    if call["result"] != "tool-output-denied":
                        problems.append("%s risky_tool (%s): result %s" % (scenario, cid, call["result"]))
                    if made[cid] or call["starts"]:
                        problems.append("%s risky_tool (%s) ran: %d calls, %d tool-started"
                                        % (scenario, cid, len(made[cid]), len(call["starts"])))
        return problems

    def check_leftovers(self, redis):
        """Once everything ended: no job left in the jobs stream or pending, no deadline left."""
        deadline = time.monotonic() + 10
        while True:
            jobs = redis.call("XLEN", PREFIX + ":jobs")
            try:
                pending = redis.call("XPENDING", PREFIX + ":jobs", "workers")[0]
            except RedisError:
                pending = 0
            deadlines = redis.call("ZCARD", PREFIX + ":deadlines")
            if not (jobs or pending or deadlines) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if jobs or pending or deadlines:
            entries = redis.call("XRANGE", PREFIX + ":jobs", "-", "+", "COUNT", 5)
            self.violations.add("after every execution ended: %d entries in %s:jobs (%d pending), %d deadlines; "
                                "jobs: %s" % (jobs, PREFIX, pending, deadlines, short(entries, 300)))

    # -- the report ---------------------------------------------------------------------------------------------

    def log_lines(self, execution_id, lines=3):
        found = []
        for proc in self.gateways + self.workers:
            for line in proc.tail(lines, needle=execution_id):
                found.append("    %s: %s" % (proc.name, short(line, 300)))
        return found[-lines:]

    def report(self):
        items = self.violations.items
        shown_internal = False
        for number, (line, execution_id, extra) in enumerate(items):
            if number >= 60:
                print("chaos: … %d more violations" % (len(items) - number))
                break
            print("violation: " + line)
            if "answered 500" in line and not shown_internal:
                # The gateway logs why (its lines name the request, not the execution): show each distinct reason.
                shown_internal = True
                reasons = collections.OrderedDict()
                for gateway in self.gateways:
                    for text in gateway.tail(10000, needle="internal error"):
                        reasons.setdefault(re.sub(r"^\S+ |hb\.request\.id=\S+ ", "", text), (gateway.name, text))
                for name, text in list(reasons.values())[-3:]:
                    print("    %s: %s" % (name, short(text, 300)))
            if number < 15:
                for text in extra:
                    print(text)
                if execution_id:
                    for text in self.log_lines(execution_id):
                        print(text)
        notes = []
        if self.counts["failed-after-3-aborts"]:
            notes.append("%d executions failed after 3 aborted turns in a row (documented)"
                         % self.counts["failed-after-3-aborts"])
        if self.args.verbose:
            scenarios = collections.Counter(e.scenario for e in self.executions)
            notes.append("scenarios %s; worker kills %d, gateway kills %d; reconnects %d; POST retries %d; replays %d; "
                         "model requests %d; tool calls %d; turns aborted %d; tool reruns %d; later claims (resumes, takeovers) %d; leases lost (fenced) %d"
                         % (dict(sorted(scenarios.items())), self.counts["worker-kills"], self.counts["gateway-kills"],
                            sum(e.reconnects for e in self.executions),
                            sum(max(0, e.posts - 1) for e in self.executions),
                            sum(e.replayed for e in self.executions), self.model.calls,
                            sum(len(c) for c in self.tools.snapshot().values()), self.counts["turns-aborted"],
                            self.counts["tool-reruns"], self.counts["later-claims"],
                            sum(len(w.tail(10 ** 6, needle="lost the lease of")) for w in self.workers)))
        for note in notes:
            print("chaos: note: " + note)
        print("chaos: executions=%d kills=%d stops=%d restarts=%d events=%d violations=%d"
              % (len(self.executions), self.counts["kills"], self.counts["stops"], self.counts["restarts"],
                 self.counts["events"], len(items)))
        sys.stdout.flush()
        return 0 if not items else 1

    def cleanup(self):
        for proc in reversed(self.procs):
            try:
                if proc is self.nginx and proc.alive():
                    proc.send(signal.SIGTERM)  # fast shutdown (SIGQUIT would wait for the open streams)
                    try:
                        proc.popen.wait(3)
                    except subprocess.TimeoutExpired:
                        pass
                if proc.stopped:
                    proc.send(signal.SIGCONT)
                proc.kill_group()  # nginx's workers too, and anything else left in the child's process group
            except Exception:
                pass
        for server in (self.model.server, self.tools.server):
            if server is not None:
                try:
                    server.shutdown()
                    server.server_close()
                except Exception:
                    pass
        self.remove_tmp()


def main():
    parser = argparse.ArgumentParser(prog="scripts/chaos", description="Chaos test of Tether (see scripts/chaos).")
    parser.add_argument("--duration", type=float, default=30, help="seconds of chaos (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the chaos schedule and the scenarios")
    parser.add_argument("--tether", default=os.path.join(ROOT, ".build", "debug", "tether"),
                        help="the tether executable (default .build/debug/tether)")
    parser.add_argument("--executions-in-flight", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, Redis files)")
    parser.add_argument("--verbose", action="store_true", help="one more line of figures")
    args = parser.parse_args()
    if args.duration <= 0 or args.executions_in_flight < 1:
        parser.error("--duration and --executions-in-flight must be positive")
    run_harness(Harness, args)


if __name__ == "__main__":
    main()
