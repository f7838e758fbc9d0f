// Tether playground: create an execution, read its SSE stream with fetch (so that it can send Authorization),
// render the Inkeep-compatible frames, answer approvals, and reconnect with Last-Event-ID when the stream breaks.
// Vanilla JavaScript, no dependencies, no build step.
'use strict';

(function () {
  // -- JS errors, collected for people (the console) and for scripts/playground_test.py -------------------------

  const pageErrors = [];
  window.__playgroundErrors = pageErrors;
  window.addEventListener('error', (event) => {
    pageErrors.push('error: ' + (event.message || String(event.error)) +
      (event.filename ? ' at ' + event.filename + ':' + event.lineno : ''));
  });
  window.addEventListener('unhandledrejection', (event) => {
    const reason = event.reason;
    pageErrors.push('unhandled rejection: ' + (reason && reason.stack ? reason.stack : String(reason)));
  });

  const KEY_STORAGE = 'tether.apiKey';
  const API = '/run/api/executions';
  const BACKOFF_START_MS = 300;
  const BACKOFF_MAX_MS = 3000;
  const SILENCE_LIMIT_MS = 45000; // heartbeats come every 15 s by default: a stream this silent is dead
  // Typed events that travel as a JSON string in delta.content (protocol.md, "Frame types").
  const TYPED_EVENTS = new Set([
    'data-operation', 'tool-approval-request', 'tool-approval-response', 'tool-output-available',
    'tool-output-error', 'tool-output-denied',
  ]);
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

  // -- small helpers ---------------------------------------------------------------------------------------------

  function randomHex(bytes) {
    const values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.from(values, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /** A Redis stream id `ms-seq` as a pair of BigInts, or null. */
  function parseStreamId(text) {
    const match = /^(\d+)-(\d+)$/.exec(text || '');
    return match ? [BigInt(match[1]), BigInt(match[2])] : null;
  }

  /** Whether stream id `a` comes after `b` (numerically, as Redis orders them). */
  function idAfter(a, b) {
    const x = parseStreamId(a);
    const y = parseStreamId(b);
    if (!x || !y) return true; // not a stream id: nothing to compare with, so do not drop it
    return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function pretty(value) {
    if (typeof value === 'string') {
      try {
        return JSON.stringify(JSON.parse(value), null, 2);
      } catch (_) {
        return value;
      }
    }
    try {
      return JSON.stringify(value, null, 2);
    } catch (_) {
      return String(value);
    }
  }

  /** A readable message from a non-2xx response: the JSON `{error, code}` body when there is one. */
  async function describeFailure(response) {
    let text = '';
    try {
      text = await response.text();
    } catch (_) {
      // the body could not be read: the status says enough
    }
    let message = text.trim();
    let code = '';
    try {
      const body = JSON.parse(text);
      if (body && typeof body === 'object') {
        if (typeof body.error === 'string') message = body.error;
        if (typeof body.code === 'string') code = body.code;
      }
    } catch (_) {
      // not JSON: keep the text
    }
    if (!message) message = response.statusText || 'request failed';
    const prefix = response.status === 401 ? 'The API key was refused: ' : '';
    return { status: response.status, code, message: prefix + message + ' (HTTP ' + response.status + (code ? ', ' + code : '') + ')' };
  }

  function retriable(status) {
    return status >= 500 || status === 408 || status === 429;
  }

  /** The typed event a delta.content carries, or null when the content is plain text. */
  function typedEvent(content) {
    if (content.charCodeAt(0) !== 123 /* { */ || content.charCodeAt(content.length - 1) !== 125 /* } */) return null;
    let value;
    try {
      value = JSON.parse(content);
    } catch (_) {
      return null;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) return null;
    if (typeof value.type !== 'string' || !TYPED_EVENTS.has(value.type)) return null;
    return value;
  }

  // -- the SSE parser (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation) --

  class SSEParser {
    constructor(onFrame, onComment) {
      this.onFrame = onFrame;
      this.onComment = onComment || (() => {});
      this.buffer = '';
      this.data = [];
      this.eventType = '';
      this.frameId = null; // the id: of the frame being read, null when it has none (a gap frame)
      this.lastEventId = '';
    }

    /** Feeds decoded text; complete lines are interpreted, a partial line waits for the next call. */
    feed(text) {
      this.buffer += text;
      const buffer = this.buffer;
      let start = 0;
      let index = 0;
      while (index < buffer.length) {
        const code = buffer.charCodeAt(index);
        if (code !== 10 && code !== 13) {
          index += 1;
          continue;
        }
        if (code === 13 && index + 1 === buffer.length) break; // a CR at the end: maybe the first half of CRLF
        this.line(buffer.slice(start, index));
        index += code === 13 && buffer.charCodeAt(index + 1) === 10 ? 2 : 1;
        start = index;
      }
      this.buffer = buffer.slice(start);
    }

    /** The stream ended: a lone CR at the very end still ends its line; an event not yet dispatched is dropped. */
    end() {
      if (this.buffer.endsWith('\r')) this.line(this.buffer.slice(0, -1));
      this.buffer = '';
      this.data = [];
      this.eventType = '';
      this.frameId = null;
    }

    line(line) {
      if (line === '') {
        this.dispatch();
        return;
      }
      if (line.charCodeAt(0) === 58 /* : */) {
        this.onComment(line.slice(1).trim());
        return;
      }
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      switch (field) {
        case 'data':
          this.data.push(value);
          break;
        case 'id':
          if (value.indexOf('\u0000') === -1) {
            this.lastEventId = value;
            this.frameId = value;
          }
          break;
        case 'event':
          this.eventType = value;
          break;
        default:
          break; // retry: and unknown fields are ignored
      }
    }

    dispatch() {
      const data = this.data;
      const frame = { id: this.frameId, lastEventId: this.lastEventId, event: this.eventType || 'message', data: data.join('\n') };
      this.data = [];
      this.eventType = '';
      this.frameId = null;
      if (data.length === 0) return;
      this.onFrame(frame);
    }
  }

  // -- page state ------------------------------------------------------------------------------------------------

  const $ = (selector) => document.querySelector(selector);
  let ui = null;
  let conversationId = newConversationId();
  let current = null; // the execution being shown (a Run)

  function newConversationId() {
    return 'conv_' + randomHex(12);
  }

  function apiKey() {
    return ui.key.value.trim();
  }

  function saveKey() {
    try {
      const value = apiKey();
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      // storage disabled: the key just is not remembered
    }
  }

  function loadKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || '';
    } catch (_) {
      return '';
    }
  }

  const CONNECTION_LABELS = {
    idle: 'Idle', streaming: 'Streaming', reconnecting: 'Reconnecting…', closed: 'Stream closed',
  };

  function setConnection(state, detail) {
    ui.connection.dataset.state = state;
    ui.connectionLabel.textContent = CONNECTION_LABELS[state] + (detail ? ' ' + detail : '');
    ui.connection.title = 'Connection: ' + state;
  }

  function setStatus(status) {
    ui.status.textContent = status || '—';
    ui.status.dataset.status = status || '';
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = !message;
  }

  function nearBottom() {
    const t = ui.transcript;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 80;
  }

  function keepScrolled(wasNearBottom) {
    if (wasNearBottom) ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.newConversation.disabled = busy;
    ui.send.textContent = busy ? 'Running…' : 'Send';
  }

  // -- one execution ---------------------------------------------------------------------------------------------

  class Run {
    constructor(key, text) {
      this.key = key;
      this.text = text;
      this.id = null;
      this.lastId = null; // the id of the last frame rendered
      this.finished = false;
      this.stopped = false;
      this.idempotencyKey = 'pg_' + randomHex(16);
      this.turns = new Map(); // turnId -> {id, span, cards, calls: Map(index -> card)}
      this.currentTurn = null;
      this.cards = new Map(); // toolCallId -> card
      this.statusSeq = 0;
      this.statusApplied = 0;
      this.finishReason = null;
      this.token = null; // {value, expiresAt}
      this.duplicatesSkipped = 0;
      this.reconnects = 0;
      this.buildReply();
    }

    buildReply() {
      const message = el('div', 'message assistant streaming');
      const bubble = el('div', 'bubble');
      this.textEl = el('div', 'assistant-text');
      this.toolsEl = el('div', 'tool-cards');
      this.notesEl = el('div', 'reply-notes');
      bubble.append(this.textEl, this.toolsEl, this.notesEl);
      this.metaEl = el('div', 'meta', 'agent');
      message.append(bubble, this.metaEl);
      this.messageEl = message;
      ui.transcript.append(message);
    }

    headers(extra) {
      return Object.assign({ Authorization: 'Bearer ' + this.key }, extra || {});
    }

    path(suffix) {
      return API + '/' + encodeURIComponent(this.id) + (suffix || '');
    }

    setId(id) {
      if (!id || this.id) return;
      this.id = id;
      if (current === this) {
        ui.executionId.textContent = id;
        ui.cancel.hidden = this.finished;
      }
      this.metaEl.textContent = 'agent · ' + id;
      this.mintToken();
    }

    // -- the connection loop ------------------------------------------------------------------------------------

    async run(body) {
      let delay = BACKOFF_START_MS;
      let attempt = 0; // 0: the first request; then reconnects since the last frame rendered
      while (!this.finished && !this.stopped) {
        if (attempt > 0) {
          this.reconnects += 1;
          setConnection('reconnecting', '(attempt ' + attempt + ')');
          await sleep(delay);
          delay = Math.min(delay * 2, BACKOFF_MAX_MS);
          if (this.finished || this.stopped) break;
        }
        attempt += 1;
        let response;
        const controller = new AbortController();
        try {
          if (!this.id) {
            // The creating POST. Sent again with the same Idempotency-Key after a network error: the gateway then
            // streams the execution the first one created (if it did) from its start, and nothing is created twice.
            response = await fetch(API, {
              method: 'POST',
              headers: this.headers({
                'Content-Type': 'application/json', Accept: 'text/event-stream',
                'Idempotency-Key': this.idempotencyKey,
              }),
              body,
              cache: 'no-store',
              signal: controller.signal,
            });
          } else {
            const headers = this.headers({ Accept: 'text/event-stream' });
            if (this.lastId) headers['Last-Event-ID'] = this.lastId;
            response = await fetch(this.path('/stream'), { headers, cache: 'no-store', signal: controller.signal });
          }
        } catch (error) {
          this.note('Connection failed (' + (error && error.message ? error.message : error) + '); retrying.', true);
          continue;
        }
        if (response.status === 204) {
          // The client already has the final frame: the stream is over.
          this.finish(this.finishReason || 'stop', true);
          break;
        }
        if (!response.ok) {
          const failure = await describeFailure(response);
          if (retriable(response.status)) {
            this.note(failure.message + '; retrying.', true);
            continue;
          }
          this.fail(failure.message);
          break;
        }
        if (!this.id) {
          const location = response.headers.get('Location') || '';
          this.setId(response.headers.get('x-workflow-run-id') || location.split('/').pop() || null);
        }
        setConnection('streaming');
        this.clearTransientNote();
        const rendered = await this.read(response, controller);
        if (rendered > 0) {
          delay = BACKOFF_START_MS;
          attempt = 1; // "attempt N" counts the tries since the stream last moved
        }
        if (!this.finished && !this.transientNote) this.note('The stream ended before the reply did; reconnecting.', true);
      }
    }

    /** Reads one response body to its end; returns how many frames it rendered. */
    async read(response, controller) {
      let rendered = 0;
      const parser = new SSEParser((frame) => {
        if (this.frame(frame)) rendered += 1;
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder('utf-8');
      let silence = null;
      const arm = () => {
        clearTimeout(silence);
        silence = setTimeout(() => controller.abort(), SILENCE_LIMIT_MS);
      };
      arm();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          parser.feed(decoder.decode(value, { stream: true }));
          if (this.finished) break;
        }
        parser.feed(decoder.decode());
        if (this.finished) {
          // The final frame: the gateway ends the response now anyway; nothing more is read from it.
          await reader.cancel().catch(() => {});
        }
      } catch (error) {
        if (!this.finished) this.note('The stream broke (' + (error && error.message ? error.message : error) + ').', true);
      } finally {
        clearTimeout(silence);
        parser.end();
        try {
          reader.releaseLock();
        } catch (_) {
          // a pending read: the body is being cancelled anyway
        }
      }
      return rendered;
    }

    // -- frames -------------------------------------------------------------------------------------------------

    /** Renders one SSE frame; returns false when it was skipped as already rendered. */
    frame(frame) {
      if (this.finished) return false;
      if (frame.id !== null && frame.id !== '') {
        if (this.lastId && !idAfter(frame.id, this.lastId)) {
          this.duplicatesSkipped += 1;
          return false;
        }
        this.lastId = frame.id;
        if (current === this) ui.lastEventId.textContent = frame.id;
      }
      let chunk;
      try {
        chunk = JSON.parse(frame.data);
      } catch (_) {
        this.note('An unreadable frame was skipped: ' + frame.data.slice(0, 120));
        return true;
      }
      if (chunk && typeof chunk.id === 'string') this.setId(chunk.id);
      const choice = (chunk && Array.isArray(chunk.choices) && chunk.choices[0]) || {};
      const delta = choice.delta || {};
      const wasNearBottom = nearBottom();
      if (typeof delta.content === 'string' && delta.content !== '') {
        const event = typedEvent(delta.content);
        if (event) this.typed(event);
        else this.appendText(delta.content);
      }
      if (Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls) this.toolCallDelta(call);
      }
      if (choice.finish_reason !== null && choice.finish_reason !== undefined) {
        this.finish(choice.finish_reason, false);
      }
      keepScrolled(wasNearBottom);
      return true;
    }

    turn() {
      if (!this.currentTurn) this.startTurn('turn_' + randomHex(6)); // version 1 logs have no turns
      return this.currentTurn;
    }

    startTurn(turnId) {
      const turn = { id: turnId, span: el('span', 'turn'), cards: [], calls: new Map() };
      turn.span.dataset.turnId = turnId;
      turn.text = document.createTextNode('');
      turn.span.append(turn.text);
      this.textEl.append(turn.span);
      this.turns.set(turnId, turn);
      this.currentTurn = turn;
      return turn;
    }

    abortTurn(turnId, reason) {
      const turn = this.turns.get(turnId);
      if (!turn) return;
      turn.span.remove();
      for (const card of turn.cards) {
        card.root.remove();
        this.cards.delete(card.id);
      }
      this.turns.delete(turnId);
      if (this.currentTurn === turn) this.currentTurn = null;
      this.note('A model turn was cut short' + (reason ? ' (' + reason + ')' : '') + ' and is being redone.');
    }

    appendText(text) {
      this.turn().text.appendData(text);
    }

    typed(event) {
      switch (event.type) {
        case 'data-operation':
          this.operation(event.data || {});
          break;
        case 'tool-approval-request':
          this.approvalRequest(event);
          break;
        case 'tool-approval-response':
          this.card(event.toolCallId).decided(event);
          this.updateWaiting();
          this.refreshStatus();
          break;
        case 'tool-output-available':
          this.card(event.toolCallId).result('Output', pretty(event.output), 'done');
          break;
        case 'tool-output-error':
          this.card(event.toolCallId).result('Error', String(event.errorText || 'the tool failed'), 'error');
          break;
        case 'tool-output-denied':
          this.card(event.toolCallId).result('Not run', event.reason ? 'Denied: ' + event.reason : 'Denied.', 'denied');
          break;
        default:
          break;
      }
    }

    operation(data) {
      switch (data.type) {
        case 'execution-started':
          this.setId(data.executionId);
          if (current === this) setStatus('running');
          break;
        case 'turn-started':
          this.startTurn(String(data.turnId));
          break;
        case 'turn-aborted':
          this.abortTurn(String(data.turnId), data.reason);
          break;
        case 'tool-started': {
          const card = this.card(data.toolCallId, data.toolName);
          card.setState('running', Number(data.attempt) > 1 ? 'running, attempt ' + data.attempt : 'running');
          break;
        }
        case 'error': {
          const box = el('div', 'reply-error', (data.message || 'The execution failed.') + (data.code ? ' (' + data.code + ')' : ''));
          box.dataset.code = data.code || '';
          this.notesEl.append(box);
          break;
        }
        case 'gap':
          this.note('Some events were trimmed from the log before they could be read (after ' + (data.after || 'index ' + data.startIndex) +
            ', resuming from ' + data.resumeFrom + ').');
          break;
        default:
          break; // turn-finished and anything newer: nothing to show
      }
    }

    toolCallDelta(call) {
      const turn = this.turn();
      const index = typeof call.index === 'number' ? call.index : 0;
      const fn = call.function || {};
      let card;
      if (call.id) {
        card = this.card(call.id, fn.name);
        if (!turn.calls.has(index)) {
          turn.calls.set(index, card);
          if (!turn.cards.includes(card)) turn.cards.push(card);
        }
      } else {
        card = turn.calls.get(index);
      }
      if (card && typeof fn.arguments === 'string' && fn.arguments !== '') card.appendArguments(fn.arguments);
    }

    card(toolCallId, toolName) {
      let card = this.cards.get(toolCallId);
      if (!card) {
        card = new ToolCard(this, String(toolCallId), toolName);
        this.cards.set(card.id, card);
        this.toolsEl.append(card.root);
      } else if (toolName && !card.name) {
        card.setName(toolName);
      }
      return card;
    }

    approvalRequest(event) {
      const card = this.card(event.toolCallId, event.toolName);
      if (!card.args && event.input !== undefined) card.setArguments(JSON.stringify(event.input));
      card.askApproval(event);
      this.updateWaiting();
      if (current === this) setStatus('suspended');
      this.refreshStatus();
    }

    /** Whether a tool call waits for a decision: the reply shows no typing cursor meanwhile. */
    updateWaiting() {
      let waiting = false;
      for (const card of this.cards.values()) if (card.approval && !card.isDecided) waiting = true;
      this.messageEl.classList.toggle('waiting', waiting);
    }

    finish(reason, fromNoContent) {
      if (this.finished) return;
      this.finished = true;
      this.finishReason = reason;
      this.messageEl.classList.remove('streaming');
      for (const card of this.cards.values()) card.closeApproval();
      if (current === this) {
        setConnection('closed');
        ui.cancel.hidden = true;
        setBusy(false);
        if (!fromNoContent) setStatus(reason === 'stop' ? 'completed' : 'failed');
      }
      this.refreshStatus();
      this.mintToken();
    }

    fail(message) {
      this.stopped = true;
      this.messageEl.classList.remove('streaming');
      this.notesEl.append(el('div', 'reply-error', message));
      if (current === this) {
        showError(message);
        setConnection(this.id ? 'closed' : 'idle');
        ui.cancel.hidden = true;
        setBusy(false);
      }
    }

    note(text, transient) {
      if (transient) {
        this.clearTransientNote();
        this.transientNote = el('div', 'reply-notice', text);
        this.notesEl.append(this.transientNote);
        return;
      }
      this.notesEl.append(el('div', 'reply-notice', text));
    }

    clearTransientNote() {
      if (this.transientNote) this.transientNote.remove();
      this.transientNote = null;
    }

    // -- status, stream token, cancel ---------------------------------------------------------------------------

    async refreshStatus() {
      if (!this.id) return;
      const seq = ++this.statusSeq;
      try {
        const response = await fetch(this.path(), { headers: this.headers(), cache: 'no-store' });
        if (!response.ok) return;
        const record = await response.json();
        if (seq < this.statusApplied || current !== this || typeof record.status !== 'string') return;
        // A stale answer must not undo what the stream already said.
        if (this.finished && !TERMINAL.has(record.status)) return;
        if (!this.finished && TERMINAL.has(ui.status.dataset.status)) return;
        this.statusApplied = seq;
        setStatus(record.status);
        if (record.error && record.error.message && TERMINAL.has(record.status)) {
          ui.status.title = record.error.code + ': ' + record.error.message;
        }
      } catch (_) {
        // the stream will say it; the next refresh may succeed
      }
    }

    async mintToken() {
      if (!this.id) return;
      try {
        const response = await fetch(this.path('/stream-token'), { method: 'POST', headers: this.headers(), cache: 'no-store' });
        if (!response.ok) return;
        const body = await response.json();
        if (typeof body.token !== 'string') return;
        this.token = { value: body.token, expiresAt: Date.parse(body.expiresAt) || Date.now() + 240000 };
        if (current === this) showRawLink(this);
      } catch (_) {
        // the link just stays as it was
      }
    }

    rawStreamURL() {
      return this.token ? this.path('/stream?token=' + encodeURIComponent(this.token.value)) : null;
    }

    async cancel() {
      if (!this.id || this.finished) return;
      ui.cancel.disabled = true;
      try {
        const response = await fetch(this.path('/cancel'), { method: 'POST', headers: this.headers() });
        if (!response.ok) showError('Cancel failed: ' + (await describeFailure(response)).message);
      } catch (error) {
        showError('Cancel failed: ' + error.message);
      } finally {
        ui.cancel.disabled = false;
      }
    }
  }

  function showRawLink(run) {
    const url = run.rawStreamURL();
    if (!url) return;
    ui.rawStream.href = url;
    ui.rawStream.hidden = false;
    ui.rawStream.removeAttribute('aria-disabled');
  }

  // -- a tool call -------------------------------------------------------------------------------------------------

  class ToolCard {
    constructor(run, id, name) {
      this.run = run;
      this.id = id;
      this.args = '';
      this.root = el('div', 'tool-card');
      this.root.dataset.toolCallId = id;
      this.root.dataset.state = 'called';
      const head = el('div', 'tool-head');
      this.nameEl = el('span', 'tool-name', name || 'tool');
      this.stateEl = el('span', 'tool-state', 'called');
      head.append(this.nameEl, this.stateEl);
      this.argsEl = el('pre', 'tool-json tool-arguments', '');
      this.root.append(head, el('div', 'tool-section-label', 'Arguments'), this.argsEl);
      this.name = name || '';
      this.approval = null;
      this.isDecided = false;
    }

    setName(name) {
      this.name = name;
      this.nameEl.textContent = name;
    }

    setState(state, label) {
      this.root.dataset.state = state;
      this.stateEl.textContent = label || state;
    }

    appendArguments(fragment) {
      this.setArguments(this.args + fragment);
    }

    setArguments(text) {
      this.args = text;
      this.argsEl.textContent = pretty(text);
    }

    askApproval(event) {
      if (this.isDecided || this.approval) return;
      this.setState('awaiting-approval', 'needs approval');
      const box = el('div', 'approval');
      box.append(el('div', 'question', 'Run ' + (this.name || 'this tool') + ' with these arguments?'));
      const reason = el('input', 'reason');
      reason.type = 'text';
      reason.placeholder = 'Reason (optional)';
      reason.setAttribute('aria-label', 'Reason');
      const approve = el('button', 'approve', 'Approve');
      approve.type = 'button';
      const deny = el('button', 'deny', 'Deny');
      deny.type = 'button';
      approve.addEventListener('click', () => this.decide(true));
      deny.addEventListener('click', () => this.decide(false));
      reason.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          this.decide(true);
        }
      });
      box.append(reason, approve, deny);
      if (event.expiresAt) box.append(el('div', 'hint', 'Waits until ' + new Date(event.expiresAt).toLocaleString() + '.'));
      this.approval = { box, reason, approve, deny };
      this.root.append(box);
    }

    setApprovalEnabled(enabled) {
      if (!this.approval) return;
      this.approval.approve.disabled = !enabled;
      this.approval.deny.disabled = !enabled;
      this.approval.reason.disabled = !enabled;
    }

    async decide(approved) {
      if (!this.approval || this.isDecided || this.approval.approve.disabled) return;
      const run = this.run;
      const reason = this.approval.reason.value.trim();
      this.setApprovalEnabled(false);
      const body = { approved };
      if (reason) body.reason = reason;
      try {
        const response = await fetch(run.path('/approvals/' + encodeURIComponent(this.id)), {
          method: 'POST',
          headers: run.headers({ 'Content-Type': 'application/json' }),
          body: JSON.stringify(body),
        });
        if (!response.ok) {
          const failure = await describeFailure(response);
          this.showDecision(null, 'Decision refused: ' + failure.message);
          if (retriable(response.status)) this.setApprovalEnabled(true);
          return;
        }
        // The stream's tool-approval-response may have come first: it is what the log says, so it stays.
        if (!this.isDecided) this.showDecision(approved, (approved ? 'You approved' : 'You denied') + (reason ? ': ' + reason : '') + ' — sent.');
        run.refreshStatus();
      } catch (error) {
        this.showDecision(null, 'Could not send the decision (' + error.message + '); try again.');
        this.setApprovalEnabled(true);
      }
    }

    showDecision(approved, text) {
      if (!this.decisionEl) {
        this.decisionEl = el('div', 'decision');
        this.root.append(this.decisionEl);
      }
      this.decisionEl.className = 'decision' + (approved === true ? ' approved' : approved === false ? ' denied' : ' tool-error');
      this.decisionEl.textContent = text;
    }

    /** The tool-approval-response event: the decision as the log recorded it. */
    decided(event) {
      this.isDecided = true;
      if (this.approval) {
        this.setApprovalEnabled(false);
        this.approval.box.remove();
        this.approval = null;
      }
      const by = event.decidedBy === 'system' ? ' automatically' : '';
      const text = (event.approved ? 'Approved' : 'Denied') + by + (event.reason ? ': ' + event.reason : '');
      this.showDecision(Boolean(event.approved), text);
      this.root.dataset.decision = event.approved ? 'approved' : 'denied';
      if (this.root.dataset.state === 'awaiting-approval') {
        this.setState(event.approved ? 'approved' : 'denied', event.approved ? 'approved' : 'denied');
      }
    }

    closeApproval() {
      if (this.approval && !this.isDecided) this.setApprovalEnabled(false);
    }

    result(label, text, state) {
      if (this.resultEl) this.resultEl.remove();
      this.resultEl = el('div', 'tool-result');
      this.resultEl.append(el('div', 'tool-section-label', label),
        el('pre', 'tool-json' + (state === 'done' ? '' : ' tool-error'), text));
      this.root.append(this.resultEl);
      this.setState(state, state === 'done' ? 'done' : state === 'error' ? 'failed' : 'denied');
    }
  }

  // -- the page ------------------------------------------------------------------------------------------------------

  function appendUserMessage(text) {
    const message = el('div', 'message user');
    message.append(el('div', 'bubble', text), el('div', 'meta', 'you'));
    ui.transcript.append(message);
  }

  async function send() {
    const text = ui.message.value.trim();
    if (!text || (current && !current.finished && !current.stopped)) return;
    const key = apiKey();
    if (!key) {
      showError('Paste an API key (tk_…) first.');
      ui.key.focus();
      return;
    }
    showError('');
    saveKey();
    if (ui.empty) {
      ui.empty.remove();
      ui.empty = null;
    }
    ui.message.value = '';
    appendUserMessage(text);
    const run = new Run(key, text);
    current = run;
    ui.executionId.textContent = '—';
    ui.lastEventId.textContent = '—';
    ui.rawStream.hidden = true;
    ui.status.title = '';
    setStatus('');
    setBusy(true);
    setConnection('streaming');
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    const body = JSON.stringify({ messages: [{ role: 'user', content: text }], conversationId });
    await run.run(body);
  }

  function newConversation() {
    if (current && !current.finished && !current.stopped) return;
    conversationId = newConversationId();
    ui.conversationId.textContent = conversationId;
    current = null;
    ui.transcript.replaceChildren();
    ui.executionId.textContent = '—';
    ui.lastEventId.textContent = '—';
    ui.rawStream.hidden = true;
    setStatus('');
    setConnection('idle');
    showError('');
  }

  function init() {
    ui = {
      key: $('#api-key'),
      message: $('#message'),
      send: $('#send'),
      composer: $('#composer'),
      connection: $('#connection'),
      connectionLabel: $('#connection .label'),
      executionId: $('#execution-id'),
      status: $('#status'),
      lastEventId: $('#last-event-id'),
      conversationId: $('#conversation-id'),
      rawStream: $('#raw-stream'),
      cancel: $('#cancel'),
      newConversation: $('#new-conversation'),
      transcript: $('#transcript'),
      error: $('#error'),
      empty: $('#empty-state'),
    };
    ui.key.value = loadKey();
    ui.key.addEventListener('input', saveKey);
    $('#key-form').addEventListener('submit', (event) => {
      event.preventDefault(); // Enter in the key field: keep it, go to the message
      saveKey();
      ui.message.focus();
    });
    ui.conversationId.textContent = conversationId;
    setConnection('idle');
    ui.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      send();
    });
    ui.message.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    ui.cancel.addEventListener('click', () => {
      if (current) current.cancel();
    });
    ui.newConversation.addEventListener('click', newConversation);
    ui.rawStream.addEventListener('click', (event) => {
      const run = current;
      if (!run || !run.token) {
        event.preventDefault();
        return;
      }
      if (run.token.expiresAt - Date.now() < 30000) {
        // The token is about to expire: open the tab now and point it at a fresh token's URL.
        event.preventDefault();
        const tab = window.open('about:blank', '_blank');
        if (tab) tab.opener = null;
        run.mintToken().then(() => {
          const url = run.rawStreamURL();
          if (tab && url) tab.location.href = url;
        });
      }
    });
    for (const button of document.querySelectorAll('.example')) {
      button.addEventListener('click', () => {
        ui.message.value = button.textContent;
        ui.message.focus();
      });
    }
  }

  // For people poking at the page from the console (the test reads the DOM).
  window.tetherPlayground = {
    SSEParser,
    typedEvent,
    idAfter,
    current: () => current && {
      id: current.id, lastId: current.lastId, finished: current.finished, reconnects: current.reconnects,
      duplicatesSkipped: current.duplicatesSkipped,
    },
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
