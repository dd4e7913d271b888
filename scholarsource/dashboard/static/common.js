// Shared by every dashboard page: API calls, safe DOM building, formatting, the id lookup.
// Job data (params, results, errors, log lines) comes from clients and tasks, so it only ever
// reaches the page as text nodes: nothing here parses strings as HTML.
"use strict";

const SS = (() => {
  // Which states are final is the server's to say: jobs and state events carry `final`.
  // A job not yet final can be cancelled; these can also be re-queued with fresh attempts.
  const RETRYABLE = new Set(["retrying", "dead", "cancelled"]);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  // An admin key views another tenant with ?tenant=NAME on any page: every API call, event
  // stream, link and form of the page carries it on (any other key gets 403 for it).
  const TENANT = new URLSearchParams(window.location.search).get("tenant");

  function scoped(path) {
    if (!TENANT) return path;
    const url = new URL(path, window.location.origin);
    url.searchParams.set("tenant", TENANT);
    return url.pathname + url.search;
  }

  async function api(method, path) {
    // Same-origin fetch: the browser adds Origin and Sec-Fetch-Site, which the server's
    // cross-site guard checks on every state-changing request.
    const response = await fetch(scoped(path), {
      method, headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    // The session ended (expired, logged out elsewhere, its key revoked): log in again.
    if (response.status === 401) window.location.assign("/dashboard/login");
    if (!response.ok) throw new ApiError(response.status, body);
    // Every answer is JSON: none is a body cut short (the page left while it came in).
    if (body === null) {
      throw new ApiError(response.status, { message: "the server's answer could not be read" });
    }
    return body;
  }

  // el("a", {href: url, className: "x"}, "text", child): attributes are set as properties
  // or attributes, children as text nodes or elements.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "className" || key === "value" || key === "max") node[key] = value;
      else if (key.startsWith("data-") || key === "href" || key === "title") {
        node.setAttribute(key, value);
      } else if (key === "onclick") node.addEventListener("click", value);
      else throw new Error(`el(): unsupported attribute ${key}`);
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function time(unix) {
    if (unix === null || unix === undefined) return "–";
    const d = new Date(unix * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 120) return `${s.toFixed(1)} s`;
    if (s < 7200) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function rate(perSecond) {
    if (perSecond === null || perSecond === undefined) return "–";
    return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(2);
  }

  function badge(status) {
    return el("span", { className: `badge status-${status}` },
      status === "retrying" ? "retrying (waits for its next attempt)" : status);
  }

  // An error's message without its code in front: the pool writes "worker_died: ..." and
  // the code is shown beside it already.
  function errorMessage(code, message) {
    const text = message || "";
    if (code && text === code) return "";
    return code && text.startsWith(`${code}: `) ? text.slice(code.length + 2) : text;
  }

  // A table cell's worth of error: the code, then the message.
  function errorParts(code, message) {
    const text = errorMessage(code, message);
    return [code ? el("code", null, code) : "", code && text ? " " : "", text];
  }

  function jobLink(id) {
    return el("a", { href: `/dashboard/jobs/${encodeURIComponent(id)}`, className: "id" }, id);
  }

  let flashTimer = null;
  function flash(message, kind) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = `flash ${kind || "info"}`;
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // Runs `action` (a promise-returning function) for a button, reporting its outcome.
  async function act(button, action, done) {
    button.disabled = true;
    try {
      const message = await action();
      if (message) flash(message, "ok");
    } catch (err) {
      flash(err.message, "error");
    } finally {
      button.disabled = false;
      if (done) done();
    }
  }

  function openJob(id) {
    window.location.assign(scoped(`/dashboard/jobs/${encodeURIComponent(id.trim())}`));
  }

  // Links to other dashboard pages keep the tenant, whoever made them.
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element && event.target.closest("a[href]");
    if (TENANT && link && link.getAttribute("href").startsWith("/dashboard")) {
      link.setAttribute("href", scoped(link.getAttribute("href")));
    }
  }, true);

  document.addEventListener("DOMContentLoaded", () => {
    if (TENANT) {
      for (const form of document.querySelectorAll('form[method="get"]')) {
        const input = document.createElement("input");
        Object.assign(input, { type: "hidden", name: "tenant", value: TENANT });
        form.append(input);
      }
    }
    document.getElementById("lookup").addEventListener("submit", (event) => {
      event.preventDefault();
      openJob(document.getElementById("lookup-id").value);
    });
  });

  // The lookup form also works before scripts run: it lands on /dashboard/jobs?id=...
  const lookupId = new URLSearchParams(window.location.search).get("id");
  if (window.location.pathname === "/dashboard/jobs" && lookupId) openJob(lookupId);

  return {
    RETRYABLE, ApiError, api, scoped, el, setText, time, seconds, bytes, rate,
    badge, jobLink, flash, act, errorMessage, errorParts,
  };
})();
