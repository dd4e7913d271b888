// The jobs list: filters (status, task, queue, text search), paging, cancel for jobs not
// yet ended, and cancel or retry for every selected job at once.
"use strict";

(() => {
  const { el } = SS;

  function progress(job) {
    if (job.status !== "running") return "";
    if (job.progress === null) return el("progress", { max: 1 });
    return el("progress", { max: 1, value: job.progress, title: job.progress_message });
  }

  // How long the latest attempt ran, or has run so far.
  function duration(job) {
    if (job.run_time !== null) return SS.seconds(job.run_time);
    if (job.status === "running" && job.started_at !== null) {
      return SS.seconds(Math.max(0, Date.now() / 1000 - job.started_at));
    }
    return "–";
  }

  function checkbox(job) {
    const box = el("input", { className: "select", "data-id": job.id });
    box.type = "checkbox";
    box.setAttribute("aria-label", `Select ${job.id}`);
    box.addEventListener("change", selectionChanged);
    return box;
  }

  function row(job) {
    const id = encodeURIComponent(job.id);
    return el("tr", { "data-id": job.id, "data-status": job.status },
      el("td", null, checkbox(job)),
      // An admin sees every tenant's jobs: name the tenant where it is not the default one.
      el("td", null, SS.jobLink(job.id),
        job.tenant === "default" ? "" : el("span", { className: "tenant" }, ` ${job.tenant}`)),
      el("td", null, job.task),
      el("td", null, job.queue),
      el("td", { className: "status" }, SS.badge(job.status), progress(job)),
      el("td", { className: "num" }, `${job.attempts} / ${job.max_attempts}`),
      el("td", { className: "num duration" }, duration(job)),
      el("td", { className: "error-cell" }, ...SS.errorParts(job.error_code, job.error)),
      el("td", { className: "time" }, SS.time(job.created_at)),
      el("td", { className: "time" }, SS.time(job.finished_at)),
      el("td", null, !job.final && !job.cancel_requested
        ? SS.actionButton("Cancel", "POST", `/api/jobs/${id}/cancel`,
          `Cancel sent to ${job.id}`, load)
        : ""));
  }

  function selected() {
    return [...document.querySelectorAll("#jobs tbody input.select:checked")]
      .map((box) => box.getAttribute("data-id"));
  }

  function selectionChanged() {
    const ids = selected();
    const all = document.querySelectorAll("#jobs tbody input.select").length;
    document.getElementById("selected-count").textContent =
      ids.length ? `${ids.length} selected` : "none selected";
    for (const id of ["cancel-selected", "retry-selected"]) {
      document.getElementById(id).disabled = ids.length === 0;
    }
    const selectAll = document.getElementById("select-all");
    selectAll.checked = all > 0 && ids.length === all;
    selectAll.indeterminate = ids.length > 0 && ids.length < all;
  }

  async function load() {
    await SS.jobList({}, row);
    selectionChanged();
  }

  // Calls the job's own route (`action`: cancel or retry) for each selected job, then says
  // how many succeeded and why the others did not.
  function bulk(buttonId, action, label) {
    const button = document.getElementById(buttonId);
    button.addEventListener("click", () => SS.act(button, async () => {
      const ids = selected();
      const results = await Promise.allSettled(ids.map((id) => SS.api(
        "POST", `/api/jobs/${encodeURIComponent(id)}/${action}`)));
      const failures = results.filter((r) => r.status === "rejected");
      const summary = `${label}: ${results.length - failures.length} succeeded, ` +
        `${failures.length} failed`;
      if (failures.length) throw new Error(`${summary} (${failures[0].reason.message})`);
      return summary;
    }, load));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("filters");
    const url = new URLSearchParams(window.location.search);
    for (const key of ["status", "task", "queue", "schedule", "search"]) {
      form.elements[key].value = url.get(key) || "";
    }
    document.getElementById("select-all").addEventListener("change", (event) => {
      for (const box of document.querySelectorAll("#jobs tbody input.select")) {
        box.checked = event.target.checked;
      }
      selectionChanged();
    });
    bulk("cancel-selected", "cancel", "Cancel");
    bulk("retry-selected", "retry", "Retry");
    load();
  });
})();
