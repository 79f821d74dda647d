// The run page's live timeline (and local times on the approvals pages).
//
// The server renders the events stored so far; this script follows the rest over the run's
// websocket (`?after=<last seq rendered>`), renders each new event once, keeps the header's
// status, tokens, cost and duration current, and reloads the header fragment when the run ends.
// On every status or approval event it reloads the run's controls (the steering buttons, the
// approval cards, the uncertain-write card), so what a person can do always matches the run.
// On a dropped connection it reconnects with backoff from the last seq it has, so nothing is
// lost or shown twice. The server closes with 1000 after the terminal status: no reconnect then.
// Markup built here mirrors templates/runs/_event.html.
(function () {
  "use strict";

  const page = document.getElementById("run-page");
  if (!page) {
    // Pages without a run (the approvals list) only want their times in local time.
    localize(document);
    document.addEventListener("htmx:afterSwap", () => localize(document));
    return;
  }

  const timeline = document.getElementById("timeline");
  const indicator = document.getElementById("live-indicator");
  const waiting = document.getElementById("timeline-waiting");
  const waitingText = waiting ? waiting.innerHTML : "";
  const labelsNode = document.getElementById("run-labels");
  const labels = labelsNode ? JSON.parse(labelsNode.textContent) : { status: {}, stop_reason: {} };
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
  const OPEN_OUTPUT_MAX = 600; // longer tool output starts collapsed, as on the server

  let lastSeq = parseInt(timeline.dataset.lastSeq || "0", 10) || 0;
  let finished = page.dataset.finished === "true";
  let socket = null;
  let attempts = 0;
  let retryTimer = null;
  let clock = null;
  let controlsTimer = null;

  // ------------------------------------------------------------------ small helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("data-")) el.setAttribute(key, String(value));
      else if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function statusLabel(status) {
    return labels.status[status] || status;
  }

  function stopReasonLabel(reason) {
    return reason ? labels.stop_reason[reason] || reason : "";
  }

  function badge(status) {
    return h("span", { class: "badge status status-" + status, text: statusLabel(status) });
  }

  function formatCost(value) {
    if (!value) return "$0.00";
    return value < 0.01 ? "$" + value.toFixed(6) : "$" + value.toFixed(4);
  }

  function formatDuration(seconds) {
    if (seconds < 1) return Math.floor(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    let minutes = Math.floor(Math.round(seconds) / 60);
    const rest = Math.round(seconds) % 60;
    if (minutes < 60) return minutes + " m " + rest + " s";
    const hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    return hours + " h " + minutes + " m";
  }

  function localDateTime(date) {
    const options = { month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit" };
    if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    return date.toLocaleString(undefined, options);
  }

  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach((el) => {
      const date = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) return;
      el.textContent = el.dataset.local === "time" ? date.toLocaleTimeString() : localDateTime(date);
      el.title = date.toISOString();
    });
  }

  function timeEl(iso) {
    const el = h("time", { "data-local": "time", datetime: iso });
    const date = new Date(iso);
    el.textContent = Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
    if (!Number.isNaN(date.getTime())) el.title = date.toISOString();
    return el;
  }

  function prettyArguments(value) {
    // Sorted keys at every depth, like the server's json.dumps(sort_keys=True).
    const sortDeep = (v) => {
      if (Array.isArray(v)) return v.map(sortDeep);
      if (v && typeof v === "object") {
        return Object.keys(v).sort().reduce((acc, key) => ((acc[key] = sortDeep(v[key])), acc), {});
      }
      return v;
    };
    try {
      return JSON.stringify(sortDeep(value === undefined ? null : value), null, 2);
    } catch (err) {
      return String(value);
    }
  }

  // Mirrors views._status_note and views.pause_reason_text.
  function statusNote(data, previous) {
    const parts = [];
    if (data.attempt) {
      parts.push((previous === "running" ? "resumed on another worker" : "picked up again") + " (attempt " + data.attempt + ")");
    } else if (data.resumed) parts.push("resumed");
    if (data.retry) parts.push("retried");
    if (data.decision === "retry") parts.push("the interrupted call runs again");
    else if (data.decision === "skip") parts.push("the interrupted call is not repeated");
    if (data.by) parts.push("by " + data.by);
    return parts.join(" ");
  }

  // As the timeline tells it (views.pause_reason_text with history=True).
  function pauseText(reason) {
    if (!reason) return "";
    if (reason.startsWith("uncertain_write:")) {
      return "The worker stopped in the middle of a write call; a person decides whether to run it again.";
    }
    if (reason.startsWith("approval:")) return "Waiting for approval.";
    return reason;
  }

  function previousStatus() {
    const items = timeline.querySelectorAll('li[data-type="status"]');
    return items.length ? items[items.length - 1].dataset.status : "";
  }

  function toolStartNote(data) {
    if (data.approved_retry) return "run again after a crash, as " + (data.approved_by || "someone") + " decided";
    const notes = [];
    if (data.retry) notes.push("retried after a crash");
    if (data.approved_by) notes.push("approved by " + data.approved_by);
    return notes.join(" · ");
  }

  function note(text) {
    return text ? h("span", { class: "tl-note-inline", text: text }) : null;
  }

  function setLive(state, text) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent =
      text || { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", done: "complete" }[state] || state;
  }

  // ------------------------------------------------------------------ timeline items

  function item(event, extraClass, head, body) {
    const data = event.data || {};
    const li = h("li", {
      class: "tl-item tl-" + event.type + (extraClass ? " " + extraClass : ""),
      "data-type": event.type,
      "data-seq": event.seq,
      id: "event-" + event.seq,
      "data-call-id": data.call_id || null,
      "data-status": event.type === "status" ? data.status : null,
      "data-approval-status": event.type === "approval" ? data.status : null,
    });
    const meta = h("span", { class: "tl-meta" });
    if (data.step) meta.append(h("span", { text: "step " + data.step }));
    if (event.type === "thought" && data.duration_ms !== undefined && data.duration_ms !== null) {
      meta.append(h("span", { text: data.duration_ms + " ms" }));
    }
    if (event.type === "thought" && data.usage) {
      meta.append(h("span", { text: data.usage.input_tokens + " → " + data.usage.output_tokens + " tokens" }));
    }
    if (event.type === "tool_end") meta.append(h("span", { text: data.duration_ms + " ms" }));
    if (event.created_at) meta.append(timeEl(event.created_at));
    li.append(
      h("span", { class: "tl-marker", "aria-hidden": "true" }),
      h("div", { class: "tl-body" }, h("div", { class: "tl-head" }, head, meta), body)
    );
    return li;
  }

  const renderers = {
    status(event) {
      const data = event.data || {};
      const head = [h("span", { class: "tl-kind", text: "Status" }), " ", badge(data.status)];
      if (data.stop_reason) head.push(" ", h("span", { class: "muted", text: stopReasonLabel(data.stop_reason) }));
      const extra = statusNote(data, previousStatus());
      if (extra) head.push(" ", note(extra));
      const tone = data.status === "failed" ? "tl-error-text" : "tl-note";
      let body = null;
      if (data.error) body = h("p", { class: "tl-text " + tone, text: data.error });
      else if (data.pause_reason) {
        const approvalWait = data.status === "awaiting_approval" ? " tl-note-approval" : "";
        body = h("p", { class: "tl-text tl-note" + approvalWait, text: pauseText(data.pause_reason) });
      }
      else if (data.rerun_of) {
        body = h("p", { class: "tl-text muted" }, "A re-run of ",
          h("a", { href: "/runs/" + data.rerun_of + "/", class: "mono", text: String(data.rerun_of).slice(0, 8) }), ".");
      }
      return item(event, "", head, body);
    },
    thought(event) {
      const data = event.data || {};
      const body = data.content
        ? h("p", { class: "tl-text prewrap", text: data.content })
        : h("p", { class: "tl-text muted", text: "No commentary; the model went straight to its tools." });
      return item(event, "", [h("span", { class: "tl-kind", text: "Thought" })], body);
    },
    tool_start(event) {
      const data = event.data || {};
      const head = [
        h("span", { class: "tl-kind", text: "Tool call" }), " ",
        h("code", { class: "tool-name", text: data.tool }), " ",
        h("span", { class: "tl-state", text: "running…" }),
      ];
      const extra = toolStartNote(data);
      if (extra) head.push(" ", note(extra));
      const body = h("pre", { class: "code tl-args", "aria-label": "Arguments", text: prettyArguments(data.arguments) });
      return item(event, "tl-pending", head, body);
    },
    tool_end(event) {
      const data = event.data || {};
      const output = data.output === undefined || data.output === null ? "" : String(data.output);
      const head = [
        h("span", { class: "tl-kind", text: "Result" }), " ",
        h("code", { class: "tool-name", text: data.tool }), " ",
        data.is_error ? h("span", { class: "badge badge-error", text: "error" }) : h("span", { class: "badge badge-ok", text: "ok" }),
      ];
      if (data.simulated) {
        head.push(" ", h("span", { class: "badge badge-dry", title: "Dry run: the tool was not executed", text: "simulated" }));
      }
      const details = h(
        "details",
        { class: "tl-output", open: output.length <= OPEN_OUTPUT_MAX },
        h("summary", {}, "Output ", h("span", {
          class: "muted",
          text: "(" + output.length + " character" + (output.length === 1 ? "" : "s") + ")",
        })),
        h("pre", { class: "code", text: output })
      );
      return item(event, data.is_error ? "tl-failed" : "", head, details);
    },
    approval(event) {
      const data = event.data || {};
      let state;
      if (data.status === "pending") state = h("span", { class: "badge status status-awaiting_approval", text: "waiting" });
      else if (data.status === "approved") {
        state = h("span", { class: "badge badge-ok", text: data.decision === "edit" ? "approved with edits" : "approved" });
      } else if (data.status === "rejected") state = h("span", { class: "badge badge-error", text: "rejected" });
      else state = h("span", { class: "badge", text: data.status || "" });
      const head = [
        h("span", { class: "tl-kind", text: "Approval" }), " ", h("code", { class: "tool-name", text: data.tool }), " ", state,
      ];
      const body = [];
      if (data.status === "pending") {
        body.push(h("p", { class: "tl-text", text: "Asked a person before running it with:" }));
        body.push(h("pre", { class: "code tl-args", "aria-label": "Arguments", text: prettyArguments(data.arguments) }));
        const expires = data.expires_at ? new Date(data.expires_at) : null;
        if (expires && !Number.isNaN(expires.getTime())) {
          body.push(h("p", { class: "tl-text muted small" }, "Expires ",
            h("time", { "data-local": "", datetime: data.expires_at, title: expires.toISOString(), text: localDateTime(expires) }), "."));
        }
      } else if (data.status === "expired") {
        body.push(h("p", {
          class: "tl-text tl-note",
          text: "Nobody decided in time; " + (data.outcome === "cancel" ? "the run was cancelled." : "the call was rejected."),
        }));
      } else {
        const verb = data.status === "rejected" ? "Rejected" : data.decision === "edit" ? "Approved with edited arguments" : "Approved";
        const end = data.status === "rejected" && data.message ? ":" : ".";
        body.push(h("p", { class: "tl-text" }, verb + " by ", h("strong", { text: data.decided_by || "someone" }), end));
        if (data.message) body.push(h("blockquote", { class: "tl-quote", text: data.message }));
        if (data.edited_arguments !== undefined && data.edited_arguments !== null) {
          body.push(h("pre", { class: "code tl-args", "aria-label": "Edited arguments", text: prettyArguments(data.edited_arguments) }));
        }
      }
      return item(event, "tl-approval-" + data.status, head, body);
    },
    final_answer(event) {
      const data = event.data || {};
      return item(event, "", [h("span", { class: "tl-kind", text: "Final answer" })],
        h("div", { class: "tl-text prewrap tl-answer", text: data.content || "" }));
    },
    error(event) {
      const data = event.data || {};
      const head = [h("span", { class: "tl-kind", text: "Error" })];
      if (data.source) head.push(" ", h("span", { class: "muted", text: "(" + data.source + ")" }));
      return item(event, "", head, h("p", { class: "tl-text tl-error-text", text: data.message || "" }));
    },
  };

  // ------------------------------------------------------------------ header updates

  function addText(id, delta) {
    const el = document.getElementById(id);
    if (el) el.textContent = String((parseInt(el.textContent, 10) || 0) + delta);
  }

  function addUsage(usage) {
    if (!usage) return;
    addText("run-tokens-in", Number(usage.input_tokens) || 0);
    addText("run-tokens-out", Number(usage.output_tokens) || 0);
    const cost = document.getElementById("run-cost");
    if (cost) {
      const total = (parseFloat(cost.dataset.cost) || 0) + (parseFloat(usage.cost_usd) || 0);
      cost.dataset.cost = String(total);
      cost.textContent = formatCost(total);
    }
  }

  function tick() {
    const el = document.getElementById("run-duration");
    if (!el || !el.dataset.started || finished) return;
    const started = new Date(el.dataset.started);
    if (!Number.isNaN(started.getTime())) el.textContent = formatDuration(Math.max(0, (Date.now() - started) / 1000));
  }

  function startClock() {
    if (!clock) clock = window.setInterval(tick, 1000);
    tick();
  }

  function stopClock() {
    if (clock) window.clearInterval(clock);
    clock = null;
  }

  function setStatus(data, createdAt) {
    const status = data.status;
    const el = document.getElementById("run-status");
    if (el) {
      el.dataset.status = status;
      el.className = "badge badge-lg status status-" + status;
      el.textContent = statusLabel(status);
    }
    const summary = document.getElementById("run-summary");
    if (summary) summary.dataset.status = status;
    const reason = document.getElementById("run-stop-reason");
    if (reason && data.stop_reason) reason.textContent = stopReasonLabel(data.stop_reason);
    if (status === "running") {
      const duration = document.getElementById("run-duration");
      if (duration && createdAt && !duration.dataset.started) duration.dataset.started = createdAt;
      const started = document.getElementById("run-started");
      if (started) started.textContent = "just now";
      startClock();
    }
  }

  function markToolDone(data) {
    if (!data.call_id) return;
    // A call retried after a crash has two starts; both learn how it ended.
    const selector = 'li[data-type="tool_start"][data-call-id="' + CSS.escape(data.call_id) + '"]';
    timeline.querySelectorAll(selector).forEach((start) => {
      start.classList.remove("tl-pending");
      start.classList.add(data.is_error ? "tl-failed" : "tl-done");
      const state = start.querySelector(".tl-state");
      if (state) state.textContent = (data.is_error ? "failed after " : "done in ") + data.duration_ms + " ms";
    });
  }

  // The model's last thought carries the same text as the final answer; show it once.
  function markAnswerDraft(data) {
    if (!data.content) return;
    const thoughts = timeline.querySelectorAll('li[data-type="thought"]');
    const last = thoughts[thoughts.length - 1];
    const text = last && last.querySelector(".tl-text");
    if (!text || text.textContent !== data.content) return;
    text.className = "tl-text muted";
    text.textContent = "Wrote the final answer.";
  }

  // Fetch a fragment and put each of its top-level elements in place of the element with the
  // same id. A person halfway through typing into an approval card keeps what they typed: a
  // card whose form has focus or edits is left alone when the same approval is still pending.
  function swapFragments(url) {
    return fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
      .then((html) => {
        const template = document.createElement("template");
        template.innerHTML = html.trim();
        Array.from(template.content.children).forEach((fresh) => {
          const current = fresh.id && document.getElementById(fresh.id);
          if (!current) return;
          keepCardsInUse(current, fresh);
          current.replaceWith(fresh);
          if (window.htmx) window.htmx.process(fresh);
          localize(fresh);
        });
      })
      .catch(() => {});
  }

  function keepCardsInUse(current, fresh) {
    current.querySelectorAll(".approval-card[data-status=pending]").forEach((card) => {
      const inUse = card.contains(document.activeElement) || card.dataset.edited === "true";
      const twin = inUse && fresh.querySelector("#" + CSS.escape(card.id));
      if (twin) twin.replaceWith(card);
    });
  }

  function refreshSummary() {
    swapFragments(page.dataset.summaryUrl);
  }

  function refreshControls() {
    // Status and approval events come in bursts (approval, then status); one reload covers them.
    if (controlsTimer || !page.dataset.controlsUrl) return;
    controlsTimer = window.setTimeout(() => {
      controlsTimer = null;
      if (!finished) swapFragments(page.dataset.controlsUrl);
    }, 150);
  }

  function setWaiting(status) {
    if (!waiting) return;
    if (status === "paused") waiting.textContent = "Paused — nothing happens until the run is resumed.";
    else if (status === "awaiting_approval") waiting.textContent = "Waiting for a person to decide…";
    else if (waiting.innerHTML !== waitingText) waiting.innerHTML = waitingText;
  }

  function finish() {
    if (finished) return;
    finished = true;
    page.dataset.finished = "true";
    stopClock();
    if (waiting) waiting.hidden = true;
    setLive("done");
    refreshSummary();
  }

  // ------------------------------------------------------------------ event intake

  function handle(event) {
    if (!event || typeof event.seq !== "number" || event.seq <= lastSeq) return; // replayed or duplicate
    const render = renderers[event.type];
    if (render) {
      const li = render(event);
      li.dataset.source = "live"; // rendered here rather than by the server; tests look for it
      timeline.append(li);
    }
    lastSeq = event.seq;
    timeline.dataset.lastSeq = String(lastSeq);
    const data = event.data || {};
    if (event.type === "thought") addUsage(data.usage);
    if (event.type === "tool_end") markToolDone(data);
    if (event.type === "final_answer") markAnswerDraft(data);
    if (event.type === "approval") {
      refreshControls();
      document.body.dispatchEvent(new CustomEvent("approvals-changed"));
    }
    if (event.type === "status") {
      setStatus(data, event.created_at);
      setWaiting(data.status);
      if (TERMINAL.has(data.status)) finish();
      else refreshControls();
    }
  }

  // A normal close without the terminal frame (it can't normally happen, but a proxy might
  // eat it): read whatever is missing from the REST API instead of reconnecting in a loop.
  function catchUp() {
    fetch(page.dataset.apiUrl + "/events?after=" + lastSeq, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((events) => {
        (Array.isArray(events) ? events : events.results || []).forEach(handle);
      })
      .catch(() => {})
      .finally(finish);
  }

  function scheduleReconnect() {
    if (retryTimer || finished) return;
    const base = Math.min(15000, 500 * Math.pow(2, attempts));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    attempts += 1;
    setLive("reconnecting", "reconnecting in " + Math.max(1, Math.round(delay / 1000)) + " s…");
    retryTimer = window.setTimeout(() => {
      retryTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (finished || socket) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + window.location.host + page.dataset.wsPath + "?after=" + lastSeq;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    setLive(attempts ? "reconnecting" : "connecting");
    ws.addEventListener("open", () => setLive("live"));
    ws.addEventListener("message", (message) => {
      attempts = 0;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      handle(event);
    });
    ws.addEventListener("close", (closeEvent) => {
      if (socket !== ws) return;
      socket = null;
      if (finished) {
        setLive("done");
        return;
      }
      if (closeEvent.code === 1000) {
        catchUp();
        return;
      }
      if (closeEvent.code === 4401) {
        setLive("error", "signed out — reload the page");
        return;
      }
      if (closeEvent.code === 4404) {
        setLive("error", "run not found");
        return;
      }
      scheduleReconnect();
    });
  }

  // ------------------------------------------------------------------ wiring

  // Forms with data-confirm (cancel, run a write again) ask first: static/js/ui.js.

  // Typing into an approval card marks it, so a reload of the controls doesn't wipe the edit.
  document.addEventListener("input", (event) => {
    const card = event.target.closest && event.target.closest(".approval-card");
    if (card) card.dataset.edited = "true";
  });

  document.addEventListener("htmx:afterSwap", () => localize(document));

  window.addEventListener("online", () => {
    if (retryTimer) {
      window.clearTimeout(retryTimer);
      retryTimer = null;
      connect();
    }
  });

  localize(document);
  setWaiting((document.getElementById("run-status") || {}).dataset?.status);
  if (!finished) {
    const duration = document.getElementById("run-duration");
    if (duration && duration.dataset.started) startClock();
    connect();
  }
})();
