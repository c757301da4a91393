// The connection page: every call is one of the API's own routes, with the dashboard's JWT
// as a bearer token. Written for this page (no library, no build step): docs/ui.md.
"use strict";

(function () {
  const API = location.pathname.replace(/\/ui\/.*$/, ""); // /v1/e/callrail
  const TOKEN_KEY = "callrail-ui-token";
  const CALL_EVENTS = ["call", "form", "form_submission", "text"];
  const COMPANY_COLUMNS = [
    ["name", "Name", true], ["id", "Id", true], ["status", "Status", true],
    ["time_zone", "Time zone", true], ["created_at", "Created", true],
    ["disabled_at", "Disabled", true], ["", "", false],
  ];
  const $ = (id) => document.getElementById(id);
  let token = null;
  const jobs = new Map(); // job id -> {li, done callbacks}
  const accountNames = new Map(); // CallRail account id -> its name, as the listings say
  const companies = { account: null, name: "", page: 1, perPage: 10, sort: "name",
    search: "", disabled: false, totalPages: 1 };
  let webhookCompany = null;
  let stream = null;
  let retryDelay = 1000;
  let statusTimer = null;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // ---- small DOM helpers (textContent only: nothing the service says is parsed as HTML)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }
  function showAlert(message) {
    const box = $("alert");
    box.textContent = message;
    box.hidden = !message;
  }

  // ---- the API
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, "The service did not answer. Try again in a moment.");
    }
    let json = null;
    try { json = await res.json(); } catch (e) { json = null; }
    if (!res.ok || !json || json.success === false) {
      const message = (json && json.message) || "The service answered " + res.status + ".";
      if (res.status === 401) signOut(message);
      throw new ApiError(res.status, message);
    }
    return { status: res.status, data: json.data, message: json.message };
  }
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    return "?" + q.toString();
  }

  // ---- sign in: the token comes in the fragment (never sent to a server), then lives in
  // sessionStorage; the fragment is cleared at once so that it is not in the history.
  function takeToken() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const given = hash.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }
  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    if (stream) { stream.close(); stream = null; }
    // Nothing of this account stays on the page for the next one.
    jobs.clear();
    accountNames.clear();
    Object.assign(companies, { account: null, name: "", page: 1, search: "" });
    webhookCompany = null;
    for (const id of ["jobs", "calls", "receivers", "webhooks-list", "chart-day", "chart-source", "status-groups"]) $(id).replaceChildren();
    for (const id of ["accounts-table", "companies-table"]) $(id).tBodies[0].replaceChildren();
    openGroups.clear();
    openGroups.add("");
    for (const id of ["companies", "webhooks", "chart"]) $(id).hidden = true;
    $("app").hidden = true;
    $("sign-in").hidden = false;
    $("sign-out").hidden = true;
    setStreamState("offline", false);
    if (message) showAlert(message);
  }
  function signIn(value) {
    token = value;
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    showAlert("");
    connect();
    loadStatus();
    loadAccounts();
  }

  // ---- the event stream: a fresh ticket per connection; reconnects when it drops
  function setStreamState(text, live) {
    const pill = $("stream-state");
    pill.textContent = text;
    pill.classList.toggle("live", live);
  }
  async function connect() {
    if (!token) return;
    if (stream) { stream.close(); stream = null; }
    let ticket;
    try {
      ticket = (await api("POST", "/events/ticket")).data.ticket;
    } catch (e) {
      setStreamState("offline", false);
      if (token && e.status !== 401) reconnectLater();
      return;
    }
    const source = new EventSource(API + "/events" + query({ ticket }));
    stream = source;
    source.onopen = () => { retryDelay = 1000; setStreamState("live", true); };
    source.onerror = () => {
      // EventSource would retry with the same ticket, which may have expired: close it
      // and open a new one with a fresh ticket.
      if (stream !== source) return;
      source.close();
      stream = null;
      setStreamState("reconnecting", false);
      reconnectLater();
    };
    source.addEventListener("job", (ev) => onJob(JSON.parse(ev.data)));
    for (const name of CALL_EVENTS) {
      source.addEventListener(name, (ev) => onCall(name, JSON.parse(ev.data)));
    }
  }
  function reconnectLater() {
    const delay = retryDelay;
    retryDelay = Math.min(retryDelay * 2, 30000);
    setTimeout(() => { if (token && !stream) connect(); }, delay);
  }

  // ---- jobs, live
  function jobLabel(job) {
    const p = job.params || {};
    const id = p.callrail_account_id || p.account_id || "";
    const what = accountNames.get(id) || id;
    const kind = job.type.replace(/_/g, " ") + (p.stream ? " " + p.stream.replace(/_/g, " ") : "");
    return kind + (what ? " · " + what : "") +
      (p.company_id ? " · " + p.company_id : "");
  }
  function onJob(job) {
    let entry = jobs.get(job.job_id);
    if (!entry) {
      const li = el("li", { "data-job": job.job_id });
      $("jobs").prepend(li);
      entry = { li, done: [], final: false };
      jobs.set(job.job_id, entry);
    }
    // An answer read before the stream's newer event must not take the job back in time.
    const last = entry.last;
    if (entry.final || (last && last.updated_at && job.updated_at && job.updated_at < last.updated_at)) return;
    entry.last = job;
    renderJob(entry, job);
    if ((job.status === "succeeded" || job.status === "failed") && !entry.final) {
      entry.final = true;
      for (const fn of entry.done.splice(0)) fn(job);
      statusSoon();
    }
    if (job.status === "running" && !entry.started) { entry.started = true; statusSoon(); }
  }
  function renderJob(entry, job) {
    const pr = job.progress || {};
    const final = job.status === "succeeded" || job.status === "failed";
    const max = Math.max(pr.total_pages || 0, pr.pages_done || 0, 1);
    const bar = el("progress", { max, "aria-label": "progress of " + jobLabel(job) });
    if (job.status === "succeeded") bar.value = max;
    else if (pr.total_pages || pr.pages_done) bar.value = pr.pages_done || 0;
    else if (final) bar.value = 0;
    else bar.removeAttribute("value"); // indeterminate until the first page says how many
    const detail = [];
    if (pr.total_pages) detail.push((pr.pages_done || 0) + " of " + pr.total_pages + " pages");
    if (pr.records) detail.push(pr.records + " records");
    let outcome = null;
    if (job.error) {
      outcome = el("div", {},
        el("span", { class: "error-text", text: job.error.message }),
        job.error.remedy ? el("div", { class: "remedy", text: job.error.remedy }) : null);
    } else if (job.status === "succeeded" && job.result) {
      outcome = el("div", { class: "muted", text: summarize(job.result) });
    }
    entry.li.replaceChildren(...[
      el("div", { class: "head" },
        el("span", { text: jobLabel(job) }),
        el("span", { class: "state state-" + job.status, "data-status": job.status, text: job.status })),
      bar,
      detail.length ? el("div", { class: "muted", text: detail.join(" · ") }) : null,
      outcome,
    ].filter(Boolean));
    entry.li.dataset.status = job.status;
  }
  function summarize(result) {
    const parts = [];
    for (const [k, v] of Object.entries(result)) {
      if (typeof v === "number" || typeof v === "string") parts.push(k.replace(/_/g, " ") + ": " + v);
      else if (Array.isArray(v)) parts.push(k.replace(/_/g, " ") + ": " + v.length);
    }
    return parts.slice(0, 4).join(" · ");
  }
  // A 202's job: shown at once, then followed by the stream; `done` runs once when it ends.
  async function follow(accepted, done) {
    const id = accepted.job_id;
    let entry = jobs.get(id);
    if (!entry) {
      onJob({ job_id: id, type: "job", status: accepted.status, params: {}, progress: {} });
      entry = jobs.get(id);
    }
    if (entry.final) { done && done(entry.last); return; }
    if (done) entry.done.push(done);
    try { // one read, in case the job changed before the stream was there
      const job = (await api("GET", "/jobs/" + encodeURIComponent(id))).data;
      onJob(job);
    } catch (e) { showAlert(e.message); }
  }

  // ---- status: per account and per stream
  function statusSoon() {
    clearTimeout(statusTimer);
    statusTimer = setTimeout(loadStatus, 300);
  }
  async function loadStatus() {
    let data;
    try { data = (await api("GET", "/status")).data; } catch (e) { showAlert(e.message); return; }
    $("status-generated").textContent = "As of " + when(data.generated_at);
    // One group per CallRail account (its companies and each of its streams), the accounts
    // listing first; a group stays open or closed as the user left it.
    const groups = new Map();
    for (const s of data.listings) {
      const key = s.account_id || "";
      if (key && s.account_name) accountNames.set(key, s.account_name);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(s);
    }
    $("status-groups").replaceChildren(...[...groups].map(([key, entries]) => statusGroup(key, entries)));
    const receivers = (data.receivers || []).map((r) => el("li", {},
      r.company_id + " (" + r.account_id + "): " + r.state +
      (r.receiving ? ", receiving calls" : ", not receiving") +
      (r.reconciled_at ? " · reconciled " + when(r.reconciled_at) : "")));
    $("receivers").replaceChildren(...(receivers.length ? receivers
      : [el("li", { class: "muted", text: "No company sends its calls here yet." })]));
  }
  // Each cell carries its column's name: on a phone a row becomes a card of labelled lines.
  function labelled(tr, table) {
    const heads = [...table.tHead.rows[0].cells].map((c) => c.textContent.trim());
    [...tr.cells].forEach((cell, i) => { if (heads[i]) cell.dataset.label = heads[i]; });
    return tr;
  }
  function budgetCell(b) {
    if (!b) return el("td", { class: "muted", text: "—" });
    const box = el("div", { class: "budget" });
    for (const [label, left, limit] of [["hour", b.hour_left, b.hour_limit], ["today", b.day_left, b.day_limit]]) {
      if (left === null || left === undefined) continue;
      const meter = el("meter", { min: 0, max: limit || left || 1, low: (limit || 1) * 0.1,
        high: (limit || 1) * 0.3, optimum: limit || 1, value: left,
        "aria-label": "requests left this " + label });
      box.append(el("span", { text: label + " " + left + (limit ? "/" + limit : "") }), meter);
    }
    if (b.throttled_until) box.append(el("span", { class: "error-text", text: "429 until " + when(b.throttled_until) }), el("span"));
    return el("td", {}, box);
  }
  const STATUS_HEADS = ["Listing", "State", "Last success", "Next run", "Records", "Budget left", "Last error", "Actions"];
  const openGroups = new Set([""]);
  const SEVERITY = ["error", "retrying", "syncing", "paused", "stale", "never", "fresh"];
  function statusGroup(key, entries) {
    const first = entries[0];
    const name = key ? (first.account_name || key) : "Accounts listing";
    const states = entries.map((s) => s.state);
    const worst = SEVERITY.find((st) => states.includes(st)) || states[0];
    const errors = entries.filter((s) => s.last_error).length;
    const table = el("table", { class: "stack status-table" },
      el("thead", {}, el("tr", {}, ...STATUS_HEADS.map((h) => el("th", { scope: "col", text: h })))));
    table.append(el("tbody", {}, ...entries.map((s) => statusRow(s, table))));
    const details = el("details", { class: "group", "data-account": key, open: openGroups.has(key) || (key && key === companies.account) },
      el("summary", {},
        el("strong", { text: name }),
        el("span", { class: "state state-" + worst, text: " " + worst }),
        el("span", { class: "muted", text: " · " + entries.length + (entries.length === 1 ? " listing" : " listings and streams") +
          (errors ? " · " + errors + " with an error" : "") })),
      el("div", { class: "scroll" }, table));
    details.addEventListener("toggle", () => { if (details.open) openGroups.add(key); else openGroups.delete(key); });
    return details;
  }
  function statusRow(s, table) {
    const name = s.kind === "accounts" ? "Accounts" : s.kind.replace(/_/g, " ");
    const err = s.last_error;
    const errCell = err ? el("td", {},
      el("div", { class: "error-text", text: err.message }),
      err.remedy ? el("div", { class: "remedy", text: err.remedy }) : null)
      : el("td", { class: "muted", text: "—" });
    const actions = el("div", { class: "actions" });
    const kind = s.kind;
    const full = s.account_id ? (s.account_name || s.account_id) + " " + name : name;
    actions.append(el("button", { type: "button", text: "Sync now", disabled: s.paused,
      "aria-label": "Sync " + full + " now",
      onclick: () => syncNow(kind, s.account_id) }));
    if (s.account_id && kind === "companies") { // the account's schedule: all its syncs
      actions.append(el("button", { type: "button", text: s.paused ? "Resume syncs" : "Pause syncs",
        "aria-label": (s.paused ? "Resume the syncs of " : "Pause the syncs of ") + (s.account_name || s.account_id),
        onclick: () => setPaused(s.account_id, !s.paused) }));
    }
    const records = s.counts && (s.counts.records ?? s.counts.total);
    return labelled(el("tr", { "data-kind": kind, "data-account": s.account_id || "" },
      el("th", { scope: "row", text: name }),
      el("td", {}, el("span", { class: "state state-" + s.state, text: s.state }),
        s.job ? el("div", { class: "muted", text: "job " + s.job.status }) : null,
        s.backfill ? el("div", { class: "muted", text: backfillText(s.backfill) }) : null),
      el("td", { text: when(s.last_success_at) }),
      el("td", { text: when(s.next_scheduled_at) }),
      el("td", { class: "num", text: records ?? "—" }),
      budgetCell(s.budget), errCell, el("td", {}, actions)), table);
  }
  function backfillText(b) {
    const parts = [];
    if (b.windows_total) parts.push("backfill " + (b.windows_done || 0) + "/" + b.windows_total + " windows");
    if (b.oldest_reached) parts.push("back to " + when(b.oldest_reached));
    if (b.estimated_finish) parts.push("done by " + when(b.estimated_finish));
    return parts.join(" · ");
  }
  async function syncNow(kind, account) {
    const body = account ? { account_id: account, kind } : { kind };
    try {
      const answer = await api("POST", "/sync", body);
      follow(answer.data, () => { if (kind === "accounts") loadAccounts(); else if (account === companies.account) loadCompanies(); });
      statusSoon();
    } catch (e) { showAlert(e.message); }
  }
  async function setPaused(account, paused) {
    try {
      await api("PUT", "/schedule", { account_id: account, paused });
      showAlert("");
      loadStatus();
    } catch (e) { showAlert(e.message); }
  }

  // ---- accounts
  async function loadAccounts(refresh) {
    const note = $("accounts-note");
    let answer;
    try {
      answer = await api("GET", "/accounts" + query({ per_page: 100, sort: "name", refresh: refresh ? "true" : "" }));
    } catch (e) {
      note.textContent = "";
      showAlert(e.message);
      return;
    }
    if (answer.status === 202) {
      note.textContent = "Syncing the accounts from CallRail…";
      follow(answer.data, (job) => { if (job.status === "succeeded") loadAccounts(); else note.textContent = ""; });
      return;
    }
    const d = answer.data;
    for (const a of d.accounts) accountNames.set(a.id, a.name);
    note.textContent = d.total_records + " accounts · synced " + when(d.snapshot.synced_at) + (d.snapshot.stale ? " (stale, refreshing)" : "");
    const rows = d.accounts.map((a) => el("tr", {},
      el("th", { scope: "row", text: a.name }),
      el("td", { text: a.id }),
      el("td", { class: "num", text: a.companies_count ?? "—" }),
      el("td", {}, el("button", { type: "button", text: "Companies", "aria-label": "Companies of " + a.name,
        onclick: () => openAccount(a.id, a.name) }))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No account." })));
    $("accounts-table").tBodies[0].replaceChildren(...rows);
  }
  function openAccount(id, name) {
    Object.assign(companies, { account: id, name, page: 1, search: "" });
    openGroups.add(id);
    const group = document.querySelector('details.group[data-account="' + CSS.escape(id) + '"]');
    if (group) group.open = true;
    $("company-search").value = "";
    $("companies").hidden = false;
    $("companies-title").textContent = "Companies of " + name;
    loadCompanies();
    loadChart();
    loadCalls();
    $("companies-title").scrollIntoView({ block: "nearest" });
  }

  // ---- companies: search, sort, paging, disabled shown or not
  function companyHead() {
    const row = $("companies-table").tHead.rows[0];
    row.replaceChildren(...COMPANY_COLUMNS.map(([key, label, sortable]) => {
      const th = el("th", { scope: "col" });
      if (!sortable) { th.append(el("span", { class: "sr-only", text: "Webhooks" })); return th; }
      const dir = companies.sort === key ? "ascending" : companies.sort === "-" + key ? "descending" : null;
      if (dir) th.setAttribute("aria-sort", dir);
      th.append(el("button", { type: "button", class: "sort", "data-sort": key, text: label,
        onclick: () => { companies.sort = companies.sort === key ? "-" + key : key; companies.page = 1; loadCompanies(); } }));
      return th;
    }));
  }
  async function loadCompanies(refresh) {
    companyHead();
    const note = $("companies-note");
    const q = query({ account_id: companies.account, page: companies.page, per_page: companies.perPage,
      sort: companies.sort, search: companies.search, disabled: companies.disabled ? "true" : "",
      refresh: refresh ? "true" : "" });
    let answer;
    try { answer = await api("GET", "/companies" + q); } catch (e) { note.textContent = e.message; showAlert(e.message); return; }
    if (answer.status === 202) {
      note.textContent = "Syncing the companies from CallRail…";
      follow(answer.data, (job) => {
        if (job.status === "succeeded") loadCompanies();
        else note.textContent = job.error ? job.error.message : "The sync did not finish.";
      });
      return;
    }
    showAlert("");
    const d = answer.data;
    companies.totalPages = Math.max(1, d.total_pages);
    note.textContent = d.total_records + " companies · synced " + when(d.snapshot.synced_at) +
      (d.snapshot.stale ? " (stale)" : "") + (d.snapshot.refresh_job_id ? " · refreshing" : "");
    const refreshing = d.snapshot.refresh_job_id;
    if (refreshing && !(jobs.get(refreshing) || {}).final) {
      follow({ job_id: refreshing, status: "queued" }, () => loadCompanies());
    }
    const rows = d.companies.map((c) => labelled(el("tr", { "data-company": c.id },
      el("th", { scope: "row", text: c.name }),
      el("td", { text: c.id }),
      el("td", { text: c.status }),
      el("td", { text: c.time_zone || "—" }),
      el("td", { text: when(c.created_at) }),
      el("td", { text: when(c.disabled_at) }),
      el("td", {}, el("button", { type: "button", text: "Webhooks", "aria-label": "Webhooks of " + c.name,
        onclick: () => openWebhooks(c) }))), $("companies-table")));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No company matches." })));
    $("companies-table").tBodies[0].replaceChildren(...rows);
    $("companies-page").textContent = "Page " + d.page + " of " + companies.totalPages;
    $("companies-prev").disabled = d.page <= 1;
    $("companies-next").disabled = d.page >= companies.totalPages;
  }

  // ---- webhooks of a company
  function openWebhooks(company) {
    webhookCompany = { account_id: companies.account, company_id: company.id, name: company.name };
    $("webhooks").hidden = false;
    $("webhooks-title").textContent = "Webhooks of " + company.name;
    $("webhooks-list").replaceChildren();
    listWebhooks();
    $("webhooks-title").scrollIntoView({ block: "nearest" });
  }
  async function listWebhooks() {
    const target = webhookCompany;
    const note = $("webhooks-note");
    note.textContent = "Asking CallRail…";
    try {
      const answer = await api("GET", "/companies/webhook" + query({ account_id: target.account_id, company_id: target.company_id }));
      follow(answer.data, (job) => {
        if (webhookCompany !== target) return;
        if (job.status !== "succeeded") { note.textContent = job.error ? job.error.message : job.status; return; }
        const hooks = (job.result && job.result.webhooks) || [];
        note.textContent = hooks.length ? "" : "This company has no webhook.";
        $("webhooks-list").replaceChildren(...hooks.map(webhookItem));
      });
    } catch (e) { note.textContent = e.message; }
  }
  function webhookItem(h) {
    const next = h.status === "enabled" ? "disabled" : "enabled";
    return el("li", { "data-webhook": h.id },
      el("div", { text: h.url }),
      el("div", { class: "muted", text: [h.status,
        (h.events || []).join(", ")].filter(Boolean).join(" · ") }),
      h.note ? el("div", { class: "remedy", text: h.note }) : null,
      el("button", { type: "button", text: next === "enabled" ? "Enable" : "Disable",
        "aria-label": (next === "enabled" ? "Enable " : "Disable ") + h.url,
        onclick: () => changeWebhook(h, next) }));
  }
  async function changeWebhook(h, status) {
    await writeWebhook("PUT", { ...pick(webhookCompany), webhook_id: h.id, status });
  }
  function pick(c) { return { account_id: c.account_id, company_id: c.company_id }; }
  async function writeWebhook(method, body) {
    const note = $("webhooks-note");
    try {
      const answer = await api(method, "/companies/webhook", body);
      note.textContent = "Working…";
      follow(answer.data, (job) => {
        if (job.status === "succeeded") {
          note.textContent = (job.result && job.result.note) || (method === "POST" ? "Webhook created." : "Webhook changed.");
          listWebhooks();
        } else {
          note.textContent = job.error ? job.error.message : job.status;
        }
      });
    } catch (e) { note.textContent = e.message; }
  }

  // ---- calls as they arrive, and the summary chart
  function callItem(call) {
    const f = call.call || {};
    const who = f.customer_name || f.customer_phone_number || f.caller_number || "unknown caller";
    const answered = f.answered === true ? "answered" : f.answered === false ? "missed" : null;
    return el("li", { "data-call": call.id || "" },
      el("strong", { text: call.event || "call" }),
      el("span", { text: who }),
      el("span", { class: "muted", text: [f.company_name || call.company_id, f.source_name || f.source, answered,
        f.duration ? f.duration + " s" : null].filter(Boolean).join(" · ") }),
      el("span", { class: "muted", text: when(call.start_time || call.received_at) }));
  }
  function onCall(kind, call) {
    const list = $("calls");
    if (call.id && list.querySelector('[data-call="' + CSS.escape(call.id) + '"]')) return;
    list.prepend(callItem(call));
    while (list.children.length > 50) list.lastChild.remove();
    if (companies.account && (!call.account_id || call.account_id === companies.account)) chartSoon();
  }
  // The account's latest call events, then the stream adds each new one on top.
  async function loadCalls() {
    const target = companies.account;
    try {
      const answer = await api("GET", "/calls" + query({ account_id: target, limit: 20 }));
      if (companies.account !== target) return;
      const list = $("calls");
      const live = [...list.children];
      const seen = new Set(live.map((li) => li.dataset.call));
      list.replaceChildren(...live, ...answer.data.calls.filter((c) => !seen.has(c.id)).map(callItem));
    } catch (e) { showAlert(e.message); }
  }
  let chartTimer = null;
  function chartSoon() { clearTimeout(chartTimer); chartTimer = setTimeout(loadChart, 2000); }
  async function loadChart() {
    if (!companies.account) return;
    const note = $("chart-note");
    $("chart").hidden = false;
    try {
      const day = await api("GET", "/records/calls/summary" + query({ account_id: companies.account, group_by: "day" }));
      const source = await api("GET", "/records/calls/summary" + query({ account_id: companies.account, group_by: "source" }));
      const t = day.data.total || {};
      note.textContent = (t.calls ?? 0) + " calls · " + (t.answered ?? 0) + " answered · " + (t.missed ?? 0) + " missed (from our records, no CallRail request)";
      bars($("chart-day"), everyDay(day.data.groups || []), (g) => String(g.key).slice(5, 10));
      bars($("chart-source"), (source.data.groups || []).slice(0, 12), (g) => String(g.key));
    } catch (e) {
      note.textContent = e.status === 404 ? "This service does not summarize calls yet." : e.message;
    }
  }
  // The last 30 days, each one (a day without calls is a zero, not a gap).
  function everyDay(groups) {
    const byKey = new Map(groups.map((g) => [String(g.key), g]));
    const days = [];
    for (let i = 29; i >= 0; i--) {
      const key = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
      days.push(byKey.get(key) || { key, calls: 0 });
      byKey.delete(key);
    }
    return [...byKey.values(), ...days].sort((a, b) => String(a.key).localeCompare(String(b.key)));
  }
  function bars(box, groups, label) {
    if (!groups.some((g) => g.calls)) { box.replaceChildren(el("p", { class: "muted", text: "No calls in this period." })); return; }
    const NS = "http://www.w3.org/2000/svg";
    const w = 600, h = 160, pad = 18;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("class", "bars");
    svg.setAttribute("role", "img");
    const peak = Math.max(1, ...groups.map((g) => g.calls || 0));
    const step = groups.length ? w / groups.length : w;
    svg.setAttribute("aria-label", groups.map((g) => label(g) + ": " + (g.calls || 0)).join(", ") || "no calls");
    groups.forEach((g, i) => {
      const bh = ((g.calls || 0) / peak) * (h - 2 * pad);
      const r = document.createElementNS(NS, "rect");
      const bw = Math.max(1, Math.min(step * 0.8, 48));
      r.setAttribute("x", String(i * step + (step - bw) / 2));
      r.setAttribute("y", String(h - pad - bh));
      r.setAttribute("width", String(bw));
      r.setAttribute("height", String(bh));
      const title = document.createElementNS(NS, "title");
      title.textContent = label(g) + ": " + (g.calls || 0) + " calls";
      r.append(title);
      svg.append(r);
      if (groups.length <= 12 || i % Math.ceil(groups.length / 8) === 0) {
        const t = document.createElementNS(NS, "text");
        t.setAttribute("x", String(i * step + step / 2));
        t.setAttribute("text-anchor", "middle");
        t.setAttribute("y", String(h - 4));
        t.textContent = label(g).slice(0, 12);
        svg.append(t);
      }
    });
    box.replaceChildren(svg);
  }

  // ---- wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      signIn(value);
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("companies-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      companies.search = $("company-search").value.trim();
      companies.perPage = Number($("company-per-page").value);
      companies.disabled = $("company-disabled").checked;
      companies.page = 1;
      loadCompanies();
    });
    $("company-disabled").addEventListener("change", () => { companies.disabled = $("company-disabled").checked; companies.page = 1; loadCompanies(); });
    $("company-per-page").addEventListener("change", () => { companies.perPage = Number($("company-per-page").value); companies.page = 1; loadCompanies(); });
    $("companies-refresh").addEventListener("click", () => loadCompanies(true));
    $("companies-prev").addEventListener("click", () => { companies.page = Math.max(1, companies.page - 1); loadCompanies(); });
    $("companies-next").addEventListener("click", () => { companies.page = Math.min(companies.totalPages, companies.page + 1); loadCompanies(); });
    $("webhook-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const url = $("webhook-url").value.trim();
      const body = pick(webhookCompany);
      if (url) body.webhook_url = url; // empty: the service's own receiver
      writeWebhook("POST", body);
    });
    $("webhooks-reload").addEventListener("click", listWebhooks);
    window.addEventListener("online", () => { if (token && !stream) connect(); });
    const found = takeToken();
    if (found) signIn(found); else $("sign-in").hidden = false;
  });
})();
