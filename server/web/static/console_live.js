// console_live.js - the Live Manager's shopping bag and promotions panels.
// Each panel is {title, form, list}: `form` is built once per room view (nothing typed
// is lost), `list` again on every change of what it shows.
import { RoomModel } from "./room.js";
import { h, money, when } from "./ui.js";
import { newId } from "./livepilot.js";

function key(k, attrs = {}) {
  return { ...attrs, "data-key": k };
}

// --- shopping bag -------------------------------------------------------------------------

/** The bag: add, delete, pin/unpin, reorder by drag and by keyboard, filter (R13). */
export function bagPanel(view, run, markDirty) {
  view.bagFilter ??= { category: "", stock: "" };
  const move = (pid, position) => run("bag_move", { product_id: pid, position }, `Moved ${pid} to position ${position + 1}.`);

  function filters() {
    const categories = [...new Set(view.model.bag.map((i) => i.category).filter(Boolean))].sort();
    const cat = h("select", key("f-cat", { id: "bag-category" }),
      h("option", { value: "" }, "All categories"),
      categories.map((c) => h("option", { value: c, selected: c === view.bagFilter.category }, c)));
    const stock = h("select", key("f-stock", { id: "bag-stock" }),
      h("option", { value: "" }, "Any stock"),
      h("option", { value: "in", selected: view.bagFilter.stock === "in" }, "In stock"),
      h("option", { value: "out", selected: view.bagFilter.stock === "out" }, "Out of stock"));
    cat.addEventListener("change", () => { view.bagFilter.category = cat.value; markDirty("filter"); });
    stock.addEventListener("change", () => { view.bagFilter.stock = stock.value; markDirty("filter"); });
    return h("div", { class: "filters" }, h("label", { for: "bag-category" }, "Category"), cat,
      h("label", { for: "bag-stock" }, "Stock"), stock);
  }

  function item(it, index, count) {
    const pid = it.product_id;
    const pinned = view.model.pinned === pid;
    const li = h("li", { draggable: "true", dataset: { product: pid }, class: pinned ? "pinned" : "" },
      h("span", key(`handle-${pid}`, { class: "handle", tabindex: 0, role: "button",
        "aria-label": `Reorder ${it.title || pid}: Alt+Arrow up or down`,
        title: "Drag, or Alt+Arrow up/down" }), "⠿"),
      h("span", { class: "pos" }, `${index + 1}.`),
      h("span", { class: "title" }, it.title || pid, pinned ? h("span", { class: "badge s-live" }, "Pinned") : null),
      h("span", { class: "meta" }, `${it.category || "—"} · ${money(it.price_cents)} · `,
        it.stock > 0 ? `${it.stock} in stock` : h("strong", {}, "out of stock")),
      h("span", { class: "actions" },
        pinned
          ? h("button", key(`pin-${pid}`, { type: "button", onclick: () => run("bag_unpin", {}, `Unpinned ${pid}.`) }), "Unpin")
          : h("button", key(`pin-${pid}`, { type: "button", onclick: () => run("bag_pin", { product_id: pid }, `Pinned ${pid}.`) }), "Pin"),
        h("button", key(`up-${pid}`, { type: "button", disabled: index === 0, "aria-label": `Move ${pid} up`,
          onclick: () => move(pid, index - 1) }), "↑"),
        h("button", key(`down-${pid}`, { type: "button", disabled: index === count - 1, "aria-label": `Move ${pid} down`,
          onclick: () => move(pid, index + 1) }), "↓"),
        h("button", key(`del-${pid}`, { type: "button", class: "danger", "aria-label": `Delete ${pid}`,
          onclick: () => run("bag_delete", { product_id: pid }, `Deleted ${pid}.`) }), "Delete")));
    li.querySelector(".handle").addEventListener("keydown", (ev) => {
      if (!ev.altKey || (ev.key !== "ArrowUp" && ev.key !== "ArrowDown")) return;
      ev.preventDefault();
      const to = index + (ev.key === "ArrowUp" ? -1 : 1);
      if (to >= 0 && to < count) move(pid, to);
    });
    li.addEventListener("dragstart", (ev) => {
      ev.dataTransfer.setData("text/plain", pid);
      ev.dataTransfer.effectAllowed = "move";
    });
    li.addEventListener("dragover", (ev) => { ev.preventDefault(); li.classList.add("over"); });
    li.addEventListener("dragleave", () => li.classList.remove("over"));
    li.addEventListener("drop", (ev) => {
      ev.preventDefault();
      li.classList.remove("over");
      const dragged = ev.dataTransfer.getData("text/plain");
      if (dragged && dragged !== pid) move(dragged, index);
    });
    return li;
  }

  function list() {
    const bag = view.model.bag;
    const f = view.bagFilter;
    const shown = bag.map((it, i) => [it, i]).filter(([it]) =>
      (!f.category || it.category === f.category)
      && (!f.stock || (f.stock === "in") === (it.stock > 0)));
    return [filters(), bag.length === 0 ? h("p", {}, "The bag is empty.")
      : h("ol", { id: "bag", class: "bag", "aria-label": "Shopping bag, in order" },
        shown.map(([it, i]) => item(it, i, bag.length)))];
  }

  function form() {
    const f = {
      pid: h("input", { id: "add-pid", required: true, pattern: "[A-Za-z0-9_.:@\\-]+", autocomplete: "off" }),
      title: h("input", { id: "add-title", maxlength: 200 }),
      category: h("input", { id: "add-category", maxlength: 200 }),
      price: h("input", { id: "add-price", type: "number", min: 0, step: "0.01", value: "0" }),
      stock: h("input", { id: "add-stock", type: "number", min: 0, step: 1, value: "10" }),
    };
    return h("form", { id: "bag-add", class: "stack", onsubmit: (ev) => {
      ev.preventDefault();
      const item = { product_id: f.pid.value.trim(), title: f.title.value, category: f.category.value,
                     price_cents: Math.round(Number(f.price.value) * 100), stock: Number(f.stock.value) };
      run("bag_add", { item }, `Added ${item.product_id} to the bag.`);
    } }, h("h4", {}, "Add a product"),
    h("label", { for: "add-pid" }, "Product id"), f.pid,
    h("label", { for: "add-title" }, "Title"), f.title,
    h("label", { for: "add-category" }, "Category"), f.category,
    h("label", { for: "add-price" }, "Price ($)"), f.price,
    h("label", { for: "add-stock" }, "Stock"), f.stock,
    h("button", { type: "submit" }, "Add to bag"));
  }

  return { title: "Shopping bag", list, form };
}

