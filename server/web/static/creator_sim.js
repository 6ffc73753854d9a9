// creator_sim.js - the feed simulator on the creator's page: comments, orders, gifts and
// viewer counts sent by this page's own creator client, to rehearse a LIVE with.
// Everything it sends is marked SIMULATED on the page; on a real LIVE the streaming
// app feeds the platform's activity instead.
import { newId } from "./livepilot.js";
import { h } from "./ui.js";

const FANS = [["fan_mia", "Mia"], ["fan_leo", "Leo"], ["fan_zoe", "Zoe"], ["fan_kai", "Kai"]];
const LINES = ["love this!", "how much is it?", "does it come in blue?", "just ordered 🎉"];

export function simulatorPanel(view, command) {
  const user = h("select", { id: "sim-user" }, FANS.map(([id, name]) => h("option", { value: id }, name)));
  const viewer = () => {
    const [id, name] = FANS.find(([fid]) => fid === user.value) ?? FANS[0];
    return { unique_id: id, nickname: name };
  };
  const text = h("input", { id: "sim-text", value: LINES[0], maxlength: 2000 });
  const product = h("input", { id: "sim-product", autocomplete: "off" });
  const qty = h("input", { id: "sim-qty", type: "number", min: 1, value: "1" });
  const sale = h("input", { id: "sim-sale", autocomplete: "off", placeholder: "optional" });
  const viewers = h("input", { id: "sim-viewers", type: "number", min: 0, value: "120" });

  const comment = () => command("feed_comment", { comment_id: newId("cm"), user: viewer(), content: text.value });
  const order = () => {
    const item = view.model?.bag.find((i) => i.product_id === product.value.trim());
    const q = Number(qty.value) || 1;
    return command("feed_order", {
      order_id: newId("o"), user: viewer(), product_id: product.value.trim(), quantity: q,
      amount_cents: (item?.price_cents ?? 0) * q, ...(sale.value.trim() ? { sale_id: sale.value.trim() } : {}),
    });
  };
  let auto = 0;
  const autoButton = h("button", { type: "button", id: "sim-auto", "aria-pressed": "false" }, "Start auto feed");
  autoButton.addEventListener("click", () => {
    if (auto) {
      clearInterval(auto);
      auto = 0;
    } else {
      auto = setInterval(() => {
        user.value = FANS[Math.floor(Math.random() * FANS.length)][0];
        text.value = LINES[Math.floor(Math.random() * LINES.length)];
        if (Math.random() < 0.7) comment();
        else command("feed_viewers", { total: Math.max(1, Number(viewers.value) + Math.round(Math.random() * 20 - 8)) });
      }, 800);
    }
    autoButton.setAttribute("aria-pressed", String(Boolean(auto)));
    autoButton.textContent = auto ? "Stop auto feed" : "Start auto feed";
  });

  return h("div", { class: "simulated" },
    h("p", { class: "sim-banner" }, h("strong", {}, "SIMULATED"),
      " — activity sent from this page to rehearse; not from real viewers."),
    h("div", { class: "stack" },
      h("label", { for: "sim-user" }, "Viewer"), user,
      h("label", { for: "sim-text" }, "Comment"), text,
      h("button", { type: "button", id: "sim-comment", onclick: comment }, "Send comment"),
      h("label", { for: "sim-product" }, "Product id"), product,
      h("label", { for: "sim-qty" }, "Quantity"), qty,
      h("label", { for: "sim-sale" }, "Flash sale id"), sale,
      h("button", { type: "button", id: "sim-order", onclick: order }, "Place order"),
      h("button", { type: "button", id: "sim-gift", onclick: () => command("feed_gift", {
        user: viewer(), gift_id: 5655, gift_name: "Rose", repeat_count: 3 }) }, "Send gift"),
      h("button", { type: "button", id: "sim-follow", onclick: () => command("feed_follow", { user: viewer() }) }, "Follow"),
      h("button", { type: "button", id: "sim-sub", onclick: () => command("feed_subscription", { user: viewer(), month: 1 }) }, "Subscribe"),
      h("label", { for: "sim-viewers" }, "Viewers"), viewers,
      h("button", { type: "button", id: "sim-set-viewers", onclick: () => command("feed_viewers", { total: Number(viewers.value) }) }, "Set viewer count"),
      autoButton));
}
