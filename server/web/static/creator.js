// creator.js - the creator's page (/creator): who may operate my LIVE, what they did,
// and my own creator client (go LIVE / end LIVE) with a feed simulator to rehearse with.
import { Client, api, humanReason, newId } from "./livepilot.js";
import { RoomModel } from "./room.js";
import { $, announce, claims, fill, h, money, signInForm, storedToken, when } from "./ui.js";
import { simulatorPanel } from "./creator_sim.js";

const TOKEN_KEY = "livepilot.creator.token";
const GRANTABLE = ["bag", "promotion", "billboard", "moderation", "planning"];
const FAMILIES = ["access", "live", "bag", "promotion", "billboard", "moderation", "planning", "feed"];
const POLL_MS = 3000;
const main = $("#main");
const view = { token: null, me: null, client: null, model: null, inbox: [], audit: [],
               auditFilter: {}, requests: [], grants: [], grantsMissing: false };
window.lpCreator = view; // the browser tests read the page's state through this

const CONN_TEXT = { idle: "Not connected", connecting: "Connecting…", open: "Connected",
                    reconnecting: "Reconnecting…", closed: "Disconnected" };

function start() {
  view.token = storedToken(TOKEN_KEY);
  $("#signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    view.client?.stop();
    window.location.reload();
  });
  if (view.token) signedIn();
  else askToken();
}

function askToken() {
  fill(main, signInForm("signin", "Creator token", (token) => {
    sessionStorage.setItem(TOKEN_KEY, token);
    view.token = token;
    signedIn();
  }));
}

function signedIn() {
  const c = claims(view.token);
  if (!c || c.role !== "creator") {
    sessionStorage.removeItem(TOKEN_KEY);
    announce("This is not a creator token.", "error");
    askToken();
    return;
  }
  view.me = c.creator;
  $("#who").textContent = `creator ${view.me}`;
  $("#signout").hidden = false;
  layout();
  connect();
  refresh();
  setInterval(refresh, POLL_MS);
}

function section(id, title, ...body) {
  return h("section", { id, class: "card", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title), ...body);
}

function layout() {
  fill(main, h("div", { class: "grid" },
    section("live", "My LIVE", h("div", { id: "live-controls" }), h("div", { id: "room-view" })),
    section("simulator", "Feed simulator", simulatorPanel(view, command)),
    section("requests", "Pending requests", h("div", { id: "requests-list" })),
    section("grants", "Access in force", h("div", { id: "grants-list" })),
    section("inbox", "Notifications", h("div", { id: "inbox-list" })),
    section("audit", "Audit trail of agency actions", auditForm(), h("div", { id: "audit-list" }))));
  renderLive();
}

async function refresh() {
  await Promise.all([loadRequests(), loadGrants(), loadInbox(), loadAudit()]);
}

