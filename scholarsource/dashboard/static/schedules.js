// The overview's schedules table: next and last fire, the latest job and its status, with
// pause, resume and "run now" buttons. Read from /api/schedules every few seconds (fires
// are seconds apart at the most frequent), and again after each button.
"use strict";

(() => {
  const { el } = SS;
  const REFRESH_MS = 5000;

  function button(label, schedule, action, message) {
    const node = el("button", { className: "small", "data-action": action }, label);
    node.addEventListener("click", () => SS.act(node, async () => {
      await SS.api("POST", `/api/schedules/${encodeURIComponent(schedule.name)}/${action}`);
      return message;
    }, load));
    return node;
  }

  function row(s) {
    const when = s.cron ? `${s.cron} (${s.timezone})` : `every ${SS.seconds(s.every)}`;
    return el("tr", { "data-schedule": s.name },
      el("td", null, el("a", {
        href: `/dashboard/jobs?schedule=${encodeURIComponent(s.name)}` }, s.name)),
      el("td", null, s.task),
      el("td", null, when),
      el("td", { "data-field": "next" }, s.paused ? "paused" : SS.time(s.next_fire)),
      el("td", null, SS.time(s.last_fire)),
      el("td", null, s.last_job_id ? SS.jobLink(s.last_job_id) : "–"),
      el("td", null, s.last_status ? SS.badge(s.last_status) : "–"),
      el("td", null,
        s.paused ? button("Resume", s, "resume", `${s.name} resumed`)
          : button("Pause", s, "pause", `${s.name} paused`),
        " ", button("Run now", s, "trigger", `${s.name}: a job is queued`)));
  }

  async function load() {
    try {
      const body = await SS.api("GET", "/api/schedules");
      document.querySelector("#schedules tbody").replaceChildren(...body.schedules.map(row));
      document.getElementById("no-schedules").hidden = body.schedules.length > 0;
    } catch (err) {
      if (err.status === 403) {  // schedules are the operator's: only an admin key sees them
        document.getElementById("schedules").closest("section").hidden = true;
        clearInterval(timer);
        return;
      }
      SS.flash(`schedules: ${err.message}`, "error");
    }
  }

  let timer = null;
  document.addEventListener("DOMContentLoaded", () => {
    load();
    timer = setInterval(load, REFRESH_MS);
  });
})();
