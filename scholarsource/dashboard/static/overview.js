// The overview: everything comes from /api/stats (counts, never job rows), then live from
// its event stream, one `stats` event a second.
"use strict";

(() => {
  const { el, setText } = SS;
  const STATES = ["scheduled", "waiting", "queued", "running", "retrying", "dead",
    "succeeded", "cancelled"];
  // Per queue, the server counts live jobs and dead letters only (finished ones pile up).
  const QUEUE_STATES = ["scheduled", "waiting", "queued", "running", "retrying", "dead"];
  let chart = null;
  // Each slot process's CPU seconds at the previous heartbeat, to show CPU use as a rate.
  let cpuBefore = new Map();

  function totals(counts) {
    const links = STATES.map((state) => el("a", {
      href: `/dashboard/jobs?status=${state}`, className: `tile status-${state}`,
      "data-state": state,
    }, el("span", { className: "count" }, (counts[state] || 0).toLocaleString()),
    el("span", { className: "label" }, state)));
    document.getElementById("totals").replaceChildren(...links);
  }

  function table(id, emptyId, rows) {
    document.querySelector(`#${id} tbody`).replaceChildren(...rows);
    document.getElementById(emptyId).hidden = rows.length > 0;
  }

  function queues(byQueue) {
    const names = Object.keys(byQueue).sort();
    table("queues", "no-queues", names.map((name) => el("tr", { "data-queue": name },
      el("td", null, el("a", { href: `/dashboard/jobs?queue=${encodeURIComponent(name)}` },
        name)),
      ...QUEUE_STATES.map((state) => el("td", { className: "num" },
        (byQueue[name][state] || 0).toLocaleString())))));
  }

  function tasks(byTask) {
    const names = Object.keys(byTask).sort();
    table("tasks", "no-tasks", names.map((name) => {
      const t = byTask[name];
      const run = t.run_time || {};
      const wait = t.wait_time || {};
      return el("tr", { "data-task": name },
        el("td", null, el("a", { href: `/dashboard/jobs?task=${encodeURIComponent(name)}` },
          name)),
        el("td", { className: "num" }, (t.finished_15m || 0).toLocaleString()),
        ...[run.p50, run.p95, run.p99, wait.p50, wait.p95, wait.p99].map(
          (s) => el("td", { className: "num" }, SS.seconds(s))));
    }));
  }

  // The server keeps the history (jobs finished per 10-second bucket over 15 minutes, from
  // the database), so a page opened just now shows it too, whichever worker it reaches.
  function plot(stats) {
    const h = stats.history;
    if (!h) return;
    const points = h.finished.map((n, i) => ({ t: h.start + (i + 1) * h.step, v: n / h.step }));
    const peak = chart.draw(points, h.start, h.start + h.finished.length * h.step);
    setText("chart-caption", `last 15 min, per ${h.step} s · peak ${SS.rate(peak)}/s`);
  }

  // CPU use of each slot's process between two heartbeats, as a percentage of one core.
  function cpu(row, heartbeatAt, next) {
    if (row.cpu_seconds === null) return "–";
    const before = cpuBefore.get(row.slot);  // by slot: only an admin's view has pids
    let sample = { seconds: row.cpu_seconds, at: heartbeatAt, percent: null };
    if (before && before.at === heartbeatAt) sample = before;  // the same heartbeat again
    else if (before && heartbeatAt > before.at) {
      sample.percent = (100 * (row.cpu_seconds - before.seconds)) / (heartbeatAt - before.at);
    }
    next.set(row.slot, sample);
    return sample.percent === null ? "–" : `${Math.max(0, sample.percent).toFixed(0)}%`;
  }

  function slotList(stats) {
    const pool = stats.pool || {};
    const heartbeatAt = stats.time - (pool.heartbeat_age || 0);
    const next = new Map();
    table("slot-list", "no-slots", (pool.slots || []).map((row) => el("tr", {
      "data-slot": row.slot, "data-job": row.job_id,
    },
    el("td", { className: "num" }, row.slot),
    el("td", { className: "num" }, row.pid ?? "–"),
    el("td", null, row.job_id ? SS.jobLink(row.job_id)
      : el("span", { className: "sub" }, row.other_tenant ? "another tenant's job" : "idle")),
    el("td", null, row.task || ""),
    el("td", { className: "num" }, SS.seconds(row.running_for)),
    el("td", { className: "num" }, SS.bytes(row.rss)),
    el("td", { className: "num" }, cpu(row, heartbeatAt, next)))));
    cpuBefore = next;
  }

  function render(stats) {
    const slots = stats.slots || {};
    setText("slots-busy", slots.busy ?? "–");
    setText("slots-total", slots.total ?? "–");
    const tp = stats.throughput || {};
    setText("tp-1m", SS.rate(tp["1m"]));
    setText("tp-5m", SS.rate(tp["5m"]));
    setText("tp-15m", SS.rate(tp["15m"]));
    const pool = stats.pool || {};
    setText("pool-state", pool.heartbeat_age == null ? "not reporting" : "running");
    setText("pool-pid", pool.pid ?? "–");
    setText("pool-heartbeat", pool.heartbeat_age == null ? "–"
      : `${SS.seconds(pool.heartbeat_age)} ago`);
    const db = stats.database || {};
    setText("db-size", SS.bytes(db.size_bytes));
    setText("db-wal", SS.bytes(db.wal_bytes));
    totals(stats.totals || {});
    queues(stats.queues || {});
    tasks(stats.tasks || {});
    slotList(stats);
    plot(stats);
    if (!performance.getEntriesByName("stats-rendered").length) {
      performance.mark("stats-rendered"); // how long until the page shows real numbers
    }
  }

  function live(text, ok) {
    const badge = document.getElementById("live");
    badge.textContent = text;
    badge.classList.toggle("off", !ok);
  }

  document.addEventListener("DOMContentLoaded", () => {
    chart = SS.lineChart(document.getElementById("chart"), {
      top: document.getElementById("chart-y-top"),
      middle: document.getElementById("chart-y-middle"),
    });
    SS.api("GET", "/api/stats").then(render).catch((err) => live(err.message, false));
    const stream = new EventSource(SS.scoped("/api/stats/events"));
    stream.addEventListener("stats", (event) => {
      render(JSON.parse(event.data));
      live("live", true);
    });
    // EventSource reconnects by itself; say so meanwhile.
    stream.addEventListener("error", () => live("reconnecting…", false));
  });
})();
