// The jobs list: filters (status, task, queue), paging, and cancel for jobs not yet ended.
"use strict";

(() => {
  const { el } = SS;

  function progress(job) {
    if (job.status !== "running") return "";
    if (job.progress === null) return el("progress", { max: 1 });
    return el("progress", { max: 1, value: job.progress, title: job.progress_message });
  }

  function row(job) {
    const id = encodeURIComponent(job.id);
    return el("tr", { "data-id": job.id, "data-status": job.status },
      el("td", null, SS.jobLink(job.id)),
      el("td", null, job.task),
      el("td", null, job.queue),
      el("td", null, SS.badge(job.status)),
      el("td", null, progress(job)),
      el("td", { className: "num" }, `${job.attempts} / ${job.max_attempts}`),
      el("td", null, SS.time(job.created_at)),
      el("td", null, SS.time(job.finished_at)),
      el("td", null, SS.CANCELLABLE.has(job.status) && !job.cancel_requested
        ? SS.actionButton("Cancel", "POST", `/api/jobs/${id}/cancel`,
          `Cancel sent to ${job.id}`, load)
        : ""));
  }

  function load() {
    return SS.jobList({}, row);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("filters");
    const url = new URLSearchParams(window.location.search);
    for (const key of ["status", "task", "queue"]) form.elements[key].value = url.get(key) || "";
    load();
  });
})();
