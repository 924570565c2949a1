/*
 * The textbook's browser tracker, served at /api/telemetry/client.js.
 *
 *   <script defer src="https://api.example/api/telemetry/client.js"
 *           data-chapter-id="ch-3" data-user-id="u-42"></script>
 *
 * Defines window.TextbookTelemetry: track(event_type, payload), setUser(id),
 * setChapter(id), flush(). Events are queued and posted in batches to the
 * API's /batch route next to this script, as text/plain so that no preflight
 * is needed; what is queued when the page is hidden or left goes by beacon.
 * No dependencies, no build step: this file is what the browser runs.
 */
(() => {
  "use strict";

  // Included twice: the first copy keeps its queue and its listeners.
  if (window.TextbookTelemetry) return;

  const FLUSH_DELAY_MS = 1000; // one request for what a page does in a second
  const SEND_SOON_EVENTS = 20; // this many queued: send without waiting
  const MAX_BATCH_EVENTS = 100; // the API's default TELEMETRY_MAX_BATCH_EVENTS
  // Under the API's 64 KiB body limit and the browser's 64 KiB budget for
  // requests that outlive the page (beacons, keepalive fetches).
  const MAX_BATCH_BYTES = 60000;
  const MAX_QUEUE_EVENTS = 500; // bounded memory while the API is unreachable
  const MAX_ATTEMPTS = 5;
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_MAX_MS = 60000;
  const MAX_RETRY_AFTER_MS = 600000; // a Retry-After beyond this is taken as this
  const MAX_ERROR_REPORTS = 5; // an error loop must not flood the API
  const MAX_MESSAGE_CHARS = 500;
  const MAX_NAME_CHARS = 100;

  const script = document.currentScript || document.querySelector('script[src*="/telemetry/client.js"]');
  // The API lives where this script came from: .../api/telemetry/client.js -> .../api/telemetry/batch
  const endpoint = script && script.src ? new URL("batch", script.src).href : null;
  const encoder = new TextEncoder();

  let userId = text(script && script.dataset.userId);
  let chapterId = null;
  const visitedChapters = new Set();
  let queue = []; // {json, bytes, attempts}: each event serialized once, when tracked
  let timer = null;
  let timerAt = 0;
  let sending = null; // the drain in progress, one at a time to keep events in order
  let failures = 0; // consecutive failed sends, for the back-off
  let retryAt = 0; // no send before this time (back-off, Retry-After)
  let errorReports = 0;
  let warned = false;

  // --- queue and sending ---------------------------------------------------

  function enqueue(eventType, payload) {
    if (!endpoint || queue.length >= MAX_QUEUE_EVENTS) return null;
    const eventId = newEventId();
    const json = wellFormed(JSON.stringify({ event_type: eventType, payload, event_id: eventId }));
    const bytes = encoder.encode(json).length;
    if (bytes > MAX_BATCH_BYTES) {
      warnOnce(`an event of ${bytes} bytes is too large to send`);
      return null;
    }
    queue.push({ json, bytes, attempts: 0 });
    schedule(queue.length >= SEND_SOON_EVENTS ? 0 : FLUSH_DELAY_MS);
    return eventId || null;
  }

  function schedule(delay) {
    if (sending) return; // the drain in hand schedules what is left when it ends
    const at = Math.max(Date.now() + delay, retryAt);
    if (timer !== null && timerAt <= at) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => {
      timer = null;
      flushNow();
    }, at - Date.now());
  }

  function flushNow() {
    clearTimeout(timer);
    timer = null;
    if (!sending) {
      sending = drain()
        .catch((error) => warnOnce(`sending failed: ${describe(error)}`))
        .then(() => {
          sending = null;
          if (queue.length) schedule(FLUSH_DELAY_MS);
        });
    }
    return sending;
  }

  async function drain() {
    while (queue.length && Date.now() >= retryAt) {
      const batch = takeBatch();
      const retry = await post(batch);
      if (retry.length) {
        requeue(retry);
        return;
      }
    }
  }

  // The oldest events, as many as one request may carry; always at least
  // one, so that the loops that empty the queue always make progress.
  function takeBatch() {
    let count = 0;
    let bytes = 20; // the envelope
    while (count < queue.length && count < MAX_BATCH_EVENTS) {
      bytes += queue[count].bytes + 1; // and a comma
      if (bytes > MAX_BATCH_BYTES && count > 0) break;
      count += 1;
    }
    return queue.splice(0, count);
  }

  function batchBody(batch) {
    return `{"events":[${batch.map((item) => item.json).join(",")}]}`;
  }

  // Posts one batch; returns the events worth sending again.
  async function post(batch) {
    let response;
    try {
      response = await postBody(batchBody(batch));
    } catch (error) {
      // Offline, DNS, a refused connection or a CORS refusal: all look alike.
      backOff(null);
      return batch;
    }
    if (response.status >= 400 && response.status < 500) {
      // The API judged these events; sending them again cannot change that.
      warnOnce(`the API refused ${batch.length} event(s) with status ${response.status}`);
      failures = 0;
      return [];
    }
    const reply = await response.json().catch(() => null);
    // Per event, what the API answered; a 5xx without results failed as a whole.
    const statuses = new Map();
    if (reply && Array.isArray(reply.results)) {
      for (const result of reply.results) statuses.set(result.index, result.status);
    } else if (!response.ok) {
      batch.forEach((item, index) => statuses.set(index, response.status));
    }
    const retry = batch.filter((item, index) => statuses.get(index) >= 500);
    if (retry.length) backOff(retryAfterMs(response));
    else failures = 0;
    return retry;
  }

  function postBody(body) {
    return fetch(endpoint, {
      method: "POST",
      // text/plain is a "simple" content type: no preflight round trip.
      headers: { "Content-Type": "text/plain" },
      body,
      mode: "cors",
      credentials: "omit", // the API uses no cookies
      keepalive: true, // finishes even if the reader leaves meanwhile
    });
  }

  function backOff(retryAfter) {
    failures += 1;
    const exponential = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (failures - 1));
    // Jitter spreads the retries of many readers after an outage.
    const delay = Math.max(exponential * (0.5 + Math.random() / 2), retryAfter || 0);
    retryAt = Date.now() + delay;
  }

  function retryAfterMs(response) {
    const value = response.headers.get("Retry-After"); // exposed by the API's CORS headers
    if (!value) return null;
    const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
    return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0) * 1000, MAX_RETRY_AFTER_MS) : null;
  }

  function requeue(batch) {
    const kept = batch.filter((item) => ++item.attempts < MAX_ATTEMPTS);
    if (kept.length < batch.length) {
      warnOnce(`dropped ${batch.length - kept.length} event(s) after ${MAX_ATTEMPTS} attempts`);
    }
    queue = kept.concat(queue).slice(0, MAX_QUEUE_EVENTS);
  }

  // The page is hidden or left: hand everything queued to the browser now,
  // back-off or not, since this page may never run again.
  function sendOnLeave() {
    clearTimeout(timer);
    timer = null;
    while (queue.length) {
      const body = batchBody(takeBatch());
      if (beacon(body)) continue;
      try {
        postBody(body).catch(() => {}); // nobody is left to retry it
      } catch (error) {
        // fetch itself is missing or broken: the next batch may still go by beacon
      }
    }
  }

  function beacon(body) {
    try {
      // false when the browser will not take it (its budget is used up).
      return typeof navigator.sendBeacon === "function"
        && navigator.sendBeacon(endpoint, new Blob([body], { type: "text/plain" }));
    } catch (error) {
      return false;
    }
  }

  // --- events --------------------------------------------------------------

  function visitChapter() {
    if (!chapterId || visitedChapters.has(chapterId)) return;
    visitedChapters.add(chapterId);
    enqueue("chapter_visit", withUser({ chapter_id: chapterId, timestamp: new Date().toISOString() }));
  }

  function reportError(errorType, message) {
    if (errorReports >= MAX_ERROR_REPORTS) return;
    errorReports += 1;
    const payload = {
      error_type: cut(errorType, MAX_NAME_CHARS),
      error_message: cut(message, MAX_MESSAGE_CHARS),
    };
    if (chapterId) payload.chapter_id = chapterId;
    enqueue("error_event", withUser(payload));
  }

  function withUser(payload) {
    if (userId && payload.user_id === undefined) payload.user_id = userId;
    return payload;
  }

  // --- small helpers -------------------------------------------------------

  // A v4 UUID, so that the API can tell a retried event from a new one.
  function newEventId() {
    const crypto = window.crypto;
    if (!crypto) return undefined; // the API then makes the id
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID(); // secure contexts only
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // JSON.stringify writes a lone surrogate as a \uD8xx escape, which the API
  // refuses (400) for the whole batch; U+FFFD keeps the rest of the text.
  function wellFormed(json) {
    return json.replace(/(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/gi, "$1\\ufffd");
  }

  // Shortens text without splitting a surrogate pair.
  function cut(value, length) {
    const chars = Array.from(value);
    return chars.length > length ? chars.slice(0, length).join("") : value;
  }

  function text(value) {
    if (typeof value === "number" && Number.isFinite(value)) return String(value);
    return typeof value === "string" && value.trim() ? value.trim() : null;
  }

  function describe(value) {
    try {
      return value && typeof value.message === "string" ? value.message : String(value);
    } catch (error) {
      return "(not printable)"; // e.g. an object without a prototype
    }
  }

  function nameOf(value, fallback) {
    try {
      return value && typeof value.name === "string" && value.name ? value.name : fallback;
    } catch (error) {
      return fallback;
    }
  }

  function warnOnce(message) {
    if (warned) return;
    warned = true;
    try {
      console.warn(`TextbookTelemetry: ${message}`);
    } catch (error) {
      // nothing left to tell
    }
  }

  // Telemetry must never break the page: whatever goes wrong stays in here.
  function guarded(action, fallback) {
    return (...args) => {
      try {
        return action(...args);
      } catch (error) {
        warnOnce(describe(error));
        return fallback;
      }
    };
  }

  // --- wiring --------------------------------------------------------------

  window.addEventListener("error", guarded((event) => {
    // Resource load errors do not bubble to window; these are script errors.
    // A script from another origin without CORS gives no error, only "Script error.".
    const message = event.error ? describe(event.error) : event.message || "Script error.";
    reportError(nameOf(event.error, "Error"), message);
  }));
  window.addEventListener("unhandledrejection", guarded((event) => {
    reportError(nameOf(event.reason, "UnhandledRejection"), describe(event.reason));
  }));
  document.addEventListener("visibilitychange", guarded(() => {
    if (document.visibilityState === "hidden") sendOnLeave();
  }));
  window.addEventListener("pagehide", guarded(sendOnLeave));

  window.TextbookTelemetry = Object.freeze({
    /** Queues an event; returns its event_id, or null when it was not queued. */
    track: guarded((eventType, payload) => {
      if (typeof eventType !== "string") throw new TypeError("track: event_type must be a string");
      if (payload != null && (typeof payload !== "object" || Array.isArray(payload))) {
        throw new TypeError("track: payload must be an object");
      }
      // A copy: the page may change its object after the call.
      return enqueue(eventType, withUser({ ...payload }));
    }, null),
    /** Sets the user_id put on later events that have none; null clears it. */
    setUser: guarded((id) => {
      userId = text(id);
    }),
    /** Sets the chapter; a chapter_visit is sent once per distinct chapter. */
    setChapter: guarded((id) => {
      chapterId = text(id);
      visitChapter();
    }),
    /** Sends what is queued now; the promise settles (never rejects) when done. */
    flush: guarded(flushNow, Promise.resolve()),
  });

  guarded(() => {
    chapterId = text(script && script.dataset.chapterId);
    visitChapter();
  })();
})();
