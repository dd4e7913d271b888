// The overview: everything comes from /api/stats (counts, never job rows), then live from
// its event stream, one `stats` event a second.
"use strict";

(() => {
  const { el, setText } = SS;
  const STATES = ["queued", "running", "failed", "dead", "succeeded", "cancelled"];
  // Per queue, the server counts live jobs and dead letters only (finished ones pile up).
  const QUEUE_STATES = ["queued", "running", "failed", "dead"];
  const CHART_POINTS = 300; // five minutes at one point a second
  let chart = null;
  let previous = null;

  function totals(counts) {
    const links = STATES.map((state) => el("a", {
      href: `/dashboard/jobs?status=${state}`, className: `tile status-${state}`,
      "data-state": state,
    }, el("span", { className: "count" }, (counts[state] || 0).toLocaleString()),
    el("span", { className: "label" }, state === "failed" ? "waiting to retry" : state)));
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

  // The chart shows jobs finished per second between two snapshots (the server's averages
  // over 1, 5 and 15 minutes are in the card): bursts and stalls show at once.
  function plot(stats) {
    const t = stats.totals || {};
    const finished = (t.succeeded || 0) + (t.dead || 0) + (t.cancelled || 0);
    const before = previous;
    previous = { time: stats.time, finished };
    // The same snapshot may come from the first fetch and the stream; a purge lowers the
    // count: neither is a rate.
    if (!before || stats.time <= before.time || finished < before.finished) return;
    const rate = (finished - before.finished) / (stats.time - before.time);
    const peak = chart.push(stats.time, rate);
    setText("chart-caption", `last ${Math.ceil(chart.length / 60)} min · peak ` +
      `${SS.rate(peak)}/s`);
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
    setText("pool-state", pool.pid ? "running" : "not reporting");
    setText("pool-pid", pool.pid ?? "–");
    setText("pool-heartbeat", pool.heartbeat_age == null ? "–"
      : `${SS.seconds(pool.heartbeat_age)} ago`);
    const db = stats.database || {};
    setText("db-size", SS.bytes(db.size_bytes));
    setText("db-wal", SS.bytes(db.wal_bytes));
    totals(stats.totals || {});
    queues(stats.queues || {});
    tasks(stats.tasks || {});
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
    chart = SS.lineChart(document.getElementById("chart"), CHART_POINTS);
    SS.api("GET", "/api/stats").then(render).catch((err) => live(err.message, false));
    const stream = new EventSource("/api/stats/events");
    stream.addEventListener("stats", (event) => {
      render(JSON.parse(event.data));
      live("live", true);
    });
    // EventSource reconnects by itself; say so meanwhile.
    stream.addEventListener("error", () => live("reconnecting…", false));
  });
})();
