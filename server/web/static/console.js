// console.js - the agency Live Manager (/console): creators and access, then the room.
// Staff never get a start/end control (R10): only the creator's own client has one.
import { Client, RefusedError, api, humanReason, newId } from "./livepilot.js";
import { RoomModel } from "./room.js";
import { $, announce, claims, fill, h, lineChart, money, signInForm, storedToken, when } from "./ui.js";
import { bagPanel, promotionsPanel, tickCountdowns } from "./console_live.js";
import { commentsPanel, planningPanel, settingsPanel } from "./console_plan.js";

const TOKEN_KEY = "livepilot.console.token";
const main = $("#main");
const view = { token: null, client: null, room: null, model: null, presence: [], plan: null,
               dirty: new Set(), frame: 0, ended: null, joinTimer: 0 };
window.lpConsole = view; // the browser tests read the page's state through this

const CONN_TEXT = { idle: "Not connected", connecting: "Connecting…", open: "Connected",
                    reconnecting: "Reconnecting…", closed: "Disconnected" };

function setConn(state) {
  const conn = $("#conn");
  conn.dataset.state = state;
  conn.textContent = CONN_TEXT[state] ?? state;
}

// --- sign in -------------------------------------------------------------------------

function start() {
  view.initialRoom = new URLSearchParams(window.location.hash.slice(1)).get("room");
  view.token = storedToken(TOKEN_KEY);
  $("#signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    view.client?.stop();
    window.location.reload();
  });
  if (!view.token) {
    fill(main, signInForm("signin", "Staff token", (token) => {
      sessionStorage.setItem(TOKEN_KEY, token);
      view.token = token;
      signedIn();
    }));
    return;
  }
  signedIn();
}

function signedIn() {
  const c = claims(view.token);
  if (!c || c.role !== "staff") {
    announce("This is not a staff token: the Live Manager is for agency staff.", "error");
    sessionStorage.removeItem(TOKEN_KEY);
    fill(main, signInForm("signin", "Staff token", (token) => {
      sessionStorage.setItem(TOKEN_KEY, token);
      view.token = token;
      signedIn();
    }));
    return;
  }
  $("#who").textContent = `${c.staff} · agency ${c.agency}`;
  $("#signout").hidden = false;
  view.client = new Client({ token: view.token, client: "livepilot-console" });
  wire(view.client);
  view.client.start().catch((e) => announce(`Cannot connect: ${e.message}`, "error"));
  if (view.initialRoom) enterRoom(view.initialRoom);
  else showCreators();
}

// --- creators and access ---------------------------------------------------------------

const STATUS_LABEL = {
  access_granted: "granted", pending: "requested", expired: "expired", ended: "expired",
  none: "none", linked: "linked, no access", revoked: "revoked",
};

function statusOf(row) {
  if (view.revoked?.has(row.creator) && row.status !== "access_granted") return "revoked";
  const noAccess = row.status === "linked" || row.status === "revoked";
  if (noAccess && row.requests.some((r) => r.kind === "access")) return "requested";
  return STATUS_LABEL[row.status] ?? row.status;
}

async function request(body, done) {
  try {
    await api(view.token, "POST", "/api/requests", body);
    announce(done);
  } catch (e) {
    announce(`Request refused: ${e.message}`, "error");
  }
  await showCreators(false);
}

async function unlink(creator) {
  try {
    await api(view.token, "POST", "/api/unlink", { creator });
    announce(`Unlinked from ${creator}: access ended.`);
  } catch (e) {
    announce(`Unlink refused: ${e.message}`, "error");
  }
  await showCreators(false);
}

function extensionForm(creator) {
  const id = `ext-${creator}`;
  const date = h("input", { type: "date", id, required: true });
  return h("form", { class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    const at = Date.parse(`${date.value}T23:59:00`);
    if (Number.isNaN(at)) return;
    request({ type: "request_extension", creator, new_ends_at: at },
            `Extension requested from ${creator}.`);
  } }, h("label", { for: id }, "New end date"), date,
  h("button", { type: "submit" }, "Request extension"));
}

