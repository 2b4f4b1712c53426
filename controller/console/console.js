"use strict";
// The paas console. It calls the same /v1 API as the CLI; its session is a cookie the
// script cannot read, and every change carries the session's CSRF token. Tenant text
// (names, env, log lines) is only ever set as text, never parsed as HTML.

const session = { user: null, csrf: null };
// What the page that is shown keeps running (a log stream, a refresh timer), stopped
// when another page is shown.
let leaving = [];
// Counts the pages asked for: a page still loading when another is asked for draws
// nothing (`stale()`), and its timers stop.
let navigation = 0;
const current = () => {
  const mine = navigation;
  return () => mine !== navigation;
};

class ApiError extends Error {
  constructor(status, body) {
    const what = body && body.message ? body.message : `the API answered ${status}`;
    super(body && body.hint ? `${what} (${body.hint})` : what);
    this.status = status;
  }
}

// el("td", { class: "x" }, "text", child): an element with attributes and children.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Stops what the page shown now keeps running; called before another is drawn.
function leave() {
  navigation++;
  for (const stop of leaving) stop();
  leaving = [];
}

function show(...nodes) {
  document.getElementById("main").replaceChildren(...nodes);
  document.documentElement.dataset.drawn = "yes";
}

function say(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => (status.textContent = ""), 6000);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// fetch, trying a read again when the network failed under it (a browser on the
// platform's own host sees a "network change" each time an instance's link comes or
// goes). A change is never sent twice.
async function fetchAgain(path, options) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(path, { credentials: "same-origin", ...options });
    } catch (e) {
      if ((options.method || "GET") !== "GET" || attempt >= 4 || e.name === "AbortError") throw e;
      await pause(300 * attempt);
    }
  }
}

// The access token lasts an hour; then the refresh cookie is traded (once) for a new
// pair. Requests that find the session expired at the same time share one refresh.
let refreshing = null;
function refreshSession() {
  refreshing = refreshing || (async () => {
    try {
      const r = await fetchAgain("/console/session/refresh", { method: "POST" });
      if (!r.ok) return false;
      signedIn(await r.json());
      return true;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function api(method, path, body) {
  const send = () => {
    const headers = {};
    if (method !== "GET") headers["X-Csrf-Token"] = session.csrf || "";
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetchAgain(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  const signingIn = method === "POST" && path === "/console/session";
  let r = await send();
  if (r.status === 401 && !signingIn && (await refreshSession())) r = await send();
  if (r.status === 401 && path !== "/console/session") {
    session.user = null;
    signInPage("Your session has ended: sign in again.");
    throw new ApiError(401, { message: "signed out" });
  }
  if (!r.ok) {
    let body = null;
    try {
      body = await r.json();
    } catch (_) {
      // Not the API's error envelope: the status says it.
    }
    throw new ApiError(r.status, body);
  }
  return r;
}

const getJson = async (path) => (await api("GET", path)).json();

// The JSON values of an NDJSON answer, one by one, as they come.
async function* ndjson(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
}

// A change whose answer may be a stream of deploy events (scale, start, restart,
// rollback): done when the stream says so, an error if it says failed.
async function change(method, path, body) {
  const r = await api(method, path, body);
  if (!(r.headers.get("content-type") || "").includes("ndjson")) return;
  for await (const ev of ndjson(r)) {
    if (ev.event === "phase") say(`${ev.phase}…`);
    if (ev.event === "failed") throw new ApiError(422, ev.error);
    if (ev.event === "paused") say(ev.message);
  }
}

// Asks before a change (a dialog, reachable by keyboard); resolves true to go on.
function confirmed(question) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = question;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// Runs `work` after asking, says how it went, and draws the page again.
async function act(question, work, done) {
  if (question && !(await confirmed(question))) return;
  try {
    await work();
    say(done);
  } catch (e) {
    say(`Failed: ${e.message}`);
  }
  route();
}

const mib = (bytes) => Math.round(bytes / 1048576);
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");

// A table with a header row: `columns` are [heading, (row) => cell text or node].
function table(id, columns, rows, empty) {
  const body = el("tbody", {}, ...rows.map((r) => el("tr", {}, ...columns.map(([, cell]) => el("td", {}, cell(r))))));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length }, empty)));
  return el("div", { class: "scroll" }, el("table", { id },
    el("thead", {}, el("tr", {}, ...columns.map(([h]) => el("th", { scope: "col" }, h)))),
    body));
}

const section = (id, title, ...children) =>
  el("section", { "aria-labelledby": `h-${id}` }, el("h2", { id: `h-${id}` }, title), ...children);

// --- Sign-in -----------------------------------------------------------------------

function signInPage(message) {
  leave();
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  document.getElementById("pages").hidden = true;
  const error = el("p", { id: "sign-in-error", class: message ? "error" : null }, message || "");
  const user = el("input", { id: "user", name: "user", autocomplete: "username", required: true });
  const password = el("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const form = el(
    "form",
    { class: "signin", "aria-labelledby": "sign-in-title" },
    el("h1", { id: "sign-in-title" }, "Sign in to paas"),
    el("label", {}, "User", user),
    el("label", {}, "Password", password),
    el("button", { type: "submit", class: "primary", id: "sign-in" }, "Sign in"),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/console/session", { user: user.value, password: password.value });
      signedIn(await r.json());
      if (!location.hash || location.hash === "#/") location.hash = "#/apps";
      route();
    } catch (err) {
      error.className = "error";
      error.textContent = err.message;
    }
  });
  show(form);
  user.focus();
}