/** Re-render a list, keeping focus on the control (same data-key) that had it. */
function keep(slot, nodes) {
  const active = document.activeElement;
  const key = active && slot.contains(active) ? active.dataset.key : null;
  fill(slot, nodes);
  if (key) slot.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

// --- requests and grants ------------------------------------------------------------------

const KIND = { link: "link (no LIVE access)", link_and_access: "link + LIVE Manager access",
               access: "LIVE Manager access", extension: "link extension" };

async function loadRequests() {
  try {
    view.requests = (await api(view.token, "GET", "/api/requests?expired=0")).requests;
  } catch (e) {
    announce(`Cannot read requests: ${e.message}`, "error");
  }
  renderRequests();
}

function renderRequests() {
  const slot = $("#requests-list");
  if (!slot) return;
  if (view.requests.length === 0) {
    keep(slot, h("p", {}, "No request waiting."));
    return;
  }
  // Requests re-render on every poll: the boxes keep what was ticked in view.ticked.
  view.ticked ??= {};
  keep(slot, h("ul", { class: "plain", id: "requests" }, view.requests.map((r) => {
    const withAccess = r.kind === "access" || r.kind === "link_and_access";
    const ticked = (view.ticked[r.request_id] ??= new Set(GRANTABLE));
    const boxes = withAccess ? h("fieldset", { class: "scopes" },
      h("legend", {}, "Scopes to grant"),
      GRANTABLE.map((s) => {
        const id = `scope-${r.request_id}-${s}`;
        const box = h("input", { type: "checkbox", id, "data-key": id, checked: ticked.has(s), value: s });
        box.addEventListener("change", () => (box.checked ? ticked.add(s) : ticked.delete(s)));
        return h("span", { class: "check" }, box, h("label", { for: id }, s));
      })) : null;
    return h("li", { dataset: { request: r.request_id } },
      h("p", {}, h("strong", {}, r.agency), ` asks for ${KIND[r.kind]} (sent by ${r.sent_by}, `,
        `answer before ${when(r.expires_at)})`, r.ends_at ? ` · link until ${when(r.ends_at)}` : ""),
      boxes,
      h("button", { type: "button", class: "primary", "data-key": `accept-${r.request_id}`,
                    onclick: () => answer(r, "accept", withAccess ? [...ticked] : null) }, "Accept"),
      h("button", { type: "button", class: "danger", "data-key": `decline-${r.request_id}`,
                    onclick: () => answer(r, "decline") }, "Decline"));
  })));
}

async function answer(r, verb, scopes = null) {
  if (verb === "accept" && scopes !== null && scopes.length === 0) {
    announce("Choose at least one scope to grant, or decline.", "error");
    return;
  }
  try {
    const body = verb === "accept" && scopes !== null ? { scopes } : undefined;
    await api(view.token, "POST", `/api/requests/${encodeURIComponent(r.request_id)}/${verb}`, body);
    announce(verb === "accept" ? `Accepted ${r.agency}'s request.` : `Declined ${r.agency}'s request.`);
  } catch (e) {
    announce(`Not done: ${e.message}`, "error");
  }
  await refresh();
}

async function loadGrants() {
  try {
    view.grants = (await api(view.token, "GET", "/api/grants")).grants;
    view.grantsMissing = false;
  } catch (e) {
    view.grants = [];
    view.grantsMissing = e.status === 404; // a hub without GET /api/grants: an empty list
    if (!view.grantsMissing) announce(`Cannot read grants: ${e.message}`, "error");
  }
  renderGrants();
}

function renderGrants() {
  const slot = $("#grants-list");
  if (!slot) return;
  const manual = manualRevoke();
  if (view.grants.length === 0) {
    keep(slot, [h("p", {}, view.grantsMissing ? "This hub does not list grants yet." : "No agency has access."), manual]);
    return;
  }
  keep(slot, [h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Grants in force" }, h("table", { id: "grants-table" },
    h("thead", {}, h("tr", {}, ["Agency", "Scopes", "Since", "Until", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, view.grants.map((g) => h("tr", { dataset: { agency: g.agency } },
      h("th", { scope: "row" }, g.agency), h("td", {}, g.scopes.join(", ")),
      h("td", {}, when(g.granted_at)), h("td", {}, g.ends_at ? when(g.ends_at) : "until unlinked"),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "danger", "data-key": `revoke-${g.agency}`,
                      onclick: () => endAccess("revoke", g.agency) }, "Revoke access"),
        h("button", { type: "button", "data-key": `unlink-${g.agency}`,
                      onclick: () => endAccess("unlink", g.agency) }, "Unlink"))))))), manual]);
}

/** Revoke or unlink by agency id (also where the hub does not list grants). */
function manualRevoke() {
  const input = h("input", { id: "end-agency", "data-key": "end-agency", autocomplete: "off",
                             value: view.endAgency ?? "" });
  input.addEventListener("input", () => { view.endAgency = input.value; });
  return h("form", { id: "end-access", class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    if (input.value.trim()) endAccess("revoke", input.value.trim());
  } }, h("label", { for: "end-agency" }, "Agency id"), input,
  h("button", { type: "submit", class: "danger", "data-key": "end-revoke" }, "Revoke access"),
  h("button", { type: "button", "data-key": "end-unlink", onclick: () => input.value.trim()
    && endAccess("unlink", input.value.trim()) }, "Unlink"));
}

