/*
 * The textbook's browser tracker, served at /api/telemetry/client.js.
 *
 *   <script defer src="https://api.example/api/telemetry/client.js"
 *           data-chapter-id="ch-3" data-user-id="u-42"></script>
 *
 * Defines window.TextbookTelemetry: track(event_type, payload), setUser(id),
 * setChapter(id), flush(), optOut(), optIn(), isOptedOut(). Events are queued
 * and posted in batches to the API's /batch route next to this script, as
 * text/plain so that no preflight is needed; what is queued when the page is
 * hidden or left goes by beacon.
 *
 * At least once: an event that could not be delivered (a network error, a
 * 5xx, a 429) is kept in the origin's localStorage, in order, and retried
 * while the page is open and by the next page of the origin, with its own
 * event_id. On the normal path nothing is stored: events go to storage only
 * once an attempt has failed, and a page left while the API is failing keeps
 * its queue there instead of handing it to a beacon whose fate nobody learns.
 *
 * No dependencies, no build step: this file is what the browser runs.
 */
(() => {
  "use strict";

  // A running tracker carries this mark; the README's stub snippet does not.
  const MARK = Symbol.for("TextbookTelemetry");
  const stub = window.TextbookTelemetry;
  // Included twice (or the name is taken): the first copy keeps its queue and its listeners.
  if (stub && (stub[MARK] || !Array.isArray(stub.q))) return;

  const FLUSH_DELAY_MS = 1000; // one request for what a page does in a second
  const SEND_SOON_EVENTS = 20; // this many queued: send without waiting
  const MAX_BATCH_EVENTS = 100; // the API's default TELEMETRY_MAX_BATCH_EVENTS
  // Under the API's 64 KiB body limit and the browser's 64 KiB budget for
  // requests that outlive the page (beacons, keepalive fetches).
  const MAX_BATCH_BYTES = 60000;
  const MAX_BATCH_ITEMS = 2048; // the API's default JSON_MAX_ITEMS: array elements and object members in a body
  const MAX_QUEUE_EVENTS = 500; // in memory, when there is no storage to spill to
  const MAX_STORED_EVENTS = 500; // in localStorage, for the whole origin
  const MAX_STORED_CHARS = 1000000; // about 1 MB of the origin's ~5 MB quota
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_MAX_MS = 60000; // a reader back online waits a minute at most
  const MAX_RETRY_AFTER_MS = 600000; // a Retry-After beyond this is taken as this
  const REQUEST_TIMEOUT_MS = 20000; // an API that accepts and never answers is down
  const LEASE_MS = 30000; // without Web Locks: how long a tab's claim on the stored events lasts
  // Another tab sees this tab's changes to localStorage a moment later than
  // it may get the lock: the claim is kept this long after the last change.
  const SETTLE_MS = 500;
  const MAX_ERROR_REPORTS = 5; // an error loop must not flood the API
  const MAX_MESSAGE_CHARS = 500;
  const MAX_NAME_CHARS = 100;

  const CONSENT_KEY = "TextbookTelemetry:consent"; // "in" or "out", the reader's own choice
  const EVENT_PREFIX = "TextbookTelemetry:event:"; // + sequence -> "<endpoint> <event JSON>"
  const LEASE_KEY = "TextbookTelemetry:lease"; // "<page id> <until>", without Web Locks

  const script = document.currentScript || document.querySelector('script[src*="/telemetry/client.js"]');
  // The API lives where this script came from: .../api/telemetry/client.js -> .../api/telemetry/batch
  const endpoint = script && script.src ? new URL("batch", script.src).href : null;
  const requireConsent = Boolean(script && script.hasAttribute("data-require-consent"));
  const encoder = new TextEncoder();
  const store = localStore();
  const pageId = Math.random().toString(36).slice(2, 10);
  // Web Locks exist only in secure contexts (https, localhost, 127.0.0.1).
  const leasing = !(navigator.locks && typeof navigator.locks.request === "function");

  let userId = text(script && script.dataset.userId);
  let chapterId = text(script && script.dataset.chapterId);
  let choice = readItem(CONSENT_KEY); // kept here too, for a browser without storage
  const visitedChapters = new Set();
  let queue = []; // {json, bytes, seq}: each event serialized once, when tracked; not stored
  let sequence = 0;
  let timer = null;
  let timerAt = 0;
  let sending = null; // the drain in progress, one at a time to keep events in order
  // The API is failing: the last attempt failed, or an earlier page left events
  // in storage and this one has not yet heard from the API.
  let failing = hasStored();
  let failures = 0; // consecutive failed sends, for the back-off
  let retryAt = 0; // no send before this time (back-off, Retry-After)
  let errorReports = 0;
  const warned = new Set();

  // --- consent --------------------------------------------------------------

  // The reader's own choice, else the page's consent requirement and the browser's signal.
  function optedOut() {
    const stored = readItem(CONSENT_KEY);
    if (stored !== null) choice = stored;
    if (choice === "out") return true;
    if (choice === "in") return false;
    return requireConsent || navigator.globalPrivacyControl === true;
  }

  function choose(value) {
    choice = value;
    writeItem(CONSENT_KEY, value);
  }

  // Opted out: nothing queued, nothing stored, nothing waiting to be sent.
  function forget() {
    queue = [];
    clearTimeout(timer);
    timer = null;
    for (const key of storedKeys()) removeItem(key);
  }

  // --- queue and sending ---------------------------------------------------

  function enqueue(eventType, payload) {
    if (!endpoint || optedOut()) return null;
    const eventId = newEventId();
    const json = wellFormed(JSON.stringify({ event_type: eventType, payload, event_id: eventId }));
    const bytes = encoder.encode(json).length;
    const items = itemsOf(json);
    if (bytes > MAX_BATCH_BYTES || items + 2 > MAX_BATCH_ITEMS) {
      warnOnce("large", `an event of ${bytes} bytes and ${items} values is too large to send`);
      return null;
    }
    const item = { json, bytes, items, seq: nextSeq() };
    // While the API is failing, an event goes straight to storage, where a
    // closed tab or a crash cannot take it.
    const left = failing ? persist([item]) : [item];
    if (left.length) {
      if (queue.length >= MAX_QUEUE_EVENTS) {
        warnOnce("full", `${MAX_QUEUE_EVENTS} events are waiting: later ones are not queued`);
        return null;
      }
      queue.push(item);
    }
    schedule(queue.length >= SEND_SOON_EVENTS ? 0 : FLUSH_DELAY_MS);
    return eventId || null;
  }

  // Sorts as the events were tracked: by time, then page, then order in the page.
  function nextSeq() {
    sequence += 1;
    return `${Date.now().toString(36).padStart(9, "0")}-${pageId}-${String(sequence).padStart(6, "0")}`;
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
    if (!sending && !optedOut()) {
      sending = drain()
        .catch((error) => warnOnce("error", `sending failed: ${describe(error)}`))
        .then(() => {
          sending = null;
          if (!optedOut() && (queue.length || hasStored())) schedule(FLUSH_DELAY_MS);
        });
    }
    return sending || Promise.resolve();
  }

  async function drain() {
    // What this page or an earlier one could not deliver goes first, sent by
    // whichever tab holds the claim on it.
    if (hasStored() && !(await claimed(sendStored))) {
      if (failing) queue = persist(queue);
      return;
    }
    while (queue.length && Date.now() >= retryAt && !optedOut()) {
      const batch = takeBatch(queue);
      queue.splice(0, batch.length);
      const retry = await post(batch);
      if (retry.length) {
        queue = persist(retry.concat(queue)); // what storage cannot take stays here
        return;
      }
    }
  }

  // The stored events, oldest first, one batch at a time; true once none is left.
  async function sendStored() {
    let done = false;
    let changed = false;
    while (Date.now() >= retryAt && !optedOut()) {
      const stored = readStored().filter((item) => item.endpoint === endpoint);
      if (!stored.length) {
        done = true;
        break;
      }
      if (leasing) writeItem(LEASE_KEY, `${pageId} ${Date.now() + LEASE_MS}`); // still ours
      for (const item of stored.slice(0, MAX_BATCH_EVENTS)) {
        item.bytes = encoder.encode(item.json).length;
        item.items = itemsOf(item.json);
      }
      const batch = takeBatch(stored);
      const retry = new Set(await post(batch));
      for (const item of batch) {
        if (!retry.has(item)) {
          removeItem(item.key);
          changed = true;
        }
      }
      if (retry.size) break;
    }
    if (changed) await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    return done;
  }

  // Two tabs never send the same stored event at once: the one that holds the
  // origin's lock does. Without Web Locks (a page that is not a secure
  // context), a lease in storage does the same, except for two tabs that
  // claim it in the same instant: both may then send, and the stream holds
  // the event twice with one event_id.
  function claimed(action) {
    if (!leasing) return navigator.locks.request(`TextbookTelemetry ${endpoint}`, action);
    const [owner, until] = (readItem(LEASE_KEY) || "").split(" ");
    if (owner && owner !== pageId && Number(until) > Date.now()) return Promise.resolve(false);
    return action().finally(() => {
      if ((readItem(LEASE_KEY) || "").startsWith(`${pageId} `)) removeItem(LEASE_KEY);
    });
  }

  // The oldest events, as many as one request may carry; always at least
  // one, so that the loops that empty a queue always make progress.
  function takeBatch(items) {
    let count = 0;
    let bytes = 20; // the envelope
    let values = 1; // the envelope's "events"
    while (count < items.length && count < MAX_BATCH_EVENTS) {
      bytes += items[count].bytes + 1; // and a comma
      values += items[count].items + 1; // and its place in the list
      if ((bytes > MAX_BATCH_BYTES || values > MAX_BATCH_ITEMS) && count > 0) break;
      count += 1;
    }
    return items.slice(0, count);
  }

  // The array elements and object members of an event's JSON, as the API counts
  // them (an empty array or object counts one), or more: its commas and opening
  // brackets, those inside strings too.
  function itemsOf(json) {
    let count = 0;
    for (let at = 0; at < json.length; at += 1) {
      const code = json.charCodeAt(at);
      if (code === 44 || code === 91 || code === 123) count += 1; // , [ {
    }
    return count;
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
      // Offline, DNS, a refused connection, a timeout or a CORS refusal: all look alike.
      return failed(batch, null);
    }
    const reply = await response.json().catch(() => null);
    // Per event, what the API answered; without results the answer is the whole batch's.
    const statuses = new Map();
    if (reply && Array.isArray(reply.results)) {
      for (const result of reply.results) statuses.set(result.index, result.status);
    }
    const retry = [];
    const refused = [];
    batch.forEach((item, index) => {
      const status = statuses.get(index) || (response.ok ? 202 : response.status);
      if (status === 429 || status >= 500) retry.push(item);
      else if (status >= 400) refused.push(status);
    });
    if (refused.length) {
      // The API judged these events; sending them again cannot change that.
      warnOnce("refused", `the API refused ${refused.length} event(s) with status ${[...new Set(refused)].join(", ")}`);
    }
    if (retry.length) return failed(retry, retryAfterMs(response));
    failing = false;
    failures = 0;
    return [];
  }

  function failed(retry, retryAfter) {
    failing = true;
    failures += 1;
    const exponential = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 16));
    // Jitter spreads the retries of many readers after an outage.
    const delay = Math.max(exponential * (0.5 + Math.random() / 2), retryAfter || 0);
    retryAt = Date.now() + delay;
    return retry;
  }

  function postBody(body) {
    const timeout = typeof AbortSignal === "function" && typeof AbortSignal.timeout === "function"
      ? AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      : undefined;
    return fetch(endpoint, {
      method: "POST",
      // text/plain is a "simple" content type: no preflight round trip.
      headers: { "Content-Type": "text/plain" },
      body,
      mode: "cors",
      credentials: "omit", // the API uses no cookies
      keepalive: true, // finishes even if the reader leaves meanwhile
      signal: timeout,
    });
  }

  function retryAfterMs(response) {
    const value = response && response.headers.get("Retry-After"); // exposed by the API's CORS headers
    if (!value) return null;
    const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
    return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0) * 1000, MAX_RETRY_AFTER_MS) : null;
  }

  // The page is hidden or left. While the API answers, everything queued goes
  // to the browser now, back-off or not, since this page may never run again,
  // and no copy is kept. While it is failing, a beacon would most likely be
  // lost without anyone knowing: the queue goes to storage for the next page.
  function sendOnLeave() {
    clearTimeout(timer);
    timer = null;
    if (optedOut()) return;
    if (failing) queue = persist(queue);
    while (queue.length) {
      const batch = takeBatch(queue);
      queue.splice(0, batch.length);
      const body = batchBody(batch);
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

  // --- storage -------------------------------------------------------------

  // Writes events to the origin's storage, then keeps it within its bounds;
  // returns those it could not write (no storage, or its quota is used up).
  function persist(items) {
    if (optedOut()) return []; // the reader said no while these were on their way
    if (!store || !items.length) return items;
    const left = items.filter((item) => !writeItem(EVENT_PREFIX + item.seq, `${endpoint} ${item.json}`));
    trimStored();
    return left;
  }

  // At most MAX_STORED_EVENTS and about MAX_STORED_CHARS for the origin; the oldest go first.
  function trimStored() {
    const stored = readStored();
    let chars = stored.reduce((sum, item) => sum + item.chars, 0);
    let dropped = 0;
    while (stored.length > MAX_STORED_EVENTS || chars > MAX_STORED_CHARS) {
      const oldest = stored.shift();
      removeItem(oldest.key);
      chars -= oldest.chars;
      dropped += 1;
    }
    if (dropped) {
      warnOnce("full", `the stored queue is full: dropped the ${dropped} oldest undelivered event(s)`);
    }
  }

  // Every stored event of the origin, oldest first.
  function readStored() {
    const stored = [];
    for (const key of storedKeys()) {
      const value = readItem(key);
      if (value === null) continue;
      const space = value.indexOf(" ");
      const json = value.slice(space + 1);
      stored.push({ key, json, endpoint: value.slice(0, space), chars: key.length + value.length });
    }
    return stored;
  }

  function storedKeys() {
    const keys = [];
    if (!store) return keys;
    try {
      for (let index = 0; index < store.length; index += 1) {
        const key = store.key(index);
        if (key && key.startsWith(EVENT_PREFIX)) keys.push(key);
      }
    } catch (error) {
      // storage switched off meanwhile: nothing stored that we can reach
    }
    return keys.sort();
  }

  function hasStored() {
    return endpoint !== null && readStored().some((item) => item.endpoint === endpoint);
  }

  // Reading localStorage throws where the reader or the browser forbids it.
  function localStore() {
    try {
      return window.localStorage || null;
    } catch (error) {
      return null;
    }
  }

  function readItem(key) {
    try {
      return store ? store.getItem(key) : null;
    } catch (error) {
      return null;
    }
  }

  function writeItem(key, value) {
    try {
      if (!store) return false;
      store.setItem(key, value);
      return true;
    } catch (error) {
      return false; // QuotaExceededError, or storage switched off
    }
  }

  function removeItem(key) {
    try {
      if (store) store.removeItem(key);
    } catch (error) {
      // storage switched off: nothing left to remove
    }
  }

  // --- events --------------------------------------------------------------

  function visitChapter() {
    if (!chapterId || visitedChapters.has(chapterId)) return;
    const eventId = enqueue("chapter_visit", withUser({ chapter_id: chapterId, timestamp: new Date().toISOString() }));
    if (eventId !== null) visitedChapters.add(chapterId);
  }

  function reportError(errorType, message) {
    if (errorReports >= MAX_ERROR_REPORTS || optedOut()) return;
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

  // One warning of each kind per page: the console is the page's, not ours.
  function warnOnce(kind, message) {
    if (warned.has(kind)) return;
    warned.add(kind);
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
        warnOnce("error", describe(error));
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
  // Restored from the back/forward cache: a visit again, and the reader may
  // have changed their choice on another page meanwhile.
  window.addEventListener("pageshow", guarded((event) => {
    if (!event.persisted) return;
    if (optedOut()) {
      forget();
      return;
    }
    visitedChapters.clear();
    visitChapter();
    if (hasStored()) schedule(FLUSH_DELAY_MS);
  }));
  // Another tab of the origin opted out: this one forgets too.
  window.addEventListener("storage", guarded((event) => {
    if ((event.key === CONSENT_KEY || event.key === null) && optedOut()) forget();
  }));

  const api = {
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
    /** The reader says no: nothing is sent, and what was queued or stored is forgotten; remembered for the origin. */
    optOut: guarded(() => {
      choose("out");
      forget();
    }),
    /** The reader says yes, outranking data-require-consent and Global Privacy Control; remembered for the origin. */
    optIn: guarded(() => {
      choose("in");
      visitChapter(); // the page the reader consented on counts
    }),
    /** Whether the tracker sends nothing: the reader opted out, or has not opted in where that is needed. */
    isOptedOut: guarded(optedOut, true),
  };
  Object.defineProperty(api, MARK, { value: true });
  window.TextbookTelemetry = Object.freeze(api);

  guarded(() => {
    if (optedOut()) forget();
    // Calls the page made through the stub run now, in order; then the page's
    // chapter counts (with the user a queued setUser named).
    if (stub) {
      const replay = ([name, args]) => {
        if (typeof api[name] === "function") api[name](...Array.from(args || []));
      };
      stub.q.splice(0).forEach(guarded(replay));
      // Code that kept a reference to the stub still reaches the tracker.
      stub.q.push = (...calls) => {
        calls.forEach(guarded(replay));
        return 0;
      };
    }
    visitChapter();
    if (hasStored()) schedule(FLUSH_DELAY_MS);
  })();
})();
