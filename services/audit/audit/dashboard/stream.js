// The live stream: `GET /stream` read with fetch() (EventSource cannot send an Authorization header), parsed as
// text/event-stream here, reconnected with exponential backoff and jitter, and declared dead when nothing (not even
// the server's 15 s keep-alive comment) arrived for `idleMs`. A reconnect sends the last event id it was given
// (`Last-Event-ID`, as EventSource would): the server replays the flags missed meanwhile, or sends `reset` first.

/** Incremental text/event-stream parser (WHATWG HTML, "Server-sent events": lines, fields, blank line dispatch). */
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  push(chunk) {
    this.buffer += chunk;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      if (c === "\r" && i + 1 === this.buffer.length) break; // maybe half of a CRLF: wait for the next chunk
      this.line(this.buffer.slice(start, i));
      if (c === "\r" && this.buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(text) {
    if (text === "") {
      if (this.data.length) this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      this.reset();
      return;
    }
    if (text.startsWith(":")) return; // a comment (keep-alive ping)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

/**
 * Keep a connection to `url` open while started. Callbacks:
 *   onEvent({event, data}) for each event (data parsed as JSON when it is JSON),
 *   onState(state, info) with state in connecting | live | reconnecting | unauthorized | stopped.
 */
export class LiveStream {
  constructor(url, { token, onEvent, onState, idleMs = 45000, minDelayMs = 500, maxDelayMs = 30000 }) {
    Object.assign(this, { url, token, onEvent, onState, idleMs, minDelayMs, maxDelayMs });
    this.running = false;
    this.attempt = 0;
    this.controller = null;
    this.wake = null;
    this.lastEventId = null;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
    this.onState("stopped");
  }

  /** Skip the current backoff wait (e.g. the browser came back online). */
  retryNow() {
    if (this.wake) this.wake();
  }

  async loop() {
    while (this.running) {
      const outcome = await this.connectOnce();
      if (!this.running) return;
      if (outcome === "unauthorized") {
        this.running = false;
        this.onState("unauthorized");
        return;
      }
      const base = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.attempt);
      const delay = Math.round(base / 2 + Math.random() * (base / 2));
      this.attempt = Math.min(this.attempt + 1, 10);
      this.onState("reconnecting", { delayMs: delay, reason: outcome });
      await new Promise((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.wake = null;
    }
  }

  async connectOnce() {
    this.controller = new AbortController();
    const controller = this.controller;
    let idle = null;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), this.idleMs);
    };
    this.onState("connecting", { attempt: this.attempt });
    try {
      arm();
      const headers = { Authorization: `Bearer ${this.token}`, Accept: "text/event-stream" };
      if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
      const resp = await fetch(this.url, {
        headers,
        cache: "no-store",
        signal: controller.signal,
      });
      if (resp.status === 401 || resp.status === 403) return "unauthorized";
      if (!resp.ok || !resp.body) return `HTTP ${resp.status}`;
      const parser = new EventStreamParser((ev) => {
        if (ev.id !== null) this.lastEventId = ev.id;
        let data = ev.data;
        try { data = JSON.parse(ev.data); } catch { /* keep the text */ }
        if (ev.event === "hello") {
          this.attempt = 0;
          this.onState("live", { since: new Date() });
        }
        this.onEvent({ event: ev.event, data });
      });
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        arm();
        const { value, done } = await reader.read();
        if (done) return "closed by the server";
        parser.push(value);
      }
    } catch (err) {
      return err && err.name === "AbortError" ? "no data for a while" : "network error";
    } finally {
      clearTimeout(idle);
      if (this.controller === controller) this.controller = null;
    }
  }
}
