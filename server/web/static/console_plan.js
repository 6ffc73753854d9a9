// console_plan.js - the Live Manager's comment moderation and pre-LIVE planning panels
// ({title, form, list}, as in console_live.js).
import { newId } from "./livepilot.js";
import { h, when } from "./ui.js";

const DURATIONS = [[60, "1 minute"], [300, "5 minutes"], [3600, "1 hour"], [86400, "1 day"],
                   [604800, "7 days"]];

function key(k, attrs = {}) {
  return { ...attrs, "data-key": k };
}

/** The comment stream with mute / block for a chosen duration (R13). */
export function commentsPanel(view, run) {
  view.modDuration ??= 300;

  function comment(c) {
    const uid = c.user.unique_id;
    const name = c.user.nickname || uid;
    const hidden = c.hidden ?? (view.model.muted[uid] ? "muted" : view.model.blocked[uid] ? "blocked" : null);
    return h("li", { class: hidden ? "hidden-comment" : "", dataset: { user: uid, hidden: hidden ?? "" } },
      h("span", { class: "who" }, name),
      hidden ? h("span", { class: "badge s-hidden" }, `hidden: ${hidden}`) : null,
      h("span", { class: "text" }, hidden ? "(not shown to the audience) " : "", c.content),
      h("span", { class: "actions" },
        h("button", key(`mute-${c.comment_id}`, { type: "button", "aria-label": `Mute ${name}`,
          onclick: () => run("mute", { user_id: uid, duration_s: view.modDuration }, `Muted ${name}.`) }), "Mute"),
        h("button", key(`block-${c.comment_id}`, { type: "button", class: "danger", "aria-label": `Block ${name}`,
          onclick: () => run("block", { user_id: uid, duration_s: view.modDuration }, `Blocked ${name}.`) }), "Block")));
  }

  function list() {
    const items = [...view.model.comments].reverse().slice(0, 60);
    return items.length === 0 ? h("p", {}, "No comment yet.")
      : h("ol", { id: "comments", class: "feed", "aria-label": "Comments, newest first" }, items.map(comment));
  }

  function form() {
    const select = h("select", { id: "mod-duration" },
      DURATIONS.map(([s, label]) => h("option", { value: s, selected: s === view.modDuration }, label)));
    select.addEventListener("change", () => { view.modDuration = Number(select.value); });
    return h("div", { class: "inline" }, h("label", { for: "mod-duration" }, "Mute / block for"), select);
  }

  return { title: "Comments", list, form };
}

/** Comment settings, and who is muted or blocked (with unmute / unblock). */
export function settingsPanel(view, run) {
  function list() {
    const s = view.model.commentSettings;
    const box = (id, field, label) => h("div", { class: "check" },
      h("input", { type: "checkbox", id, name: field, checked: s[field] }), h("label", { for: id }, label));
    const num = (id, field, label) => [h("label", { for: id }, label),
      h("input", { type: "number", id, name: field, min: 1, value: s[field] })];
    const form = h("form", { id: "comment-settings", class: "stack", onsubmit: (ev) => {
      ev.preventDefault();
      const el = form.elements;
      run("comment_settings", {
        allow_comments: el.allow_comments.checked, show_top_comment: el.show_top_comment.checked,
        filter_spam: el.filter_spam.checked, default_mute_s: Number(el.default_mute_s.value),
        default_block_s: Number(el.default_block_s.value),
      }, "Comment settings saved.");
    } },
    box("cs-allow", "allow_comments", "Allow comments"),
    box("cs-top", "show_top_comment", "Show the most-sent comment"),
    box("cs-spam", "filter_spam", "Filter spam"),
    num("cs-mute", "default_mute_s", "Default mute (s)"),
    num("cs-block", "default_block_s", "Default block (s)"),
    h("button", { type: "submit" }, "Save settings"));
    const moderated = [
      ...Object.entries(view.model.muted).map(([u, until]) => h("li", {}, `${u} muted until ${when(until)} `,
        h("button", key(`unmute-${u}`, { type: "button", onclick: () => run("unmute", { user_id: u }, `Unmuted ${u}.`) }), "Unmute"))),
      ...Object.entries(view.model.blocked).map(([u, until]) => h("li", {}, `${u} blocked until ${when(until)} `,
        h("button", key(`unblock-${u}`, { type: "button", onclick: () => run("unblock", { user_id: u }, `Unblocked ${u}.`) }), "Unblock"))),
    ];
    return [form, h("h4", {}, "Muted and blocked"),
      moderated.length ? h("ul", { id: "moderated", class: "plain" }, moderated) : h("p", {}, "Nobody.")];
  }

  return { title: "Comment settings", list };
}

