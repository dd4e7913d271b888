// The dead letters: retry one, retry all, purge all.
"use strict";

(() => {
  const { el } = SS;

  function row(job) {
    const id = encodeURIComponent(job.id);
    return el("tr", { "data-id": job.id },
      el("td", null, SS.jobLink(job.id)),
      el("td", null, job.task),
      el("td", null, job.queue),
      el("td", { className: "num" }, `${job.attempts} / ${job.max_attempts}`),
      el("td", { className: "error-cell" }, ...SS.errorParts(job.error_code, job.error)),
      el("td", null, SS.time(job.finished_at)),
      el("td", null, SS.actionButton("Retry", "POST", `/api/jobs/${id}/retry`,
        `${job.id} is queued again`, load)));
  }

  function load() {
    return SS.jobList({ status: "dead" }, row);
  }

  function bulk(id, method, path, confirmText, message) {
    const button = document.getElementById(id);
    button.addEventListener("click", () => {
      if (confirmText && !window.confirm(confirmText)) return;
      SS.act(button, async () => message(await SS.api(method, path)), load);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bulk("retry-all", "POST", "/api/dead/retry", null,
      (body) => `${body.retried} dead job(s) queued again`);
    bulk("purge-all", "DELETE", "/api/dead",
      "Delete every dead job and its history? This cannot be undone.",
      (body) => `${body.purged} dead job(s) purged`);
    load();
  });
})();