function signedIn(who) {
  session.user = who.name;
  session.csrf = who.csrf;
  document.getElementById("who").textContent = `${who.name}${who.admin ? " (admin)" : ""}`;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("pages").hidden = false;
  // Cells are the platform's own: only an admin may list them.
  document.getElementById("cells-link").hidden = !who.admin;
}

async function signOut() {
  try {
    await api("DELETE", "/console/session");
  } catch (e) {
    // 401: signed out already (and the sign-in page is shown).
    if (e.status !== 401) say(`Not signed out: ${e.message}`);
    return;
  }
  session.user = session.csrf = null;
  signInPage("Signed out.");
}

// --- Apps --------------------------------------------------------------------------

const appColumns = [
  ["name", "Name", (a) => a.name],
  ["space", "Space", (a) => a.space],
  ["state", "State", (a) => a.state],
  ["instances", "Instances", (a) => a.running_instances],
  ["memory", "Memory", (a) => a.settings.memory],
  ["routes", "Routes", (a) => a.routes.join(" ")],
  ["deployed", "Last deploy", (a) => a.last_deploy_ms || 0],
];

async function appsPage() {
  const stale = current();
  const answer = await api("GET", "/v1/apps?per_page=1000");
  const total = Number(answer.headers.get("X-Total-Count") || 0);
  const apps = await answer.json();
  if (stale()) return;
  let sortKey = "name";
  let ascending = true;
  const filter = el("input", { id: "filter", type: "search", placeholder: "name, space, state or route" });
  const body = el("tbody");
  const head = el("tr");
  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const [, , key] = appColumns.find(([k]) => k === sortKey);
    const rows = apps
      .filter((a) => !needle || [a.name, a.space, a.state, ...a.routes].some((t) => t.toLowerCase().includes(needle)))
      .sort((x, y) => {
        const [a, b] = [key(x), key(y)];
        const order = typeof a === "number" ? a - b : String(a).localeCompare(String(b));
        return ascending ? order : -order;
      });
    head.replaceChildren(
      ...appColumns.map(([k, label]) =>
        el(
          "th",
          { scope: "col", "aria-sort": k === sortKey ? (ascending ? "ascending" : "descending") : "none" },
          el("button", { type: "button", onclick: () => sortBy(k) }, label),
        ),
      ),
    );
    body.replaceChildren(
      ...rows.map((a) =>
        el(
          "tr",
          { "data-app": a.name },
          el("td", {}, el("a", { href: `#/apps/${encodeURIComponent(a.name)}` }, a.name)),
          el("td", {}, a.space),
          el("td", {}, a.state),
          el("td", { class: "instances" }, `${a.running_instances} of ${a.settings.instances}`),
          el("td", {}, `${a.settings.memory} MiB`),
          el("td", {}, a.routes.join(", ")),
          el("td", {}, a.last_deploy_ms ? when(a.last_deploy_ms) : "never"),
        ),
      ),
    );
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: appColumns.length }, apps.length ? "No app matches." : "No apps yet: push one with `paas push NAME`.")));
  };
  const sortBy = (k) => {
    ascending = k === sortKey ? !ascending : true;
    sortKey = k;
    draw();
  };
  filter.addEventListener("input", draw);
  draw();
  show(
    el("h1", {}, "Apps"),
    el("label", {}, "Filter", filter),
    el("div", { class: "scroll" }, el("table", { id: "apps" }, el("caption", { class: "muted" }, total > apps.length ? `the first ${apps.length} of ${total} apps (the CLI lists them all)` : `${apps.length} apps`), el("thead", {}, head), body)),
  );
  // benches/console.sh times the page up to here.
  performance.mark("paas-apps-drawn");
}