/** Pre-LIVE planning (R12): LIVE events and product sets. */
export function planningPanel(view, run, reload) {
  view.reloadPlan = reload;
  const after = (p) => p.then((ack) => { if (ack) reload(); });

  function events() {
    if (view.model) return Object.values(view.model.liveEvents);
    return view.plan?.live_events ?? [];
  }

  function sets() {
    if (view.model) return Object.values(view.model.productSets);
    return view.plan?.product_sets ?? [];
  }

  function eventRow(ev) {
    const id = ev.event_id;
    const title = h("input", { id: `ev-title-${id}`, value: ev.title, maxlength: 200 });
    const row = h("li", { dataset: { event: id }, class: ev.cancelled ? "cancelled" : "" },
      h("strong", {}, ev.title), ` · ${when(ev.starts_at)} · ${Math.round(ev.duration_s / 60)} min`,
      ev.cancelled ? " · cancelled" : null);
    if (!ev.cancelled) {
      row.append(h("form", { class: "inline", onsubmit: (e) => {
        e.preventDefault();
        after(run("live_event_edit", { event_id: id, title: title.value }, `Event ${id} edited.`));
      } }, h("label", { for: `ev-title-${id}` }, "Title"), title, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "danger", onclick: () => after(run("live_event_cancel",
        { event_id: id }, `Event ${id} cancelled.`)) }, "Cancel event")));
    }
    return row;
  }

  function list() {
    const out = [];
    if (view.plan?.unavailable && !view.model) out.push(h("p", { class: "note" }, `The plan cannot be read (${view.plan.unavailable}).`));
    const ev = events();
    out.push(h("h4", {}, "Scheduled LIVE events"),
      ev.length ? h("ul", { id: "live-events", class: "plain" }, ev.map(eventRow)) : h("p", {}, "None scheduled."));
    const ps = sets();
    out.push(h("h4", {}, "Product sets"), ps.length ? h("ul", { id: "product-sets", class: "plain" },
      ps.map((s) => h("li", { dataset: { set: s.set_id } }, `${s.name}: ${s.product_ids.join(", ") || "empty"} `,
        h("button", key(`psdel-${s.set_id}`, { type: "button", class: "danger",
          onclick: () => after(run("product_set_delete", { set_id: s.set_id }, `Product set ${s.name} deleted.`)) }),
          "Delete")))) : h("p", {}, "None."));
    return out;
  }

  function form() {
    const title = h("input", { id: "ev-title", required: true, maxlength: 200 });
    const at = h("input", { id: "ev-at", type: "datetime-local", required: true });
    const minutes = h("input", { id: "ev-min", type: "number", min: 1, value: "60" });
    const schedule = h("form", { id: "schedule-event", class: "stack", onsubmit: (e) => {
      e.preventDefault();
      const event = { event_id: newId("ev"), title: title.value, starts_at: Date.parse(at.value),
                      duration_s: Number(minutes.value) * 60 };
      if (Number.isNaN(event.starts_at)) return;
      after(run("live_event_schedule", { event }, `LIVE event “${event.title}” scheduled.`));
    } }, h("h4", {}, "Schedule a LIVE event"),
    h("label", { for: "ev-title" }, "Title"), title,
    h("label", { for: "ev-at" }, "Starts"), at,
    h("label", { for: "ev-min" }, "Duration (min)"), minutes,
    h("button", { type: "submit" }, "Schedule"));
    const name = h("input", { id: "ps-name", required: true, maxlength: 200 });
    const ids = h("input", { id: "ps-ids", placeholder: "sku-1, sku-2" });
    const set = h("form", { id: "product-set", class: "stack", onsubmit: (e) => {
      e.preventDefault();
      const product_ids = ids.value.split(",").map((x) => x.trim()).filter(Boolean);
      after(run("product_set_save", { product_set: { set_id: newId("ps"), name: name.value, product_ids } },
                `Product set ${name.value} saved.`));
    } }, h("h4", {}, "Save a product set"),
    h("label", { for: "ps-name" }, "Name"), name,
    h("label", { for: "ps-ids" }, "Product ids (comma-separated)"), ids,
    h("button", { type: "submit" }, "Save product set"));
    return h("div", { class: "forms" }, schedule, set);
  }

  return { title: "Pre-LIVE plan", list, form };
}
