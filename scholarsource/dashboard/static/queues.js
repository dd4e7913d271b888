// The queues: depth, limits, pauses and rate limits, with pause/resume buttons.
"use strict";

(() => {
  const { el } = SS;
  const REFRESH_MS = 2000;

  function queueRow(q) {
    const name = encodeURIComponent(q.name);
    const action = q.paused ? "Resume" : "Pause";
    return el("tr", { "data-queue": q.name },
      el("td", null, q.name),
      el("td", { className: "num" }, String(q.queued)),
      el("td", { className: "num" }, String(q.scheduled)),
      el("td", { className: "num" }, String(q.running)),
      el("td", { className: "num" }, q.max_running === null ? "—" : String(q.max_running)),
      el("td", { className: "num" }, String(q.reserved)),
      el("td", { className: "num" }, String(q.throttled)),
      el("td", { className: "num" }, SS.rate(q.throughput)),
      el("td", { className: "num" },
        q.oldest_queued_age === null ? "—" : SS.seconds(q.oldest_queued_age)),
      el("td", null, q.paused ? "paused" : "active"),
      el("td", null, SS.actionButton(action, "POST", `/api/queues/${name}/${action.toLowerCase()}`,
        `queue ${q.name} ${q.paused ? "resumed" : "paused"}`, load)));
  }

  function rateRow(r) {
    return el("tr", { "data-task": r.task },
      el("td", null, r.task),
      el("td", null, r.queue),
      el("td", null, r.rate_limit),
      el("td", { className: "num" }, String(r.started_in_window)),
      el("td", { className: "num" }, String(r.queued)),
      el("td", null, r.throttled ? "throttled" : ""));
  }

  function fill(id, rows) {
    document.querySelector(`#${id} tbody`).replaceChildren(...rows);
  }

  async function load() {
    try {
      const body = await SS.api("GET", "/api/queues");
      fill("queues", body.queues.map(queueRow));
      fill("rates", body.rates.map(rateRow));
      document.getElementById("no-rates").hidden = body.rates.length > 0;
    } catch (err) {
      SS.flash(err.message, "error");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    load();
    setInterval(load, REFRESH_MS);
  });
})();