function actionsFor(row) {
  const c = row.creator;
  const linked = ["linked", "revoked", "access_granted"].includes(row.status);
  const asked = new Set(row.requests.map((r) => r.kind));
  const out = [];
  if (row.status === "access_granted") {
    out.push(h("button", { type: "button", class: "primary", dataset: { creator: c },
                           onclick: () => enterRoom(c) }, "Enter Live Manager"));
  }
  if (row.status !== "access_granted" && linked && !asked.has("access") && !asked.has("extension")) {
    out.push(h("button", { type: "button", onclick: () => request(
      { type: "request_access", creator: c, request_id: newId("req") },
      `LIVE access requested from ${c}.`) }, "Request access"));
  }
  if (!linked && row.status !== "pending") {
    out.push(h("button", { type: "button", onclick: () => request(
      { type: "request_link", creator: c, with_access: true, request_id: newId("req") },
      `Link and LIVE access requested from ${c}.`) }, "Request link + access"));
  }
  if (linked && !asked.has("access") && !asked.has("extension")) out.push(extensionForm(c));
  if (linked) {
    out.push(h("button", { type: "button", class: "danger", onclick: () => unlink(c) }, "Unlink"));
  }
  return out;
}

async function showCreators(focus = true) {
  view.room = null;
  let rows = [];
  try {
    rows = (await api(view.token, "GET", "/api/creators")).creators;
  } catch (e) {
    announce(`Cannot list creators: ${e.message}`, "error");
  }
  const newCreator = h("input", { id: "new-creator", required: true, pattern: "[A-Za-z0-9_.:@\\-]+",
                                  autocomplete: "off" });
  const add = h("form", { id: "add-creator", class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    request({ type: "request_link", creator: newCreator.value.trim(), with_access: true,
              request_id: newId("req") },
            `Link and LIVE access requested from ${newCreator.value.trim()}.`);
  } }, h("label", { for: "new-creator" }, "Creator id"), newCreator,
  h("button", { type: "submit" }, "Request link + access"));
  const table = h("table", { id: "creators" },
    h("caption", {}, "Your agency's creators"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Creator"),
      h("th", { scope: "col" }, "Access"), h("th", { scope: "col" }, "Scopes"),
      h("th", { scope: "col" }, "Link ends"), h("th", { scope: "col" }, "Actions"))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: 5 }, "No creator yet: request one below."))
      : rows.map((row) => h("tr", { dataset: { creator: row.creator, status: statusOf(row) } },
        h("th", { scope: "row" }, row.creator),
        h("td", {}, h("span", { class: `badge s-${statusOf(row).split(",")[0]}` }, statusOf(row))),
        h("td", {}, row.scopes.join(", ") || "—"),
        h("td", {}, when(row.ends_at)),
        h("td", { class: "actions" }, actionsFor(row))))));
  fill(main, h("section", { class: "card", "aria-labelledby": "creators-title" },
    h("h2", { id: "creators-title" }, "Creators"), table,
    h("h3", {}, "Ask a new creator"), add,
    h("button", { type: "button", onclick: () => showCreators() }, "Refresh")));
  if (focus) main.focus();
}

// --- the room ----------------------------------------------------------------------------

function wire(client) {
  client.addEventListener("state", (e) => setConn(e.detail.state));
  client.addEventListener("snapshot", (e) => {
    if (e.detail.room !== view.room) return;
    view.model = new RoomModel(e.detail);
    clearTimeout(view.joinTimer);
    renderRoom();
  });
  client.addEventListener("event", (e) => {
    if (e.detail.room !== view.room || !view.model) return;
    view.model.apply(e.detail);
    const type = e.detail.body.type;
    if (type === "live_ended") {
      announce("The creator ended the LIVE: the live part of the room is closed.");
      view.model = null;
      renderRoom();
      return;
    }
    markDirty(type);
  });
  client.addEventListener("presence", (e) => {
    if (e.detail.room !== view.room) return;
    view.presence = e.detail.members;
    markDirty("presence");
  });
  client.addEventListener("room_error", (e) => {
    if (e.detail.room !== view.room) return;
    if (e.detail.code === 300) { // NOT_LIVE: pre-LIVE work only; try again in a while
      view.model = null;
      renderRoom();
      clearTimeout(view.joinTimer);
      view.joinTimer = setTimeout(() => view.room && joinRoom(), 3000);
      return;
    }
    if (e.detail.code >= 200 && e.detail.code < 300) accessEnded(humanReason(e.detail.code, e.detail.message));
    else announce(humanReason(e.detail.code, e.detail.message), "error");
  });
  client.addEventListener("access_changed", (e) => {
    const m = e.detail;
    if (m.status === "granted") return;
    view.revoked ??= new Set();
    view.revoked.add(m.creator);
    if ((m.room ?? m.creator) === view.room) accessEnded(`Access ended: ${m.status} for ${m.creator}.`);
  });
  client.addEventListener("closed", (e) => {
    if (e.detail.code === 4501 && view.room) accessEnded("Access ended: LIVE Manager access was revoked.");
    else if (e.detail.terminal) announce(`Disconnected: ${humanReason(e.detail.code, e.detail.reason)}`, "error");
  });
}

