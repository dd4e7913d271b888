// One job: its fields, params, result, relatives (family.js), artifacts, error and attempts;
// a progress bar and its events, live from GET /api/jobs/{id}/events; cancel and retry.
"use strict";

(() => {
  const { el, setText } = SS;
  const MAX_EVENTS = 500; // the oldest go first: a chatty job must not grow the page forever
  const jobId = decodeURIComponent(window.location.pathname.split("/").pop());
  const path = `/api/jobs/${encodeURIComponent(jobId)}`;
  let stream = null;
  let lastSeq = 0;
  let lastFinal = false;

  function json(value) {
    return value === null || value === undefined ? "–" : JSON.stringify(value, null, 2);
  }

  function fields(job) {
    const rows = [
      ["Task", job.task], ["Tenant", job.tenant], ["Queue", job.queue],
      ["Priority", job.priority],
      ["Attempts", `${job.attempts} / ${job.max_attempts}`],
      ["Failures", job.failures], ["Crashes", job.crashes],
      ["Timeout", SS.seconds(job.timeout)], ["Memory limit", SS.bytes(job.memory_limit)],
      ["Peak RSS", SS.bytes(job.peak_rss)], ["Created", SS.time(job.created_at)],
      ["Started", SS.time(job.started_at)], ["Finished", SS.time(job.finished_at)],
    ];
    if (job.run_at !== null) rows.push(["Next attempt", SS.time(job.run_at)]);
    if (job.cancel_requested) rows.push(["Cancel", "requested"]);
    document.getElementById("fields").replaceChildren(
      ...rows.flatMap(([name, value]) => [el("dt", null, name), el("dd", null, value)]));
  }

  function progress(fraction, message) {
    const bar = document.getElementById("progress");
    if (fraction === null || fraction === undefined) bar.removeAttribute("value");
    else bar.value = fraction;
    setText("progress-text", fraction == null ? "" : `${Math.round(fraction * 100)}%`);
    setText("progress-message", message || "");
  }

  function attempts(job) {
    const history = [...(job.attempts_history || [])];
    // The history gains an entry when an attempt ends; show the one under way too.
    if (job.status === "running" && !history.some((a) => a.attempt === job.attempts)) {
      history.push({ attempt: job.attempts, started_at: job.started_at });
    }
    document.querySelector("#attempts tbody").replaceChildren(...history.map((a) => el("tr",
      null,
      el("td", { className: "num" }, a.attempt),
      el("td", null, a.outcome || "running"),
      el("td", null, SS.time(a.started_at)),
      el("td", null, SS.time(a.ended_at)),
      el("td", { className: "num" },
        a.ended_at ? SS.seconds(a.ended_at - a.started_at) : "–"),
      el("td", { className: "error-cell" }, ...SS.errorParts(a.error_code, a.error)),
      el("td", { className: "num" }, a.exit ?? "–"),
      el("td", { className: "num" }, SS.bytes(a.peak_rss)))));
    document.getElementById("no-attempts").hidden = history.length > 0;
  }

  function artifacts(job) {
    // Each file a download link (the server answers Content-Disposition: attachment).
    const files = job.artifacts || [];
    document.getElementById("artifacts-box").hidden = files.length === 0;
    document.querySelector("#artifacts tbody").replaceChildren(...files.map((a) => el("tr",
      null,
      el("td", null, el("a", { href: SS.scoped(a.url) }, a.name)),
      el("td", { className: "num" }, SS.bytes(a.size)),
      el("td", null, a.content_type),
      el("td", null, el("code", { title: a.sha256 }, a.sha256.slice(0, 12))))));
  }

  function render(job) {
    document.getElementById("job").hidden = false;
    document.getElementById("status").replaceChildren(SS.badge(job.status));
    document.getElementById("status").setAttribute("data-status", job.status);
    document.getElementById("cancel").hidden =
      job.final || job.cancel_requested;
    document.getElementById("retry").hidden = !SS.RETRYABLE.has(job.status);
    fields(job);
    // A running job that has not reported yet shows a moving bar; any other, a still one.
    const fraction = job.status === "succeeded" ? 1 : job.progress;
    progress(fraction ?? (job.status === "running" ? null : 0), job.progress_message);
    setText("params", json(job.params));
    setText("result", json(job.result));
    document.getElementById("error-box").hidden = !job.error;
    setText("error-code", job.error_code || "");
    setText("error", SS.errorMessage(job.error_code, job.error));
    attempts(job);
    artifacts(job);
    SS.family(job);
  }

  async function refresh() {
    try {
      const job = await SS.api("GET", path);
      render(job);
      return job;
    } catch (err) {
      if (err.status === 404) document.getElementById("missing").hidden = false;
      else SS.flash(err.message, "error");
      return null;
    }
  }

  function describe(kind, data) {
    if (kind === "log") return data.message;
    const extra = data.error ? `: ${data.error}` : "";
    return `${data.status} (attempt ${data.attempt})${extra}`;
  }

  function addEvent(kind, data) {
    const list = document.getElementById("events");
    list.append(el("li", { className: `event ${kind}`, "data-kind": kind },
      el("time", null, SS.time(data.at)), el("span", { className: "kind" }, kind),
      el("span", { className: "text" }, describe(kind, data))));
    while (list.childElementCount > MAX_EVENTS) list.firstElementChild.remove();
  }

  function live(text, ok) {
    const badge = document.getElementById("live");
    badge.textContent = text;
    badge.classList.toggle("off", !ok);
  }

  function listen() {
    if (stream) stream.close();
    // `after` resumes where this page left off (after a retry, for instance).
    stream = new EventSource(SS.scoped(`${path}/events?after=${lastSeq}`));
    live("live", true);
    const onEvent = (event) => {
      lastSeq = Math.max(lastSeq, Number(event.lastEventId) || 0);
      const data = JSON.parse(event.data);
      // Progress comes many times a second: it moves the bar, not the list.
      if (event.type === "progress") progress(data.fraction, data.message);
      else addEvent(event.type, data);
      if (event.type === "state") {
        lastFinal = data.final;
        refresh();
      }
    };
    for (const kind of ["state", "progress", "log"]) stream.addEventListener(kind, onEvent);
    stream.addEventListener("error", () => {
      // The server ends the stream once the job has ended and every event is sent; the
      // browser would reconnect to it every few seconds if we let it.
      if (lastFinal) {
        stream.close();
        live("ended", false);
      } else live("reconnecting…", false);
    });
  }

  function button(id, action, message) {
    const node = document.getElementById(id);
    node.addEventListener("click", () => SS.act(node, async () => {
      await SS.api("POST", `${path}/${action}`);
      return message;
    }, async () => {
      const job = await refresh();
      if (job && !job.final && stream.readyState === EventSource.CLOSED) {
        listen();
      }
    }));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    setText("job-id", jobId);
    document.title = `Job ${jobId} · ScholarSource`;
    button("cancel", "cancel", "Cancel sent");
    button("retry", "retry", "Queued again");
    if (await refresh()) listen();
  });
})();