async function endAccess(verb, agency) {
  try {
    await api(view.token, "POST", verb === "revoke" ? "/api/revoke" : "/api/unlink", { agency });
    announce(verb === "revoke" ? `Revoked ${agency}'s access (the link stays).` : `Unlinked ${agency}.`);
  } catch (e) {
    announce(`Not done: ${e.message}`, "error");
  }
  await refresh();
}

// --- inbox and audit ----------------------------------------------------------------------

async function loadInbox() {
  try {
    view.inbox = (await api(view.token, "GET", "/api/notifications?limit=50")).notifications;
  } catch (e) {
    announce(`Cannot read notifications: ${e.message}`, "error");
  }
  renderInbox();
}

function renderInbox() {
  const slot = $("#inbox-list");
  if (!slot) return;
  const unread = view.inbox.filter((n) => !n.read).map((n) => n.notification_id);
  keep(slot, [view.inbox.length === 0 ? h("p", {}, "No notification.")
    : h("ul", { id: "notifications", class: "plain feed" }, view.inbox.map((n) => h("li", {
      class: n.read ? "read" : "unread", dataset: { id: n.notification_id } },
      h("span", { class: "when" }, when(n.at)), " ", n.text))),
  unread.length ? h("button", { type: "button", "data-key": "mark-read", onclick: async () => {
    await api(view.token, "POST", "/api/notifications/read", { ids: unread }).catch(() => null);
    await loadInbox();
  } }, `Mark ${unread.length} read`) : null]);
}

function auditForm() {
  const staff = h("input", { id: "audit-staff", autocomplete: "off" });
  const family = h("select", { id: "audit-family" }, h("option", { value: "" }, "Any"),
    FAMILIES.map((f) => h("option", { value: f }, f)));
  const since = h("input", { id: "audit-since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", type: "datetime-local" });
  return h("form", { id: "audit-filter", class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    view.auditFilter = { staff: staff.value.trim(), family: family.value,
                         since: since.value ? Date.parse(since.value) : "",
                         until: until.value ? Date.parse(until.value) : "" };
    loadAudit();
  } }, h("label", { for: "audit-staff" }, "Staff member"), staff,
  h("label", { for: "audit-family" }, "Command family"), family,
  h("label", { for: "audit-since" }, "From"), since,
  h("label", { for: "audit-until" }, "To"), until,
  h("button", { type: "submit" }, "Filter"));
}

async function loadAudit() {
  const q = new URLSearchParams({ limit: "100" });
  for (const [k, v] of Object.entries(view.auditFilter)) if (v !== "" && v !== undefined) q.set(k, String(v));
  try {
    view.audit = (await api(view.token, "GET", `/api/audit?${q}`)).entries;
  } catch (e) {
    announce(`Cannot read the audit trail: ${e.message}`, "error");
  }
  const slot = $("#audit-list");
  if (!slot) return;
  keep(slot, view.audit.length === 0 ? h("p", {}, "No matching action.") : h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Audit trail entries" }, h("table", { id: "audit-table" },
    h("thead", {}, h("tr", {}, ["When", "Who", "Family", "Action", "Result"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, view.audit.map((e) => h("tr", { dataset: { staff: e.actor.id } },
      h("td", {}, when(e.at)),
      h("td", {}, e.actor.role === "staff" ? `${e.actor.id} (${e.actor.agency})` : `${e.actor.id} (you)`),
      h("td", {}, e.family), h("td", {}, e.action),
      h("td", {}, e.code === null || e.code === undefined ? "done" : `refused: ${humanReason(e.code)}`)))))));
}

// --- my creator client --------------------------------------------------------------------