// --- One app -----------------------------------------------------------------------

async function appPage(name) {
  const stale = current();
  const path = `/v1/apps/${encodeURIComponent(name)}`;
  const app = await getJson(path);
  const [revisions, events] = await Promise.all([
    getJson(`${path}/revisions`).catch(() => []),
    getJson(`${path}/events`).catch(() => []),
  ]);
  if (stale()) return;
  const instances = el("tbody");
  const drawInstances = (a) => {
    const limits = Object.fromEntries((a.processes || []).map((p) => [p.process, p.memory]));
    instances.replaceChildren(
      ...a.instances.map((i) => {
        const limit = limits[i.process] || a.settings.memory;
        return el(
          "tr",
          { "data-instance": i.index },
          el("td", {}, `${i.process} #${i.index}`),
          el("td", { class: "state" }, i.state),
          el("td", {}, `${i.cpu_percent.toFixed(1)} %`),
          el(
            "td",
            {},
            el("meter", { min: 0, max: limit, value: mib(i.memory_bytes), "aria-label": `memory of ${i.process} #${i.index}` }),
            ` ${mib(i.memory_bytes)} of ${limit} MiB`,
          ),
          el("td", {}, `${mib(i.disk_bytes)} MiB${a.settings.disk ? ` of ${a.settings.disk} MiB` : ""}`),
          el("td", { class: "muted" }, when(i.since_ms)),
        );
      }),
    );
    if (!a.instances.length) instances.append(el("tr", {}, el("td", { colspan: 6 }, "No instances.")));
    document.getElementById("running").textContent = `${a.running_instances} of ${a.settings.instances} running · ${a.state}`;
  };

  const count = el("input", { id: "scale-instances", type: "number", min: 0, max: 1000, value: app.settings.instances });
  const memory = el("input", { id: "scale-memory", type: "number", min: 1, value: app.settings.memory });
  const scaleForm = el(
    "form",
    { "aria-label": "Scale" },
    el("label", {}, "Instances", count),
    el("label", {}, "Memory (MiB)", memory),
    el("button", { type: "submit", id: "scale" }, "Scale"),
  );
  scaleForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { instances: Number(count.value), memory: Number(memory.value) };
    act(
      `Scale ${name} to ${body.instances} instances of ${body.memory} MiB?`,
      () => change("POST", `${path}/scale`, body),
      `${name} scaled.`,
    );
  });

  const actions = el(
    "div",
    { class: "actions" },
    el("button", { type: "button", id: "start", onclick: () => act(`Start ${name}?`, () => change("POST", `${path}/start`), `${name} started.`) }, "Start"),
    el("button", { type: "button", id: "restart", onclick: () => act(`Restart every instance of ${name}?`, () => change("POST", `${path}/restart`), `${name} restarted.`) }, "Restart"),
    el("button", { type: "button", id: "stop", onclick: () => act(`Stop ${name}? It stops answering.`, () => change("POST", `${path}/stop`), `${name} stopped.`) }, "Stop"),
    el(
      "button",
      {
        type: "button",
        id: "delete",
        class: "danger",
        onclick: () =>
          act(`Delete ${name} and its instances? This cannot be undone.`, async () => {
            await api("DELETE", path);
            location.hash = "#/apps";
          }, `${name} deleted.`),
      },
      "Delete",
    ),
  );

  show(
    el("p", {}, el("a", { href: "#/apps" }, "← Apps")),
    el("h1", {}, name),
    el("p", { id: "running" }),
    el("p", { class: "muted" }, `Space ${app.space} · ${app.detected_buildpack || "no buildpack yet"} · `, app.url ? el("a", { href: app.url }, app.url) : "no route",
      " · ", el("a", { href: `#/apps/${encodeURIComponent(name)}/staging`, id: "staging-link" }, "staging log")),
    actions,
    section("instances", "Instances",
      scaleForm,
      el("div", { class: "scroll" }, el("table", { id: "instances" },
        el("thead", {}, el("tr", {}, ...["Instance", "State", "CPU", "Memory", "Disk", "Since"].map((h) => el("th", { scope: "col" }, h)))),
        instances))),
    usageSection(path),
    trafficSection(path),
    section("routes", "Routes",
      app.routes.length ? el("ul", {}, ...app.routes.map((r) => el("li", {}, r))) : el("p", {}, "No routes.")),
    envSection(path),
    servicesSection(name, app.space),
    tasksSection(name, path),
    revisionsSection(name, path, revisions),
    logsSection(path, "Logs (live)"),
    section("events", "Events",
      el("div", { class: "scroll" }, el("table", { id: "events" },
        el("thead", {}, el("tr", {}, ...["When", "What", "Instance", "Description"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, ...events.slice(-50).reverse().map((e) =>
          el("tr", {}, el("td", {}, when(e.timestamp_ms)), el("td", {}, e.kind), el("td", {}, e.instance ?? ""), el("td", {}, e.description))))))),
  );
  drawInstances(app);
  // Live figures: the app is read again every few seconds while its page is shown.
  const timer = setInterval(async () => {
    try {
      const fresh = await getJson(path);
      if (!stale()) drawInstances(fresh);
    } catch (_) {
      // Shown again at the next tick, or the page changes.
    }
  }, 3000);
  leaving.push(() => clearInterval(timer));
}

// A small bar chart of one figure per minute over the last hour, as SVG; `label`
// says what it shows in words, for those who do not see it.
function chart(id, minutes, figure, label, unit, note) {
  const svgNs = "http://www.w3.org/2000/svg";
  const [width, height] = [600, 80];
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("id", id);
  svg.setAttribute("role", "img");
  const now = Math.floor(Date.now() / 60000);
  const values = new Array(60).fill(0);
  for (const m of minutes) {
    const ago = now - Math.floor(m.start_ms / 60000);
    if (ago >= 0 && ago < 60) values[59 - ago] = figure(m);
  }
  const top = Math.max(...values, 1);
  values.forEach((v, i) => {
    const h = Math.round((v / top) * (height - 4));
    const bar = document.createElementNS(svgNs, "rect");
    bar.setAttribute("x", String(i * (width / 60) + 1));
    bar.setAttribute("y", String(height - h));
    bar.setAttribute("width", String(width / 60 - 2));
    bar.setAttribute("height", String(h));
    svg.append(bar);
  });
  const last = values[59];
  const peak = Math.max(...values);
  svg.setAttribute("aria-label", `${label} per minute over the last hour: this minute ${last}${unit}, highest ${peak}${unit}`);
  return el("figure", {}, svg, el("figcaption", {}, `${label}: this minute ${last}${unit}, highest in the hour ${peak}${unit}${note || ""}`));
}

// CPU and memory of all the app's instances together, by minute (read every 15 s by
// paasd, so a chart goes on across restarts and deploys).
function usageSection(path) {
  const body = el("div", { id: "usage" });
  const draw = async () => {
    try {
      const minutes = await getJson(`${path}/usage`);
      const latest = minutes[minutes.length - 1];
      const given = latest && latest.memory_limit_bytes ? ` (${mib(latest.memory_limit_bytes)} MiB given to ${latest.instances} running)` : "";
      body.replaceChildren(
        chart("chart-cpu", minutes, (m) => m.cpu_percent, "CPU, all instances", " % of a core"),
        chart("chart-memory", minutes, (m) => mib(m.memory_bytes), "Memory, all instances", " MiB", given),
      );
    } catch (e) {
      body.replaceChildren(el("p", {}, e.message));
    }
  };
  draw();
  const timer = setInterval(draw, 15000);
  leaving.push(() => clearInterval(timer));
  return section("usage", "CPU and memory (last hour)", body);
}

// The services bound to the app (their credentials are never listed).
function servicesSection(name, space) {
  const body = el("div", {}, el("p", {}, "Loading…"));
  getJson("/v1/services?per_page=1000").then(
    (all) => {
      const bound = all.filter((s) => s.space === space && s.bound_apps.includes(name));
      body.replaceChildren(table("app-services", [
        ["Service", (s) => s.name],
        ["Kind", (s) => s.label],
        ["Tags", (s) => s.tags.join(", ")],
      ], bound, "No services bound: `paas bind-service APP SERVICE` binds one."));
    },
    (e) => body.replaceChildren(el("p", {}, e.message)),
  );
  return section("services", "Services", body);
}

// The app's tasks (`paas run-task`), newest first; a running one can be terminated.
function tasksSection(name, path) {
  const body = el("div", {}, el("p", {}, "Loading…"));
  getJson(`${path}/tasks`).then(
    (tasks) => body.replaceChildren(table("tasks", [
      ["Task", (t) => `#${t.sequence} ${t.name}`],
      ["Command", (t) => t.command],
      ["State", (t) => (t.failure ? `${t.state}: ${t.failure}` : t.state)],
      ["Started", (t) => when(t.started_ms)],
      ["Ended", (t) => when(t.ended_ms)],
      ["", (t) => t.state !== "running" ? "" : el("button", {
        type: "button",
        "aria-label": `Terminate task ${t.sequence}`,
        onclick: () => act(`Terminate task #${t.sequence} of ${name}?`, () => api("POST", `${path}/tasks/${t.sequence}/terminate`), `Task #${t.sequence} terminated.`),
      }, "Terminate")],
    ], tasks.slice().reverse(), "No tasks: `paas run-task APP COMMAND` runs one.")),
    (e) => body.replaceChildren(el("p", {}, e.message)),
  );
  return section("tasks", "Tasks", body);
}

function trafficSection(path) {
  const body = el("div", { id: "traffic" });
  const draw = async () => {
    try {
      const minutes = await getJson(`${path}/traffic`);
      body.replaceChildren(
        chart("chart-requests", minutes, (m) => m.requests, "Requests", ""),
        chart("chart-errors", minutes, (m) => m.errors, "Server errors (5xx)", ""),
        chart("chart-p95", minutes, (m) => Math.round(m.p95_ms), "95th percentile response time", " ms"),
      );
    } catch (e) {
      body.replaceChildren(el("p", {}, e.message));
    }
  };
  draw();
  const timer = setInterval(draw, 10000);
  leaving.push(() => clearInterval(timer));
  return section("traffic", "Traffic (last hour, through this host's router)", body);
}

function envSection(path) {
  const part = section("env", "Environment");
  const list = el("tbody");
  let revealed = false;
  const button = el("button", { type: "button", id: "reveal-env" }, "Reveal values");
  const draw = async () => {
    let env = {};
    try {
      env = await getJson(`${path}/env`);
    } catch (e) {
      list.replaceChildren(el("tr", {}, el("td", { colspan: 2 }, e.message)));
      return;
    }
    list.replaceChildren(
      ...Object.entries(env).map(([k, v]) =>
        el("tr", {}, el("th", { scope: "row" }, k), el("td", { class: "secret" }, revealed ? v : "••••••••"))),
    );
    if (!Object.keys(env).length) list.append(el("tr", {}, el("td", { colspan: 2 }, "No variables set.")));
  };
  button.addEventListener("click", () => {
    revealed = !revealed;
    button.textContent = revealed ? "Hide values" : "Reveal values";
    draw();
  });
  part.append(button, el("div", { class: "scroll" }, el("table", { id: "env" }, list)));
  draw();
  return part;
}

function revisionsSection(name, path, revisions) {
  return section("revisions", "Revisions",
    el("div", { class: "scroll" }, el("table", { id: "revisions" },
      el("thead", {}, el("tr", {}, ...["Version", "Buildpack", "Changes", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...revisions.slice().reverse().map((r) =>
        el("tr", { "data-version": r.version },
          el("td", {}, `v${r.version}${r.current ? " (current)" : ""}`),
          el("td", {}, r.buildpack || ""),
          el("td", {}, Array.isArray(r.changes) ? r.changes.join(", ") : String(r.changes || "")),
          el("td", {}, r.current || !r.available ? "" : el("button", {
            type: "button",
            class: "rollback",
            "aria-label": `Roll back to version ${r.version}`,
            onclick: () => act(`Roll ${name} back to version ${r.version}?`, () => change("POST", `${path}/rollback`, { version: r.version }), `${name} rolled back to v${r.version}.`),
          }, "Roll back"))))))));
}

// The app's log, live. `only` fixes the source (the staging log page shows STG);
// otherwise the reader picks it.
function logsSection(path, title, only) {
  const view = el("div", { id: "logs", class: "logs", role: "log", "aria-live": "off", tabindex: 0, "aria-label": title });
  const choices = only ? [only] : ["all", "APP", "STG", "RTR", "API", "CELL"];
  const source = el("select", { id: "log-source" }, ...choices.map((s) => el("option", { value: s }, s === "all" ? "All sources" : s)));
  const lines = [];
  const matches = (l) => source.value === "all" || l.source.toUpperCase().startsWith(source.value);
  const line = (l) => el("div", { class: l.stream === "err" ? "err" : null }, `${new Date(l.timestamp_ms).toISOString()} [${l.source}] ${l.line}`);
  const redraw = () => view.replaceChildren(...lines.filter(matches).map(line));
  source.addEventListener("change", redraw);
  const stop = new AbortController();
  leaving.push(() => stop.abort());
  // The stream starts with the recent lines, then follows; if the connection breaks it
  // is opened again, and the view drawn again from what it replays.
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const r = await fetchAgain(`${path}/logs?follow=true`, { signal: stop.signal });
        // The session expired while the log was followed: refreshed, it goes on.
        if (r.status === 401 && (await refreshSession())) continue;
        if (!r.ok) throw new ApiError(r.status, null);
        lines.length = 0;
        view.replaceChildren();
        for await (const l of ndjson(r)) {
          lines.push(l);
          if (lines.length > 2000) lines.shift();
          if (matches(l)) {
            const atEnd = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
            view.append(line(l));
            while (view.childElementCount > 2000) view.firstElementChild.remove();
            if (atEnd) view.scrollTop = view.scrollHeight;
          }
        }
      } catch (e) {
        if (e.name === "AbortError") return;
        if (e instanceof ApiError) {
          view.append(el("div", {}, `(no logs: ${e.message})`));
          return;
        }
      }
      await pause(1000);
    }
  })();
  return section("logs", title, only ? null : el("label", {}, "Source", source), view);
}