/** Access ended (revoke, unlink, end date): say so at once and show nothing of the room. */
function accessEnded(text) {
  clearTimeout(view.joinTimer);
  view.ended = text;
  view.model = null;
  const room = view.room;
  view.room = null;
  if (room) view.client.leave(room);
  fill(main, h("section", { id: "access-ended", class: "card ended", role: "alert" },
    h("h2", {}, "Access ended"),
    h("p", {}, text),
    h("p", {}, "The room is no longer shown. Ask the creator for access again from the creators list."),
    h("button", { type: "button", onclick: () => { view.ended = null; showCreators(); } },
      "Back to creators")));
  announce(text, "error");
}

function joinRoom() {
  view.client.join(view.room).catch(() => { /* answered by room_error */ });
}

async function enterRoom(creator) {
  view.room = creator;
  view.model = null;
  view.ended = null;
  view.presence = [];
  history.replaceState(null, "", `#room=${encodeURIComponent(creator)}`);
  fill(main, h("p", { class: "card" }, `Entering ${creator}'s Live Manager…`));
  joinRoom();
  await loadPlan();
}

async function loadPlan() {
  if (!view.room) return;
  try {
    view.plan = await api(view.token, "GET", `/api/plan?creator=${encodeURIComponent(view.room)}`);
  } catch (e) {
    view.plan = { unavailable: e.status === 404 ? "not served by this hub" : e.message };
  }
  markDirty("plan");
}

/** Send a command to the room: announce success or the refusal's reason in words. */
async function run(type, fields, done) {
  const room = view.room;
  if (!room) return null;
  try {
    const ack = await view.client.command(type, { room, ...fields });
    if (done) announce(done);
    return ack;
  } catch (e) {
    const text = e instanceof RefusedError ? e.message : String(e);
    announce(`Not done: ${text}`, "error");
    return null;
  }
}

const PANELS_OF = {
  product_added: ["bag"], product_deleted: ["bag"], product_pinned: ["bag"],
  product_unpinned: ["bag"], product_moved: ["bag"],
  order_placed: ["bag", "promotions", "activity", "dashboard"],
  giveaway_ready: ["promotions"], giveaway_deployed: ["promotions"], giveaway_ended: ["promotions"],
  flash_sale_ready: ["promotions"], flash_sale_deployed: ["promotions"], flash_sale_ended: ["promotions"],
  billboard_deployed: ["billboard"], billboard_taken_down: ["billboard"],
  comment_posted: ["comments"], comment_settings_changed: ["settings"],
  user_muted: ["comments", "settings"], user_unmuted: ["comments", "settings"],
  user_blocked: ["comments", "settings"], user_unblocked: ["comments", "settings"],
  gift_sent: ["activity"], subscribed: ["activity"], followed: ["activity"],
  viewers_changed: ["dashboard"], violation_reported: ["violations"],
  live_event_scheduled: ["plan"], live_event_edited: ["plan"], live_event_cancelled: ["plan"],
  product_set_saved: ["plan"], product_set_deleted: ["plan"],
  presence: ["presence"], plan: ["plan", "promotions"], filter: ["bag"],
};

function markDirty(kind) {
  for (const panel of PANELS_OF[kind] ?? []) view.dirty.add(panel);
  if (!view.frame) view.frame = requestAnimationFrame(flush);
}

function flush() {
  view.frame = 0;
  const panels = [...view.dirty];
  view.dirty.clear();
  for (const panel of panels) renderPanel(panel);
}

/** Re-render a panel's changing part, keeping keyboard focus on the control that had it
 * (its forms are rendered once per room view, so nothing typed there is lost). */
