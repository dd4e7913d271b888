// One page of jobs from GET /api/jobs: never more than PAGE_SIZE rows; the URL holds the
// filters and the cursor, so every page can be linked to and the back button goes back.
"use strict";

SS.PAGE_SIZE = 50;

// Loads the page the URL names, with `fixed` filters on top; `row(job)` makes each <tr>.
SS.jobList = async (fixed, row) => {
  const url = new URLSearchParams(window.location.search);
  const query = new URLSearchParams({ limit: String(SS.PAGE_SIZE) });
  for (const key of ["status", "task", "queue", "schedule", "search", "cursor"]) {
    if (url.get(key)) query.set(key, url.get(key));
  }
  for (const [key, value] of Object.entries(fixed)) query.set(key, value);
  let page;
  try {
    page = await SS.api("GET", `/api/jobs?${query}`);
  } catch (err) {
    SS.flash(err.message, "error");
    return;
  }
  document.querySelector("#jobs tbody").replaceChildren(...page.jobs.map(row));
  document.getElementById("empty").hidden = page.jobs.length > 0;

  const newest = new URLSearchParams(url);
  newest.delete("cursor");
  const newestLink = document.getElementById("newest");
  newestLink.href = `?${newest}`;
  newestLink.hidden = !url.get("cursor");
  const olderLink = document.getElementById("older");
  olderLink.hidden = page.next_cursor === null;
  if (page.next_cursor !== null) {
    const older = new URLSearchParams(url);
    older.set("cursor", page.next_cursor);
    olderLink.href = `?${older}`;
  }
};

// A button that runs a job action, then reloads the list.
SS.actionButton = (label, method, path, message, reload) => {
  const button = SS.el("button", { className: "small", "data-action": label.toLowerCase() },
    label);
  button.addEventListener("click", () => SS.act(button, async () => {
    await SS.api(method, path);
    return message;
  }, reload));
  return button;
};