// A push's staging output as it comes: the STG lines of the app's log.
async function stagingPage(name) {
  const stale = current();
  const path = `/v1/apps/${encodeURIComponent(name)}`;
  await getJson(path);
  if (stale()) return;
  show(
    el("p", {}, el("a", { href: `#/apps/${encodeURIComponent(name)}` }, `← ${name}`)),
    el("h1", {}, `Staging of ${name}`),
    el("p", { class: "muted" }, "The buildpacks' output of this app's recent stagings, then each new line as it comes: push from the CLI and watch it here."),
    logsSection(path, "Staging log (live)", "STG"),
  );
}

// --- The platform's pages ------------------------------------------------------------

async function routesPage() {
  const stale = current();
  const [routes, domains] = await Promise.all([getJson("/v1/routes?per_page=1000"), getJson("/v1/domains?per_page=1000")]);
  if (stale()) return;
  show(
    el("h1", {}, "Routes"),
    table("routes", [
      ["Route", (r) => `${r.host}${r.path}`],
      ["App", (r) => (r.app ? el("a", { href: `#/apps/${encodeURIComponent(r.app)}` }, r.app) : "not mapped")],
      ["Instances", (r) => String(r.backends.length)],
      ["Balance", (r) => r.balance],
      ["Route service", (r) => r.route_service_url || ""],
    ], routes, "No routes: `paas map-route APP DOMAIN --hostname HOST` makes one."),
    section("domains", "Domains", table("domains", [
      ["Domain", (d) => d.name],
      ["Shared", (d) => (d.space ? `private to ${d.space}` : "every space")],
      ["HTTPS", (d) => (d.has_certificate || d.default ? "certificate" : "none")],
      ["", (d) => (d.default ? "the platform's own" : "")],
    ], domains, "No domains.")),
  );
}

