// The latest workflows from GET /api/workflows: status, steps and how many are done.
"use strict";

(() => {
  const { el } = SS;

  function row(workflow) {
    const running = workflow.counts.running || 0;
    const { done } = workflow;
    return el("tr", { "data-id": workflow.id, "data-status": workflow.status },
      el("td", null, el("a", { className: "id",
        href: `/dashboard/workflows/${encodeURIComponent(workflow.id)}` }, workflow.id)),
      el("td", null, SS.badge(workflow.status)),
      el("td", { className: "num" }, workflow.steps.toLocaleString()),
      el("td", null, el("progress", { max: workflow.steps, value: done }),
        el("span", { className: "sub" },
          ` ${done} done${running ? `, ${running} running` : ""}`)),
      el("td", { className: "time" }, SS.time(workflow.created_at)));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try {
      const { workflows } = await SS.api("GET", "/api/workflows");
      document.querySelector("#workflows tbody").replaceChildren(...workflows.map(row));
      document.getElementById("empty").hidden = workflows.length > 0;
    } catch (err) {
      SS.flash(err.message, "error");
    }
  });
})();