function connect() {
  const client = new Client({ token: view.token, client: "livepilot-creator-page" });
  view.client = client;
  client.addEventListener("state", (e) => {
    const conn = $("#conn");
    conn.dataset.state = e.detail.state;
    conn.textContent = CONN_TEXT[e.detail.state] ?? e.detail.state;
  });
  client.addEventListener("snapshot", (e) => {
    view.model = new RoomModel(e.detail);
    renderLive();
  });
  client.addEventListener("event", (e) => {
    view.model?.apply(e.detail);
    appendLog(e.detail);
    scheduleLive();
  });
  client.addEventListener("presence", (e) => { view.presence = e.detail.members; scheduleLive(); });
  client.addEventListener("notification", (e) => {
    view.inbox = [e.detail, ...view.inbox.filter((n) => n.notification_id !== e.detail.notification_id)];
    renderInbox();
  });
  client.start().then(() => client.join(view.me)).catch((e) => announce(`Cannot connect: ${e.message}`, "error"));
}

/** Send a command to my own room (also used by the simulator). */
async function command(type, fields, done) {
  try {
    const ack = await view.client.command(type, { room: view.me, ...fields });
    if (done) announce(done);
    return ack;
  } catch (e) {
    announce(`Not done: ${e.message}`, "error");
    return null;
  }
}

let liveFrame = 0;
function scheduleLive() {
  if (!liveFrame) liveFrame = requestAnimationFrame(() => { liveFrame = 0; renderLive(); });
}

function renderLive() {
  const controls = $("#live-controls");
  const room = $("#room-view");
  if (!controls || !room) return;
  const m = view.model;
  const live = m?.status === "live";
  if (controls.dataset.live !== String(live)) { // only when it changes: keep the title typed
    controls.dataset.live = String(live);
    const title = h("input", { id: "live-title", maxlength: 200, value: "My LIVE" });
    fill(controls, live
      ? [h("p", {}, h("span", { class: "badge s-live", id: "my-status" }, "LIVE"), ` ${m.title}`),
         h("button", { type: "button", class: "danger", id: "end-live",
                       onclick: () => command("end_live", {}, "LIVE ended.") }, "End LIVE")]
      : [h("p", {}, h("span", { class: "badge s-offline", id: "my-status" }, "Offline")),
         h("form", { class: "inline", onsubmit: (ev) => {
           ev.preventDefault();
           command("start_live", { title: title.value }, "You are LIVE.");
         } }, h("label", { for: "live-title" }, "Title"), title,
         h("button", { type: "submit", class: "primary", id: "go-live" }, "Go LIVE"))]);
  }
  if (!m) return;
  const sales = Object.values(m.flashSales);
  keep(room, [
    h("p", {}, `Viewers ${m.figures.viewers} · orders ${m.figures.orders} · GMV ${money(m.figures.gmv_cents)}`),
    h("p", {}, "In the room: ", (view.presence ?? []).map((a) => a.role === "staff" ? `${a.id} (${a.agency})` : "you").join(", ") || "—"),
    h("h3", {}, "Shopping bag as the audience sees it"),
    m.bag.length ? h("ol", { id: "creator-bag", class: "plain-ol" }, m.bag.map((i) => h("li", {
      dataset: { product: i.product_id }, class: m.pinned === i.product_id ? "pinned" : "" },
      `${i.title || i.product_id} (${i.stock} in stock)`, m.pinned === i.product_id ? " — pinned" : ""))) : h("p", {}, "Empty."),
    sales.length ? h("ul", { class: "plain" }, sales.map((s) => h("li", { dataset: { sale: s.sale_id } },
      `Flash sale ${s.sale_id}: ${RoomModel.stockLeft(s)} of ${s.stock} left${s.ended ? " (ended)" : ""}`))) : null,
  ]);
}

/** The room's events as they arrive, in seq order: who did what (R16). */
function appendLog(event) {
  let log = $("#room-log");
  if (!log) {
    log = h("ol", { id: "room-log", class: "feed", "aria-label": "Room events, in order" });
    $("#live").append(h("h3", {}, "Room events"), log);
  }
  const by = event.by.role === "staff" ? `${event.by.id} (${event.by.agency})` : "you";
  log.prepend(h("li", { dataset: { seq: event.seq, type: event.body.type } },
    `#${event.seq} ${event.body.type.replace(/_/g, " ")} — ${by}`));
  while (log.children.length > 100) log.lastChild.remove();
}

export { newId };
start();