async function servicesPage() {
  const stale = current();
  const services = await getJson("/v1/services?per_page=1000");
  if (stale()) return;
  show(
    el("h1", {}, "Services"),
    table("services", [
      ["Service", (s) => s.name],
      ["Space", (s) => s.space],
      ["Kind", (s) => s.label],
      ["Tags", (s) => s.tags.join(", ")],
      ["Bound apps", (s) => s.bound_apps.join(", ")],
      ["Log drain", (s) => (s.syslog_drain_url ? "yes" : "")],
    ], services, "No services: `paas create-user-provided-service NAME -p '{...}'` makes one."),
  );
}

async function buildpacksPage() {
  const stale = current();
  const [buildpacks, stacks] = await Promise.all([getJson("/v1/buildpacks?per_page=1000"), getJson("/v1/stacks")]);
  if (stale()) return;
  show(
    el("h1", {}, "Buildpacks"),
    el("p", { class: "muted" }, "A push without `-b` tries the enabled ones in this order."),
    table("buildpacks", [
      ["Position", (b) => String(b.position)],
      ["Buildpack", (b) => b.name],
      ["Dialect", (b) => b.dialect],
      ["Enabled", (b) => (b.enabled ? "enabled" : "disabled")],
      ["Origin", (b) => (b.shipped ? "shipped" : "added")],
    ], buildpacks, "No buildpacks."),
    section("stacks", "Stacks", table("stacks", [
      ["Stack", (t) => t.name],
      ["Description", (t) => t.description],
      ["", (t) => (t.default ? "default" : "")],
    ], stacks, "No stacks.")),
  );
}

