// One workflow: its steps as an indented tree (each under the job that submitted it, or
// under its last parent), their status and progress, live from the workflow's event stream;
// cancel for every unfinished step. Many like siblings fold into one row with their counts,
// so a fan-out of thousands stays one line until it is opened.
"use strict";

(() => {
  const { el, setText } = SS;
  const FOLD_AT = 6; // this many leaf siblings of one task or more fold into one row
  const SHOW_OPEN = 200; // an opened fold shows this many rows, then says how many more
  const BIG = 200; // steps: past this, live reads come at most once a second
  const POLL_MS = 5000; // steps a running task adds join the stream only on a reconnect
  const workflowId = decodeURIComponent(window.location.pathname.split("/").pop());
  const path = `/api/workflows/${encodeURIComponent(workflowId)}`;
  const opened = new Set(); // folds the user opened, kept open across re-renders
  let stream = null;
  let known = 0; // how many steps the workflow has, at the last read
  let streamed = 0; // how many of them the open stream covers
  let lastSeq = 0;
  let final = false;
  let pending = null;

  // Each step's place: under the job that submitted it if that is a step, else under its
  // parent submitted last (so it shows after every parent), else at the top.
  function tree(steps) {
    const byId = new Map(steps.map((step, i) => [step.id, { step, order: i, kids: [] }]));
    const roots = [];
    for (const node of byId.values()) {
      const { step } = node;
      let holder = step.parent_id && byId.get(step.parent_id);
      if (!holder) {
        const parents = step.depends_on.map((id) => byId.get(id)).filter(Boolean);
        holder = parents.sort((a, b) => b.order - a.order)[0];
      }
      (holder ? holder.kids : roots).push(node);
    }
    return roots;
  }

  function bar(step) {
    if (step.status !== "running") return "";
    return step.progress === null ? el("progress", { max: 1 })
      : el("progress", { max: 1, value: step.progress });
  }

  function row(node, names) {
    const { step } = node;
    const after = step.depends_on.filter((id) => names.has(id)).map((id) => names.get(id));
    return el("div", { className: "step", "data-id": step.id, "data-status": step.status },
      SS.badge(step.status),
      el("span", { className: "name" }, step.name),
      el("span", { className: "task" }, step.task), bar(step),
      after.length ? el("span", { className: "sub after" },
        after.length > 3 ? `after ${after.length} steps` : `after ${after.join(", ")}`) : "",
      SS.jobLink(step.id),
      step.error_code ? el("code", { className: "error-code" }, step.error_code) : "");
  }

  function counts(nodes) {
    const by = {};
    for (const { step } of nodes) by[step.status] = (by[step.status] || 0) + 1;
    return Object.entries(by).map(([status, n]) => `${n} ${status}`).join(", ");
  }

  function fold(task, nodes, names, key) {
    const done = nodes.filter(({ step }) => step.final).length;
    const details = el("details", { className: "fold", "data-task": task },
      el("summary", null, el("span", { className: "task" }, `${task} × ${nodes.length}`),
        el("progress", { max: 1, value: done / nodes.length }),
        el("span", { className: "sub counts" }, counts(nodes))));
    details.open = opened.has(key);
    const fill = () => {
      if (details.querySelector("ul")) return;
      const shown = nodes.slice(0, SHOW_OPEN).map((node) => el("li", null, row(node, names)));
      if (nodes.length > SHOW_OPEN) {
        shown.push(el("li", { className: "sub" }, `… and ${nodes.length - SHOW_OPEN} more`));
      }
      details.append(el("ul", { className: "tree" }, ...shown));
    };
    if (details.open) fill();
    details.addEventListener("toggle", () => {
      if (details.open) { opened.add(key); fill(); } else opened.delete(key);
    });
    return details;
  }

  // A node's children: leaves of one task fold together once there are FOLD_AT of them;
  // every other child keeps its place in submit order.
  function items(nodes, names, key) {
    const leaves = {};
    for (const node of nodes) {
      if (!node.kids.length) (leaves[node.step.task] ||= []).push(node);
    }
    const out = [];
    const folded = new Set();
    for (const node of nodes) {
      const group = leaves[node.step.task];
      if (!node.kids.length && group.length >= FOLD_AT) {
        if (!folded.has(node.step.task)) {
          folded.add(node.step.task);
          out.push(el("li", null, fold(node.step.task, group, names,
            `${key}/${node.step.task}`)));
        }
        continue;
      }
      const li = el("li", null, row(node, names));
      if (node.kids.length) {
        li.append(el("ul", { className: "tree" }, ...items(node.kids, names, node.step.id)));
      }
      out.push(li);
    }
    return out;
  }

  function render(workflow) {
    document.getElementById("workflow").hidden = false;
    final = workflow.final;
    const status = document.getElementById("status");
    status.replaceChildren(SS.badge(workflow.status));
    status.setAttribute("data-status", workflow.status);
    document.getElementById("cancel").hidden = workflow.final;
    const { done, total, fraction } = workflow.progress;
    document.getElementById("progress").value = fraction;
    setText("progress-text", `${done} / ${total} steps done`);
    setText("counts", Object.entries(workflow.counts)
      .map(([state, n]) => `${n} ${state}`).join(" · "));
    const steps = Object.entries(workflow.steps).map(([name, step]) => ({ ...step, name }));
    const names = new Map(steps.map((step) => [step.id, step.name]));
    document.getElementById("steps").replaceChildren(...items(tree(steps), names, ""));
    return steps.length;
  }

  async function refresh() {
    pending = null;
    try {
      known = render(await SS.api("GET", path));
      // Steps a task submitted since the stream opened are not in it: open it again.
      if (!final && stream && known > streamed) listen(known);
      return true;
    } catch (err) {
      if (err.status === 404) document.getElementById("missing").hidden = false;
      else SS.flash(err.message, "error");
      return false;
    }
  }

  // A burst of events, one read; a big workflow's read is big, so it waits longer.
  function later() {
    if (!pending) pending = setTimeout(refresh, known > BIG ? 1000 : 250);
  }

  function live(text, ok) {
    const badge = document.getElementById("live");
    badge.textContent = text;
    badge.classList.toggle("off", !ok);
  }

  function progress(data) {
    const step = document.querySelector(`.step[data-id="${CSS.escape(data.job_id)}"]`);
    const node = step && step.querySelector("progress");
    if (node && data.fraction !== null && data.fraction !== undefined) node.value = data.fraction;
  }

  function listen(size) {
    if (stream) stream.close();
    streamed = size;
    stream = new EventSource(SS.scoped(`${path}/events?after=${lastSeq}`));
    live("live", true);
    const seen = (event) => {
      lastSeq = Math.max(lastSeq, Number(event.lastEventId) || 0);
    };
    stream.addEventListener("state", (event) => { seen(event); later(); });
    stream.addEventListener("progress", (event) => {
      seen(event);
      progress(JSON.parse(event.data));
    });
    stream.addEventListener("log", seen);
    stream.addEventListener("error", () => {
      // The server ends the stream once every step it covers is final; a step added since,
      // or a lost connection, needs a new one (a second later: never a tight loop).
      stream.close();
      stream = null;
      live("reconnecting…", false);
      setTimeout(async () => {
        await refresh();
        if (final) live("ended", false);
        else if (!stream) listen(known);
      }, 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    setText("workflow-id", workflowId);
    document.title = `Workflow ${workflowId} · ScholarSource`;
    const cancel = document.getElementById("cancel");
    cancel.addEventListener("click", () => {
      if (!window.confirm("Cancel every unfinished step of this workflow?")) return;
      SS.act(cancel, async () => {
        const body = await SS.api("POST", `${path}/cancel`);
        return `${body.cancelled} step(s) cancelled, ${body.cancel_requested} asked to stop`;
      }, refresh);
    });
    if (!(await refresh())) return;
    if (final) {
      live("ended", false);
      return;
    }
    listen(known);
    setInterval(() => { if (!final) later(); }, POLL_MS);
  });
})();
