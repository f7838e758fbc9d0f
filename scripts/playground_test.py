#!/usr/bin/env python3
"""Headless-Chromium test of the web playground (Sources/TetherGateway/Resources/playground).

Python 3 standard library only: it speaks the W3C WebDriver protocol to chromedriver itself. The process plumbing it
shares with scripts/chaos.py (child processes, free ports, redis-server, the private copy of the tether binary, the
signal handling around the run) is in scripts/tether_procs.py.

In a temporary folder it starts a redis-server, one `tether worker` and one `tether gateway` (the demo agent, its
tokens slowed down so that a reply takes seconds), makes an API key, and drives the page in headless Chromium:

  0. serving: the gateway serves the page at / and its script and style at /playground/…, byte for byte the files
     of the working tree (with --proxy the test serves those files itself through a small proxy in front of the
     gateway, to try edits of the page without a rebuild);
  1. gateway SIGKILL: the page's first message has a long reply; once some of it is shown, the gateway is
     SIGKILLed; the page must say it is reconnecting; the gateway is started again on the same port; the page must
     finish the reply, and its text must equal exactly the text the execution logged (read independently from the
     stream), nothing lost and nothing twice;
  2. approval: a follow-up on the same conversation makes the demo agent call send_email; the page shows the tool
     card with Approve and Deny; the test types a reason and approves; the reply ends with the demo's "Done: I sent
     the email to …", the status reads completed (a screenshot is taken then, for --screenshot);
  and no JavaScript error on the page at any time.

One line per check, then a summary; exit status 0 iff every check passed.

Usage: python3 scripts/playground_test.py --tether PATH [--screenshot docs/playground.png] [--keep] [--proxy]
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import shutil
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tether_procs, from any working directory
import tether_procs  # noqa: E402
from tether_procs import ROOT, QuietHTTPServer, free_port, http_request, run_harness  # noqa: E402

PLAYGROUND = os.path.join(ROOT, "Sources", "TetherGateway", "Resources", "playground")
PREFIX = "pgtest"
TENANT = "playground"
AGENT = "demo"
TOKEN_DELAY_MS = 120
EMAIL_MESSAGE = "Please send an email to bob@example.com"
EMAIL_DONE = "Done: I sent the email to bob@example.com"
LONG_MESSAGE = "Hello there, tell me something"
LONG_REPLY_START = "Hello! I am Tether's demo agent."
APPROVAL_REASON = "Looks good to me"
CRASH_MESSAGE = "Hi again, say something nice"  # no word the demo acts on (weather, time, email, count to)
LEASE_SECONDS = 2  # a SIGKILLed worker's execution is taken over this soon
TYPED_EVENTS = {"data-operation", "tool-approval-request", "tool-approval-response", "tool-output-available",
                "tool-output-error", "tool-output-denied"}
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver web element identifier


class CheckFailed(Exception):
    pass


def short(text, limit=600):
    return tether_procs.short(text, limit)


# ---------------------------------------------------------------------------------------------------------------
# SSE, as the test reads the execution's log independently of the page.


def parse_sse(text):
    """Frames of an SSE body: a list of (id or None, data)."""
    frames, data, frame_id = [], [], None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                frames.append((frame_id, "\n".join(data)))
            data, frame_id = [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "id":
            frame_id = value
    return frames


def typed_event(content):
    if not (content.startswith("{") and content.endswith("}")):
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"] in TYPED_EVENTS:
        return value
    return None


def logged_text(frames):
    """The reply text of an execution: the plain-text content of its turns, aborted turns dropped."""
    turns, order, current, finished = {}, [], None, False
    for _, data in frames:
        chunk = json.loads(data)
        choice = chunk["choices"][0]
        content = choice.get("delta", {}).get("content")
        if isinstance(content, str) and content:
            event = typed_event(content)
            if event is None:
                if current is None:
                    current = "(no turn)"
                    turns[current] = []
                    order.append(current)
                turns[current].append(content)
            elif event["type"] == "data-operation":
                operation = event.get("data") or {}
                if operation.get("type") == "turn-started":
                    current = operation["turnId"]
                    turns[current] = []
                    order.append(current)
                elif operation.get("type") == "turn-aborted":
                    turns.pop(operation["turnId"], None)
                    if current == operation["turnId"]:
                        current = None
        if choice.get("finish_reason") is not None:
            finished = True
    return "".join("".join(turns[turn]) for turn in order if turn in turns), finished


# ---------------------------------------------------------------------------------------------------------------
# Until the gateway serves the playground itself: the working tree's files, and /run/api/* proxied to the gateway.


class PlaygroundProxy:
    FILES = {
        "/": ("index.html", "text/html; charset=utf-8"),
        "/playground/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
        "/playground/playground.css": ("playground.css", "text/css; charset=utf-8"),
    }
    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
                  "host", "content-length"}

    def __init__(self, port, upstream_port):
        self.port = port
        self.upstream_port = upstream_port
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format, *args):
                if os.environ.get("PLAYGROUND_TEST_DEBUG"):
                    print("proxy: %.3f %s" % (time.time(), format % args), file=sys.stderr)

            def do_GET(self):
                proxy.handle(self)

            do_POST = do_GET
            do_HEAD = do_GET
            do_OPTIONS = do_GET

        self.server = QuietHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, name="playground-proxy", daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, handler):
        path = handler.path.split("?", 1)[0]
        if path in self.FILES and handler.command in ("GET", "HEAD"):
            name, content_type = self.FILES[path]
            with open(os.path.join(PLAYGROUND, name), "rb") as file:
                data = file.read()
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            # The headers the gateway sends with the playground (Gateway+Playground.swift), CSP included, so that
            # the page is tested under the same policy.
            handler.send_header("Cache-Control", "no-cache")
            handler.send_header("X-Content-Type-Options", "nosniff")
            handler.send_header("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
            handler.end_headers()
            if handler.command == "GET":
                handler.wfile.write(data)
            return
        if not path.startswith("/run/api/"):
            self.reply(handler, 404, {"error": "not found", "code": "route_not_found"})
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in self.HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            try:
                upstream.request(handler.command, handler.path, body=body, headers=headers)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException) as error:
                self.reply(handler, 502, {"error": "the gateway is unreachable: %s" % error, "code": "bad_gateway"})
                return
            handler.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in self.HOP_BY_HOP:
                    handler.send_header(name, value)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            try:
                while True:
                    data = response.read1(65536)
                    if not data:
                        break
                    handler.wfile.write(data)
                    handler.wfile.flush()
            except (OSError, http.client.HTTPException):
                # The gateway died under the stream: cut the browser's connection too, as a dead gateway would.
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            upstream.close()

    @staticmethod
    def reply(handler, status, body):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


# ---------------------------------------------------------------------------------------------------------------
# WebDriver (W3C), over http.client.


class WebDriverError(Exception):
    pass


class WebDriver:
    def __init__(self, port):
        self.port = port
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json; charset=utf-8"})
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            value = json.loads(text).get("value") if text else None
        except ValueError:
            raise WebDriverError("%s %s: HTTP %d, not JSON: %s" % (method, path, response.status, short(text)))
        if response.status != 200:
            if isinstance(value, dict):
                raise WebDriverError("%s %s: %s: %s" % (method, path, value.get("error"), short(value.get("message"))))
            raise WebDriverError("%s %s: HTTP %d %s" % (method, path, response.status, short(text)))
        return value

    def start(self, binary, user_data_dir):
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                         "--user-data-dir=" + user_data_dir, "--no-first-run", "--no-default-browser-check",
                         "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars"],
            },
        }}}
        value = self.call("POST", "/session", capabilities, timeout=90)
        self.session = value["sessionId"]

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", "/session/" + self.session, timeout=15)
            except Exception:
                pass
            self.session = None

    def s(self, path):
        return "/session/%s%s" % (self.session, path)

    def go(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def find(self, css):
        return self.reference(self.call("POST", self.s("/element"), {"using": "css selector", "value": css}))

    @staticmethod
    def reference(value):
        if isinstance(value, dict) and ELEMENT in value:
            return value[ELEMENT]
        raise WebDriverError("not a web element reference: %s" % short(value))

    def find_all(self, css):
        return [self.reference(v) for v in self.call("POST", self.s("/elements"), {"using": "css selector", "value": css})]

    def type(self, element, text):
        self.call("POST", self.s("/element/%s/value" % element), {"text": text})

    def clear(self, element):
        self.call("POST", self.s("/element/%s/clear" % element), {})

    def click(self, element):
        self.call("POST", self.s("/element/%s/click" % element), {})

    def script(self, source, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": source, "args": list(args)})

    def screenshot(self):
        return base64.b64decode(self.call("GET", self.s("/screenshot")))


# What the test reads from the page, in one round trip.
SNAPSHOT = r"""
const q = (s) => document.querySelector(s);
const text = (s) => { const e = q(s); return e ? e.textContent.trim() : null; };
const replies = Array.from(document.querySelectorAll('.assistant-text')).map((e) => e.textContent);
const cards = Array.from(document.querySelectorAll('.tool-card')).map((c) => ({
  id: c.dataset.toolCallId, state: c.dataset.state, decision: c.dataset.decision || null,
  text: c.innerText,
}));
const approve = q('.approve');
const conn = q('#connection');
return {
  loaded: !!window.tetherPlayground,
  connection: conn ? conn.dataset.state : null,
  connectionText: conn ? conn.textContent.trim() : null,
  status: text('#status'),
  error: q('#error') && !q('#error').hidden ? q('#error').textContent.trim() : null,
  sendEnabled: !!(q('#send') && !q('#send').disabled),
  executionId: text('#execution-id'),
  conversationId: text('#conversation-id'),
  replies: replies,
  cards: cards,
  approveEnabled: !!(approve && !approve.disabled),
  approveCount: document.querySelectorAll('.approve').length,
  visible: document.body ? document.body.innerText : '',
  errors: window.__playgroundErrors || ['window.__playgroundErrors is missing: playground.js did not run'],
  current: window.tetherPlayground && window.tetherPlayground.current ? window.tetherPlayground.current() : null,
};
"""


# The page's parser on cases a live stream rarely shows (run in the page; needs the page loaded).
PARSER_CASES = r"""
const pg = window.tetherPlayground;
const parse = (chunks) => {
  const out = [];
  const parser = new pg.SSEParser((f) => out.push([f.id, f.data]));
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return out;
};
const whole = 'id: 1-0\ndata: {"a":1}\n\n';
const cases = [
  ['one frame', parse([whole]), [['1-0', '{"a":1}']]],
  ['one character at a time', parse(whole.split('')), [['1-0', '{"a":1}']]],
  ['CRLF split between chunks', parse(['id: 2-0\r', '\ndata: x\r\n', 'data: y\r\n\r', '\n']), [['2-0', 'x\ny']]],
  ['lone CR line ends', parse(['id: 3-0\rdata: q\r\r']), [['3-0', 'q']]],
  ['comments, no space after the colon', parse([': ping\n\nid:4-0\ndata:z\n\n: ping\n\n']), [['4-0', 'z']]],
  ['a frame without id (gap frame)', parse(['data: g\n\nid: 5-0\ndata: h\n\n']), [[null, 'g'], ['5-0', 'h']]],
  ['an unfinished frame is dropped', parse(['id: 6-0\ndata: done\n\ndata: partial']), [['6-0', 'done']]],
  ['multi-line data', parse(['data: a\ndata:\ndata: b\n\n']), [[null, 'a\n\nb']]],
  ['typed: data-operation', !!pg.typedEvent('{"type":"data-operation","data":{"type":"turn-started"}}'), true],
  ['typed: members sorted (approvalId first)', !!pg.typedEvent('{"approvalId":"a","toolCallId":"c","type":"tool-approval-request"}'), true],
  ['typed: unknown type is text', pg.typedEvent('{"type":"hello"}'), null],
  ['typed: not JSON is text', pg.typedEvent('{type: oops}'), null],
  ['typed: plain text', pg.typedEvent('Hello {"type":"data-operation"}'), null],
  ['ids: 10-0 after 9-5', pg.idAfter('10-0', '9-5'), true],
  ['ids: 1-10 after 1-9', pg.idAfter('1-10', '1-9'), true],
  ['ids: 1796305186837-0 after 1796305186836-9', pg.idAfter('1796305186837-0', '1796305186836-9'), true],
  ['ids: equal is not after', pg.idAfter('5-0', '5-0'), false],
  ['ids: older is not after', pg.idAfter('5-0', '5-1'), false],
];
return cases.map(([name, got, want]) => ({name, got, want}));
"""


# ---------------------------------------------------------------------------------------------------------------


class Harness(tether_procs.Harness):
    prog = "playground_test"
    tmp_prefix = "tether-playground."
    redis_key_prefix = PREFIX
    tether_variables = {"TETHER_DEMO_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS), "TETHER_LEASE_SECONDS": str(LEASE_SECONDS)}

    def __init__(self, args):
        super().__init__(args)
        self.gateway = None
        self.worker = None
        self.chromedriver = None
        self.driver = None
        self.proxy = None
        self.key = None
        self.results = []
        self.seen_errors = []
        self.page_opened = False

    # -- processes ----------------------------------------------------------------------------------------------

    def write_config(self):
        self.config = os.path.join(self.tmp, "tether.yaml")
        with open(self.config, "w") as file:
            file.write("redis:\n  url: redis://127.0.0.1:%d/0\n  prefix: %s\n"
                       "http:\n  host: 127.0.0.1\n  port: 0\n  heartbeatSeconds: 5\n"
                       "demo:\n  tokenDelayMilliseconds: %d\n" % (self.redis_port, PREFIX, TOKEN_DELAY_MS))

    def start_tether(self):
        self.gateway_port = free_port(self.ports)
        self.worker = self.spawn("worker", [self.tether, "worker", "--config", self.config], self.tether_env())
        self.gateway = self.spawn("gateway", [self.tether, "gateway", "--config", self.config],
                                  self.tether_env(TETHER_PORT=str(self.gateway_port)))
        self.wait_http(self.gateway_port, self.gateway)

    def start_browser(self):
        port = free_port(self.ports)
        self.chromedriver = self.spawn("chromedriver", [self.chromedriver_path, "--port=%d" % port,
                                                        "--log-path=" + os.path.join(self.tmp, "logs", "chromedriver-verbose.log")])
        self.driver = WebDriver(port)
        deadline = time.monotonic() + 30
        while True:
            if not self.chromedriver.alive():
                raise RuntimeError("chromedriver exited: " + " | ".join(self.chromedriver.tail()))
            try:
                if (self.driver.call("GET", "/status", timeout=2) or {}).get("ready"):
                    break
            except (OSError, WebDriverError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not get ready")
            time.sleep(0.05)
        self.driver.start(self.chromium, os.path.join(self.tmp, "chromium-profile"))

    # -- the page -----------------------------------------------------------------------------------------------

    def snapshot(self):
        state = self.driver.script(SNAPSHOT)
        for error in state.get("errors") or []:
            if error not in self.seen_errors:
                self.seen_errors.append(error)
        return state

    def describe(self, state):
        return ("connection=%s (%r), status=%r, execution=%r; page text: %s"
                % (state.get("connection"), state.get("connectionText"), state.get("status"),
                   state.get("executionId"), short(state.get("visible"), 1200)))

    def wait(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        state = None
        while True:
            state = self.snapshot()
            if state.get("errors"):
                raise CheckFailed("JavaScript error on the page while waiting for %s: %s; %s"
                                  % (what, short(state["errors"]), self.describe(state)))
            try:
                if predicate(state):
                    return state
            except (KeyError, IndexError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise CheckFailed("timed out after %.0f s waiting for %s; %s" % (timeout, what, self.describe(state)))
            time.sleep(0.05)

    def moment(self, name):
        """A screenshot of a moment in the temporary folder (kept with --keep), for people debugging the page."""
        try:
            directory = os.path.join(self.tmp, "screenshots")
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, name + ".png"), "wb") as file:
                file.write(self.driver.screenshot())
        except (OSError, WebDriverError, http.client.HTTPException, ValueError):
            pass

    def send_message(self, text):
        box = self.driver.find("#message")
        self.driver.clear(box)
        self.driver.type(box, text)
        self.driver.click(self.driver.find("#send"))

    def execution(self, execution_id):
        status, _, body = http_request(self.gateway_port, "GET", "/run/api/executions/" + execution_id,
                                       headers={"Authorization": "Bearer " + self.key})
        if status != 200:
            raise CheckFailed("GET /run/api/executions/%s: HTTP %d %s" % (execution_id, status, short(body)))
        return json.loads(body)

    def logged_stream(self, execution_id):
        status, headers, body = http_request(self.gateway_port, "GET", "/run/api/executions/%s/stream" % execution_id,
                                             headers={"Authorization": "Bearer " + self.key}, timeout=30)
        if status != 200:
            raise CheckFailed("GET /run/api/executions/%s/stream: HTTP %d %s" % (execution_id, status, short(body)))
        return parse_sse(body.decode("utf-8"))

    # -- the checks ---------------------------------------------------------------------------------------------

    def check_serving(self):
        """Where the page comes from: the gateway itself (with --proxy, the working tree's files through our proxy, to
        try edits of the page without a rebuild)."""
        try:
            status, headers, body = http_request(self.gateway_port, "GET", "/")
        except (OSError, http.client.HTTPException) as error:
            raise CheckFailed("GET / on the gateway failed: %s" % error)
        served = status == 200 and headers.get("content-type", "").startswith("text/html")
        if served and not self.args.proxy:
            problems = []
            for path, kind in (("/playground/playground.js", "javascript"), ("/playground/playground.css", "text/css")):
                code, file_headers, data = http_request(self.gateway_port, "GET", path)
                content_type = file_headers.get("content-type", "")
                if code != 200 or kind not in content_type:
                    problems.append("%s: HTTP %d, Content-Type %r" % (path, code, content_type))
                else:
                    with open(os.path.join(PLAYGROUND, os.path.basename(path)), "rb") as file:
                        if file.read() != data:
                            problems.append("%s differs from the working tree's file (rebuild tether)" % path)
            with open(os.path.join(PLAYGROUND, "index.html"), "rb") as file:
                if file.read() != body:
                    problems.append("/ differs from the working tree's index.html (rebuild tether)")
            if problems:
                raise CheckFailed("the gateway serves / but: " + "; ".join(problems))
            self.page_port = self.gateway_port
            return "the gateway serves /, /playground/playground.js and /playground/playground.css"
        if not self.args.proxy:
            raise CheckFailed("the gateway does not serve the playground at / (HTTP %d, %s)"
                              % (status, headers.get("content-type")))
        self.proxy = PlaygroundProxy(free_port(self.ports), self.gateway_port)
        self.page_port = self.proxy.port
        return "--proxy: the working tree's files through a local proxy on :%d" % self.proxy.port

    def open_page(self):
        driver = self.driver
        driver.go("http://127.0.0.1:%d/" % self.page_port)
        self.page_opened = True
        state = self.wait("the page to load playground.js", lambda s: s["loaded"], 15)
        if state["connection"] != "idle":
            raise CheckFailed("before any message the indicator should be idle; " + self.describe(state))
        key_box = driver.find("#api-key")
        driver.clear(key_box)
        driver.type(key_box, self.key)

    def check_bad_key(self):
        """A refused key: the gateway's {error, code} shown readably, nothing left running; then a new conversation."""
        driver = self.driver
        key_box = driver.find("#api-key")
        driver.clear(key_box)
        driver.type(key_box, "tk_not_a_real_key")
        self.send_message("Hello?")
        state = self.wait("the refused key's error", lambda s: s["error"] and s["sendEnabled"], 10)
        if "401" not in state["error"] or "unauthorized" not in state["error"] or state["connection"] != "idle":
            raise CheckFailed("expected a readable 401 unauthorized and an idle indicator; error %r; %s"
                              % (state["error"], self.describe(state)))
        shown = state["error"]
        driver.clear(key_box)
        driver.type(key_box, self.key)
        driver.click(driver.find("#new-conversation"))
        self.wait("a new, empty conversation", lambda s: not s["replies"] and not s["error"], 5)
        return "shown: %r" % short(shown, 120)

    def check_gateway_kill(self):
        """The page's first message: a long plain reply, its gateway SIGKILLed in the middle."""
        self.send_message(LONG_MESSAGE)
        state = self.wait("some text of the reply while it still runs",
                          lambda s: len(s["replies"]) == 1 and len(s["replies"][0]) > 0 and s["status"] == "running"
                          and s["connection"] == "streaming", 20)
        execution_id = state["executionId"]
        shown_before = state["replies"][0]
        self.gateway.kill()
        killed_at = time.monotonic()
        state = self.wait("the indicator to say reconnecting after the gateway's SIGKILL",
                          lambda s: s["connection"] == "reconnecting", 10)
        self.moment("gateway-killed")
        if state["status"] != "running":
            raise CheckFailed("the execution finished before the gateway was killed; slow the demo down; "
                              + self.describe(state))
        time.sleep(1.0)  # the worker goes on appending while no gateway runs: the page must catch up on those too
        self.gateway.start()
        self.wait_http(self.gateway_port, self.gateway)
        restarted_after = time.monotonic() - killed_at
        state = self.wait("the reply to finish after the gateway came back",
                          lambda s: s["status"] == "completed" and s["connection"] == "closed", 30)
        record = self.execution(execution_id)
        if record["status"] != "completed":
            raise CheckFailed("the execution's status is %r" % record["status"])
        if record["conversationId"] != state["conversationId"]:
            raise CheckFailed("the execution's conversation %r is not the page's %r"
                              % (record["conversationId"], state["conversationId"]))
        self.conversation_id = record["conversationId"]
        expected, finished = logged_text(self.logged_stream(execution_id))
        shown = state["replies"][0]
        if not finished:
            raise CheckFailed("the logged stream of %s has no final frame" % execution_id)
        if shown != expected:
            raise CheckFailed("the page's reply differs from the logged text (lost or duplicated text):\n  page:   %r\n"
                              "  logged: %r" % (shown, expected))
        if not expected.startswith(LONG_REPLY_START) or not expected.startswith(shown_before):
            raise CheckFailed("unexpected reply %r (before the kill the page showed %r)" % (expected, shown_before))
        reconnects = (state.get("current") or {}).get("reconnects")
        return ("gateway SIGKILLed after %d of %d characters, back after %.1f s; the page reconnected (%s attempts) "
                "and its reply equals the log exactly" % (len(shown_before), len(expected), restarted_after, reconnects))

    def check_approval(self):
        """The follow-up on the same conversation: send_email, approved with a reason from the tool card."""
        driver = self.driver
        self.send_message(EMAIL_MESSAGE)
        state = self.wait("the Approve button of send_email", lambda s: s["approveEnabled"], 20)
        card = next((c for c in state["cards"] if "send_email" in c["text"]), None)
        if card is None or "bob@example.com" not in card["text"]:
            raise CheckFailed("no tool card for send_email with its arguments; cards: %s" % short(state["cards"]))
        self.wait("the status to say suspended", lambda s: s["status"] == "suspended", 10)
        self.moment("approval-requested")
        storage = driver.script("return [sessionStorage.getItem('tether.apiKey'), localStorage.length];")
        if storage[0] != self.key or storage[1] != 0:
            raise CheckFailed("the key should be in sessionStorage['tether.apiKey'] and nothing in localStorage: %r"
                              % storage)
        execution_id = state["executionId"]
        record = self.execution(execution_id)
        if record["status"] != "suspended" or not record.get("pendingApprovals"):
            raise CheckFailed("the execution should wait for approval: %s" % short(record))
        if record["conversationId"] != self.conversation_id:
            raise CheckFailed("the follow-up ran on conversation %r, not on the page's %r"
                              % (record["conversationId"], self.conversation_id))
        card_selector = '.tool-card[data-tool-call-id="%s"]' % card["id"]
        driver.type(driver.find(card_selector + " .reason"), APPROVAL_REASON)
        driver.click(driver.find(card_selector + " .approve"))
        state = self.wait("the reply to finish with %r and the status to say completed" % EMAIL_DONE,
                          lambda s: s["status"] == "completed" and EMAIL_DONE in s["replies"][-1], 20)
        card = next(c for c in state["cards"] if c["id"] == card["id"])
        if card["decision"] != "approved" or APPROVAL_REASON not in card["text"] or card["state"] != "done":
            raise CheckFailed("the tool card should show the approval, its reason and the output: %s" % short(card))
        if state["connection"] != "closed" or len(state["replies"]) != 2:
            raise CheckFailed("after the final frame: two replies and the indicator closed; " + self.describe(state))
        expected, finished = logged_text(self.logged_stream(execution_id))
        if not finished or state["replies"][-1] != expected:
            raise CheckFailed("the reply %r is not the logged text %r" % (state["replies"][-1], expected))
        link = driver.script("const a = document.querySelector('#raw-stream'); return a && !a.hidden ? a.href : null;")
        if not link or "/stream?token=st1." not in link:
            raise CheckFailed("no link to the raw stream with a stream token: %r" % link)
        if self.args.screenshot:
            png = driver.screenshot()
            directory = os.path.dirname(os.path.abspath(self.args.screenshot))
            os.makedirs(directory, exist_ok=True)
            with open(self.args.screenshot, "wb") as file:
                file.write(png)
        return "approved send_email with a reason on the same conversation; reply %r" % short(expected, 90)

    def check_parser(self):
        """The page's own SSE parser, typed-event test and id order, on the cases a live stream rarely shows."""
        self.open_page()
        results = self.driver.script(PARSER_CASES)
        bad = [case for case in results if case["got"] != case["want"]]
        if bad:
            raise CheckFailed("; ".join("%s: got %s, want %s" % (c["name"], json.dumps(c["got"]), json.dumps(c["want"]))
                                        for c in bad))
        return "%d cases (CRLF split across chunks, lone CR, comments, multi-line data, no id, ids compared as numbers)" % len(results)

    def check_worker_kill(self):
        """A new conversation; its worker SIGKILLed mid-turn: the turn is voided (turn-aborted) and redone, and the
        page drops the voided text."""
        driver = self.driver
        driver.click(driver.find("#new-conversation"))
        state = self.wait("a new, empty conversation", lambda s: s["conversationId"] != self.conversation_id
                          and not s["replies"] and s["connection"] == "idle", 5)
        self.send_message(CRASH_MESSAGE)
        state = self.wait("some text of the reply while it still runs",
                          lambda s: len(s["replies"]) == 1 and len(s["replies"][0]) > 0 and s["status"] == "running", 20)
        execution_id = state["executionId"]
        self.worker.kill()
        self.worker.start()
        state = self.wait("the reply to finish after the worker's SIGKILL (lease %d s)" % LEASE_SECONDS,
                          lambda s: s["status"] == "completed" and s["connection"] == "closed", 40)
        frames = self.logged_stream(execution_id)
        aborted = [data for _, data in frames if "turn-aborted" in data]
        expected, finished = logged_text(frames)
        shown = state["replies"][0]
        if not aborted:
            raise CheckFailed("the log of %s has no turn-aborted: the worker was killed too late to test it" % execution_id)
        if not finished or shown != expected:
            raise CheckFailed("the page's reply differs from the log without its aborted turn:\n  page:   %r\n"
                              "  logged: %r" % (shown, expected))
        if shown.count(LONG_REPLY_START) != 1:
            raise CheckFailed("the reply should say %r once: %r" % (LONG_REPLY_START, shown))
        if "cut short" not in state["visible"]:
            raise CheckFailed("the page should say a turn was cut short; " + self.describe(state))
        record = self.execution(execution_id)
        if record["conversationId"] != state["conversationId"] or record["status"] != "completed":
            raise CheckFailed("the execution's record: %s" % short(record))
        return "worker SIGKILLed mid-turn; %d turn-aborted; the page dropped the voided text and shows the redone turn once" % len(aborted)

    def check_no_js_errors(self):
        self.snapshot()
        if self.seen_errors:
            raise CheckFailed("JavaScript errors: %s" % short(self.seen_errors))
        logs = []
        try:
            logs = self.driver.call("POST", self.driver.s("/se/log"), {"type": "browser"})
        except WebDriverError:
            pass  # not every chromedriver has the legacy log endpoint
        if os.environ.get("PLAYGROUND_TEST_DEBUG"):
            print(json.dumps(logs, indent=1))
        severe = [entry for entry in logs or [] if entry.get("level") == "SEVERE"
                  and "Failed to load resource" not in entry.get("message", "")
                  and "net::ERR_" not in entry.get("message", "")]
        if severe:
            raise CheckFailed("console errors: %s" % short([entry.get("message") for entry in severe]))
        return "none (window.onerror, unhandledrejection, %d console entries checked)" % len(logs or [])

    # -- driving ------------------------------------------------------------------------------------------------

    def run(self):
        if not (os.path.isfile(self.tether) and os.access(self.tether, os.X_OK)):
            print("playground_test: %s is not an executable (pass --tether PATH)" % self.tether, file=sys.stderr)
            return 2
        self.chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        self.chromedriver_path = shutil.which("chromedriver")
        self.redis_server = shutil.which("redis-server")
        missing = [name for name, path in (("chromium (Debian package chromium)", self.chromium),
                                           ("chromedriver (Debian package chromium-driver)", self.chromedriver_path),
                                           ("redis-server (Debian package redis-server)", self.redis_server))
                   if not path]
        if missing:
            print("playground_test: not on PATH: %s; on Debian: apt-get install -y chromium chromium-driver "
                  "redis-server" % ", ".join(missing), file=sys.stderr)
            return 2
        self.copy_tether()
        started = time.monotonic()
        self.start_redis(["--save", "", "--appendonly", "no"], server=self.redis_server)  # no persistence
        self.write_config()
        self.key = self.new_api_key(self.config, TENANT, AGENT, cwd=self.tmp)
        self.start_tether()
        checks = [("serving", self.check_serving), ("browser", None), ("sse-parser", self.check_parser),
                  ("bad-key", self.check_bad_key),
                  ("gateway-kill", self.check_gateway_kill), ("approval", self.check_approval),
                  ("worker-kill", self.check_worker_kill), ("no-js-errors", self.check_no_js_errors)]
        failed = False
        for name, check in checks:
            began = time.monotonic()
            try:
                if check is None:
                    self.start_browser()
                    continue
                if failed and (name != "no-js-errors" or not self.page_opened):
                    self.results.append((name, None, "skipped (an earlier check failed)"))
                    print("SKIP  %-13s an earlier check failed" % name)
                    continue
                detail = check()
                self.results.append((name, True, detail))
                print("ok    %-13s %s (%.1f s)" % (name, detail, time.monotonic() - began))
            except (CheckFailed, WebDriverError) as error:
                if self.driver is not None and self.driver.session:
                    self.moment("failed-" + name)
                failed = True
                self.results.append((name, False, str(error)))
                print("FAIL  %-13s %s" % (name, error))
            sys.stdout.flush()
        passed = sum(1 for _, ok, _ in self.results if ok)
        failures = sum(1 for _, ok, _ in self.results if ok is False)
        print("playground_test: %d passed, %d failed, %d skipped in %.1f s"
              % (passed, failures, len(self.results) - passed - failures, time.monotonic() - started))
        if failures:
            for proc in (self.gateway, self.worker):
                if proc is not None:
                    print("  %s log: %s" % (proc.name, " | ".join(proc.tail(5))))
        return 1 if failures else 0

    def cleanup(self):
        sys.stdout.flush()
        if self.driver is not None:
            self.driver.quit()
        if self.proxy is not None:
            try:
                self.proxy.close()
            except Exception:
                pass
        for proc in reversed(self.procs):
            try:
                proc.kill_group()
            except Exception:
                pass
        self.remove_tmp()


def main():
    parser = argparse.ArgumentParser(prog="scripts/playground_test.py",
                                     description="Headless-Chromium test of the web playground.")
    parser.add_argument("--tether", required=True, help="the tether executable (a copy of it is run)")
    parser.add_argument("--screenshot", help="write a PNG of the page after the approval round here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument("--proxy", action="store_true",
                        help="serve the working tree's playground files through a local proxy even if the gateway "
                             "serves them (to try page changes without rebuilding)")
    run_harness(Harness, parser.parse_args())


if __name__ == "__main__":
    main()
