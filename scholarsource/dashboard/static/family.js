// The job page's relatives: its workflow, the job that submitted it, the jobs it submitted,
// and the parents it waits for (depends_on) with their statuses. The workflow's summary
// holds every step, so one read finds them all; a parent outside any workflow (a plain
// depends_on) is read on its own.
"use strict";

SS.FAMILY_SHOWN = 100; // children listed; a fan-out's others are counted and linked

SS.family = async (job) => {
  const { el } = SS;
  let steps = [];
  if (job.workflow_id) {
    try {
      const workflow = await SS.api("GET",
        `/api/workflows/${encodeURIComponent(job.workflow_id)}`);
      steps = Object.values(workflow.steps);
    } catch (err) {
      if (err.status !== 404) SS.flash(err.message, "error");
    }
  }
  const byId = new Map(steps.map((step) => [step.id, step]));
  const parents = await Promise.all(job.depends_on.map(async (id) => {
    if (byId.has(id)) return byId.get(id);
    try {
      return await SS.api("GET", `/api/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      return { id, task: "–", status: err.status === 404 ? "gone" : "unknown" };
    }
  }));
  const children = steps.filter((step) => step.parent_id === job.id);

  const jobRow = (relation, step) => el("tr",
    { "data-relation": relation, "data-id": step.id }, el("td", null, relation), el("td", null, SS.jobLink(step.id)), el("td", null, step.task),
    el("td", null, SS.badge(step.status)));
  const rows = [];
  if (job.workflow_id) {
    rows.push(el("tr", { "data-relation": "workflow" }, el("td", null, "workflow"),
      el("td", null, el("a", { className: "id", href:
        `/dashboard/workflows/${encodeURIComponent(job.workflow_id)}` }, job.workflow_id)),
      el("td", null, job.step || ""), el("td", null, "")));
  }
  if (job.parent_id) {
    rows.push(jobRow("submitted by", byId.get(job.parent_id) ||
      { id: job.parent_id, task: "–", status: "unknown" }));
  }
  for (const parent of parents) rows.push(jobRow("after", parent));
  for (const child of children.slice(0, SS.FAMILY_SHOWN)) {
    rows.push(jobRow("submitted", child));
  }
  if (children.length > SS.FAMILY_SHOWN) {
    rows.push(el("tr", null, el("td", null, "submitted"), el("td", null,
      `… and ${children.length - SS.FAMILY_SHOWN} more on the workflow's page`)));
  }
  document.querySelector("#family tbody").replaceChildren(...rows);
  document.getElementById("family-box").hidden = rows.length === 0;
};