async function cellsPage() {
  const stale = current();
  const cells = await getJson("/v1/cells?per_page=1000");
  if (stale()) return;
  show(
    el("h1", {}, "Cells"),
    table("cells", [
      ["Cell", (c) => c.id],
      ["Address", (c) => c.address],
      ["Memory given", (c) => [
        el("meter", { min: 0, max: Math.max(1, mib(c.memory_bytes)), value: mib(c.memory_used_bytes), "aria-label": `memory given on ${c.id}` }),
        ` ${mib(c.memory_used_bytes)} of ${mib(c.memory_bytes)} MiB`,
      ]],
      ["Instances", (c) => String(c.instances)],
      ["Last seen", (c) => when(c.updated_ms)],
    ], cells, "No cell is up: instances have nowhere to run."),
  );
}

// --- Routing -----------------------------------------------------------------------

const pages = [
  [/^#\/apps\/([^/]+)\/staging$/, stagingPage],
  [/^#\/apps\/([^/]+)$/, appPage],
  [/^#\/routes$/, routesPage],
  [/^#\/services$/, servicesPage],
  [/^#\/buildpacks$/, buildpacksPage],
  [/^#\/cells$/, cellsPage],
];

async function route() {
  leave();
  if (!session.user) {
    try {
      signedIn(await (await api("GET", "/console/session")).json());
    } catch (_) {
      return signInPage();
    }
  }
  const hash = location.hash || "#/apps";
  for (const link of document.querySelectorAll("#pages a")) {
    const here = hash === link.getAttribute("href") || hash.startsWith(`${link.getAttribute("href")}/`);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    const [pattern, page] = pages.find(([p]) => p.test(hash)) || [null, appsPage];
    const found = pattern ? hash.match(pattern) : [];
    await page(...found.slice(1).map(decodeURIComponent));
    document.getElementById("main").focus({ preventScroll: true });
  } catch (e) {
    if (e.status !== 401) show(el("h1", {}, "Not shown"), el("p", { class: "error", id: "page-error" }, e.message), el("p", {}, el("a", { href: "#/apps" }, "Back to apps")));
  }
}

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", signOut);
route();