function renderPanel(name) {
  const slot = document.getElementById(`list-${name}`);
  if (!slot) return;
  const active = document.activeElement;
  const key = active && slot.contains(active) ? active.dataset.key : null;
  fill(slot, PANEL[name].list());
  if (key) slot.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

const PANEL = {
  dashboard: { title: "LIVE dashboard", list: () => dashboardPanel() },
  presence: { title: "In the room", list: () => presencePanel() },
  bag: bagPanel(view, run, markDirty),
  promotions: promotionsPanel(view, run),
  billboard: { title: "Billboard", form: () => billboardForm(), list: () => billboardNow() },
  comments: commentsPanel(view, run),
  settings: settingsPanel(view, run),
  activity: { title: "Activity", list: () => activityPanel() },
  violations: { title: "Violations", list: () => violationsPanel() },
  plan: planningPanel(view, run, loadPlan),
};

function renderRoom() {
  if (!view.room) return;
  const live = view.model !== null && view.model.status === "live";
  const head = h("div", { class: "room-head" },
    h("button", { type: "button", onclick: () => { view.client.leave(view.room); history.replaceState(null, "", "#"); showCreators(); } }, "← Creators"),
    h("h2", { id: "room-title" }, `${view.room}'s LIVE room`),
    h("span", { id: "live-status", class: `badge ${live ? "s-live" : "s-offline"}` },
      live ? `LIVE · ${view.model.title || "untitled"}` : "Not live"));
  const slots = live
    ? ["dashboard", "presence", "bag", "promotions", "billboard", "comments", "settings",
       "activity", "violations", "plan"]
    : ["plan", "promotions"];
  const grid = h("div", { class: "grid" }, slots.map((name) => h("section", {
    id: `panel-${name}`, class: `card panel-${name}`, "aria-labelledby": `title-${name}` },
    h("h3", { id: `title-${name}` }, PANEL[name].title),
    h("div", { id: `list-${name}`, class: "list" }),
    PANEL[name].form ? PANEL[name].form() : null)));
  const note = live ? null : h("p", { class: "card note" },
    "The creator is not LIVE: pre-LIVE planning only. The room opens by itself when they go LIVE.");
  fill(main, head, note, grid);
  for (const name of slots) renderPanel(name);
}

function dashboardPanel() {
  const m = view.model;
  const f = m.figures;
  return [
    h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, "Viewers"), h("dd", { id: "fig-viewers" }, f.viewers)),
      h("div", {}, h("dt", {}, "Orders"), h("dd", { id: "fig-orders" }, f.orders)),
      h("div", {}, h("dt", {}, "GMV"), h("dd", { id: "fig-gmv" }, money(f.gmv_cents)))),
    lineChart(m.series, [{ key: "viewers", cls: "l-viewers" }, { key: "gmv_cents", cls: "l-gmv" }],
              { label: "Viewers and GMV over this LIVE" }),
    h("p", { class: "legend" }, h("span", { class: "k-viewers" }, "viewers"), " ",
      h("span", { class: "k-gmv" }, "GMV")),
  ];
}

function presencePanel() {
  return [h("ul", { id: "presence", class: "plain" },
    view.presence.map((a) => h("li", {}, a.role === "creator" ? `${a.id} (creator)`
      : `${a.id} · ${a.agency}`)))];
}

function billboardNow() {
  const m = view.model;
  return [
    h("p", { id: "billboard-now" }, m.billboard ? `Showing: ${m.billboard.text}` : "No billboard."),
    m.billboard ? h("button", { type: "button", "data-key": "bb-down", onclick: () => run(
      "billboard_take_down", {}, "Billboard taken down.") }, "Take down") : null,
  ];
}

function billboardForm() {
  const text = h("input", { id: "billboard-text", maxlength: 200, required: true });
  return h("form", { class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    run("billboard_deploy", { billboard: { billboard_id: newId("bb"), text: text.value } },
        "Billboard deployed.");
  } }, h("label", { for: "billboard-text" }, "Billboard text"), text,
  h("button", { type: "submit" }, "Deploy billboard"));
}

function activityPanel() {
  const items = [...view.model.activity].reverse().slice(0, 50);
  return [h("ol", { id: "activity", class: "feed", reversed: true },
    items.map((a) => h("li", { class: `k-${a.kind}` }, a.text)))];
}

function violationsPanel() {
  const v = view.model.violations;
  return [v.length === 0 ? h("p", {}, "None reported.")
    : h("ul", { id: "violations", class: "plain" }, v.map((x) => h("li", { class: `sev-${x.severity}` },
      `${x.policy} (${x.severity})${x.description ? `: ${x.description}` : ""}`)))];
}

setInterval(tickCountdowns, 1000); // countdowns tick without an event

start();
