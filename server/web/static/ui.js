// ui.js - small DOM helpers the two pages share (no framework, no inline script:
// the pages' Content-Security-Policy allows scripts from this origin only).

/** Build an element: h("button", {class: "x", onclick: fn}, "text", child...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Money in cents as dollars. */
export function money(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

/** A time in ms since the epoch, local and short. */
export function when(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Announce a message in the page's status region (a live region read by screen readers). */
export function announce(text, kind = "info") {
  const region = $("#status");
  if (!region) return;
  region.dataset.kind = kind;
  region.textContent = text;
}

/** The token kept for this tab only (sessionStorage: gone when the tab closes). */
export function storedToken(key) {
  const fromHash = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(key, fromHash);
    history.replaceState(null, "", window.location.pathname); // keep it out of the address bar
  }
  return sessionStorage.getItem(key);
}

/** The claims of a JWT (not verified: for display only, the server decides). */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

/** A sign-in form: calls `onToken(token)` when submitted. */
export function signInForm(id, label, onToken) {
  const input = h("textarea", { id: `${id}-token`, rows: 3, required: true, autocomplete: "off",
                                spellcheck: "false" });
  const form = h("form", { id, class: "card signin" },
    h("h2", {}, "Sign in"),
    h("label", { for: `${id}-token` }, label),
    input,
    h("p", { class: "hint" }, "Paste a token (from ", h("code", {}, "livepilot token"),
      "). It is kept only while this tab is open."),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (token) onToken(token);
  });
  return form;
}

/** A small SVG line chart of `series` ([{t, ...}]) for each key in `lines`. */
export function lineChart(series, lines, { width = 320, height = 90, label = "chart" } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.classList.add("chart");
  if (series.length < 2) return svg;
  const t0 = series[0].t;
  const t1 = series[series.length - 1].t || t0 + 1;
  for (const { key, cls } of lines) {
    const max = Math.max(1, ...series.map((p) => p[key] ?? 0));
    const points = series.map((p) => {
      const x = ((p.t - t0) / Math.max(1, t1 - t0)) * (width - 4) + 2;
      const y = height - 2 - ((p[key] ?? 0) / max) * (height - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", cls);
    svg.append(line);
  }
  return svg;
}