// --- promotions ---------------------------------------------------------------------------

/** Seconds left until `endsAt`, as m:ss. */
function left(endsAt) {
  const s = Math.max(0, Math.round((endsAt - Date.now()) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Update every countdown on the page (once a second; no re-render). */
export function tickCountdowns() {
  for (const el of document.querySelectorAll("[data-ends-at]")) {
    el.textContent = left(Number(el.dataset.endsAt));
  }
}

function byId(list, id) {
  return Object.fromEntries((list ?? []).map((x) => [x[id], x]));
}

/** Giveaways and flash sales: set up (pre- or during LIVE), deploy, end (R12, R13). */
export function promotionsPanel(view, run) {
  function sources() {
    if (view.model) return [view.model.giveaways, view.model.flashSales, view.model.status === "live"];
    return [byId(view.plan?.giveaways, "giveaway_id"), byId(view.plan?.flash_sales, "sale_id"), false];
  }

  function giveaway(g, live) {
    const running = g.ends_at && !g.ended && g.ends_at > Date.now();
    return h("li", { dataset: { giveaway: g.giveaway_id } },
      `${g.giveaway_id}: ${g.winners} winner(s) of ${g.product_id} · `,
      running ? h("span", {}, "running, ", h("span", { dataset: { endsAt: g.ends_at } }, left(g.ends_at)), " left")
        : g.deployed_at ? "ended" : `${g.duration_s}s once deployed`,
      live && !g.deployed_at ? h("button", key(`gd-${g.giveaway_id}`, { type: "button",
        onclick: () => run("giveaway_deploy", { giveaway_id: g.giveaway_id }, `Giveaway ${g.giveaway_id} deployed.`) }),
        "Deploy giveaway") : null);
  }

  function sale(s, live) {
    const stockLeft = RoomModel.stockLeft(s);
    const running = s.starts_at && !s.ended && (s.ends_at ?? 0) > Date.now();
    return h("li", { dataset: { sale: s.sale_id } },
      h("span", {}, `${s.sale_id}: ${s.product_id} at ${money(s.price_cents)} · `),
      h("span", { class: "stock-left", id: `sale-left-${s.sale_id}`, dataset: { left: stockLeft } },
        `${stockLeft} of ${s.stock} left`),
      " · ",
      running ? h("span", {}, h("span", { class: "countdown", dataset: { endsAt: s.ends_at } }, left(s.ends_at)), " to go")
        : s.ended ? h("span", {}, stockLeft === 0 ? "sold out" : "ended") : `${s.duration_s}s once deployed`,
      live && !s.starts_at ? h("button", key(`fd-${s.sale_id}`, { type: "button",
        onclick: () => run("flash_sale_deploy", { sale_id: s.sale_id }, `Flash sale ${s.sale_id} deployed.`) }),
        "Deploy flash sale") : null,
      running ? h("button", key(`fe-${s.sale_id}`, { type: "button",
        onclick: () => run("flash_sale_end", { sale_id: s.sale_id }, `Flash sale ${s.sale_id} ended.`) }),
        "End now") : null);
  }

  function list() {
    const [giveaways, sales, live] = sources();
    const g = Object.values(giveaways);
    const s = Object.values(sales);
    return [
      h("h4", {}, "Giveaways"),
      g.length ? h("ul", { id: "giveaways", class: "plain" }, g.map((x) => giveaway(x, live))) : h("p", {}, "None set up."),
      h("h4", {}, "Flash sales"),
      s.length ? h("ul", { id: "flash-sales", class: "plain" }, s.map((x) => sale(x, live))) : h("p", {}, "None set up."),
    ];
  }

  function form() {
    const g = {
      product: h("input", { id: "gw-product", required: true, autocomplete: "off" }),
      winners: h("input", { id: "gw-winners", type: "number", min: 1, max: 1000, value: "1" }),
      duration: h("input", { id: "gw-duration", type: "number", min: 1, value: "300" }),
    };
    const s = {
      product: h("input", { id: "fs-product", required: true, autocomplete: "off" }),
      price: h("input", { id: "fs-price", type: "number", min: 0, step: "0.01", value: "9.99" }),
      stock: h("input", { id: "fs-stock", type: "number", min: 1, value: "10" }),
      duration: h("input", { id: "fs-duration", type: "number", min: 1, value: "300" }),
    };
    const giveawayForm = h("form", { id: "giveaway-setup", class: "stack", onsubmit: (ev) => {
      ev.preventDefault();
      const giveaway = { giveaway_id: newId("gw"), product_id: g.product.value.trim(),
                         winners: Number(g.winners.value), duration_s: Number(g.duration.value) };
      run("giveaway_set_up", { giveaway }, `Giveaway ${giveaway.giveaway_id} set up.`).then(reload);
    } }, h("h4", {}, "Set up a giveaway"),
    h("label", { for: "gw-product" }, "Product id"), g.product,
    h("label", { for: "gw-winners" }, "Winners"), g.winners,
    h("label", { for: "gw-duration" }, "Duration (s)"), g.duration,
    h("button", { type: "submit" }, "Set up giveaway"));
    const saleForm = h("form", { id: "flash-sale-setup", class: "stack", onsubmit: (ev) => {
      ev.preventDefault();
      const sale = { sale_id: newId("fs"), product_id: s.product.value.trim(),
                     price_cents: Math.round(Number(s.price.value) * 100), stock: Number(s.stock.value),
                     duration_s: Number(s.duration.value) };
      run("flash_sale_set_up", { sale }, `Flash sale ${sale.sale_id} set up.`).then(reload);
    } }, h("h4", {}, "Set up a flash sale"),
    h("label", { for: "fs-product" }, "Product id"), s.product,
    h("label", { for: "fs-price" }, "Sale price ($)"), s.price,
    h("label", { for: "fs-stock" }, "Stock"), s.stock,
    h("label", { for: "fs-duration" }, "Duration (s)"), s.duration,
    h("button", { type: "submit" }, "Set up flash sale"));
    return h("div", { class: "forms" }, giveawayForm, saleForm);
  }

  // Pre-LIVE, the staff session is in no room: re-read the plan to see the set-up.
  const reload = () => { if (!view.model) view.reloadPlan?.(); };
  return { title: "Promotions", list, form };
}

export { when };
