// Engine status page: re-reads /api/status every few seconds and updates the
// cards in place, so the fill bar moves without a page reload.
(function () {
  "use strict";
  const box = document.getElementById("engines");
  if (!box) return;
  const url = box.dataset.url;
  const every = Math.max(500, parseInt(box.dataset.refreshMs, 10) || 2000);
  const stamp = document.getElementById("status-updated");
  // name -> {drops, at}: the drop rate is the change between two heartbeats.
  const previous = new Map();
  box.querySelectorAll("[data-engine][data-heartbeat]").forEach((card) => {
    previous.set(card.dataset.engine, { drops: Number(card.dataset.drops), at: Date.parse(card.dataset.heartbeat) });
  });
  const number = new Intl.NumberFormat("en-US");
  const FIELDS = [
    ["Queries/s", "qps"], ["Queries", "queries_total"], ["Written", "written"],
    ["Write rate", "write_rate", "/s"], ["Drops", "drops"], ["Drop rate", "drop_rate", "/s"],
    ["Drop share", "drop_pct", " %"], ["Write errors", "write_errors"], ["Writers", "workers"],
    ["Mode", "mode"], ["Threads", "threads"], ["Config generation", "generation"],
    ["Host", "hostname"], ["Pid", "pid"], ["Metrics", "metrics_url"],
  ];

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function buildCard(name) {
    // Same structure as templates/dnsengine/_engine_card.html, for an engine that appeared after page load.
    const card = el("article", { class: "card engine", "data-engine": name });
    const head = el("header");
    head.append(el("h2", { "data-field": "name" }, name), el("span", { class: "badge state", "data-field": "state" }));
    const age = el("span", { class: "muted" }, "heartbeat ");
    age.append(el("span", { "data-field": "heartbeat_age" }), document.createTextNode(" s ago"));
    head.append(age);
    const label = el("div", { class: "bar-label" }, "Query-log buffer ");
    label.append(el("span", { "data-field": "buffer_size" }), document.createTextNode(" / "),
      el("span", { "data-field": "buffer_capacity" }), document.createTextNode(" ("),
      el("span", { "data-field": "fill_pct" }), document.createTextNode(" %)"));
    const bar = el("meter", { class: "bar", "aria-label": "Query-log buffer fill", min: "0", max: "100",
      low: "50", high: "90", optimum: "0", value: "0", "data-field": "bar" });
    const dl = el("dl", { class: "figures" });
    for (const [title, field, unit] of FIELDS) {
      const row = el("div");
      const dd = el("dd");
      dd.append(el(field === "metrics_url" ? "a" : "span", { "data-field": field }));
      if (unit) dd.append(document.createTextNode(unit));
      row.append(el("dt", {}, title), dd);
      dl.append(row);
    }
    card.append(head, label, bar, dl);
    return card;
  }

  function set(card, field, value) {
    card.querySelectorAll(`[data-field="${field}"]`).forEach((node) => {
      node.textContent = value;
    });
  }

  // The worker processes of a `rundns --processes N` engine: rows rebuilt on each refresh.
  function processRows(card, list) {
    const body = card.querySelector('[data-field="process_list"]');
    if (!body || !list) return;
    body.replaceChildren(...list.map((p) => {
      const row = el("tr", { "data-process": p.name });
      row.classList.toggle("down", p.down);
      const metrics = el("td");
      if (p.metrics_url) metrics.append(el("a", { href: p.metrics_url }, p.metrics_url));
      else metrics.textContent = "off";
      row.append(el("td", {}, p.name), el("td", {}, p.down ? "down" : "up"),
        el("td", {}, p.heartbeat_age.toFixed(1) + " s ago"), el("td", {}, String(p.pid)),
        el("td", {}, p.qps.toFixed(1)), el("td", {}, number.format(p.queries_total)),
        el("td", {}, number.format(p.written)), el("td", {}, number.format(p.drops)), metrics);
      return row;
    }));
  }

  function update(engine) {
    let card = box.querySelector(`[data-engine="${CSS.escape(engine.name)}"]`);
    if (!card) {
      const empty = document.getElementById("no-engines");
      if (empty) empty.remove();
      card = buildCard(engine.name);
      box.append(card);
    }
    card.classList.toggle("down", engine.down);
    set(card, "state", engine.down ? "down" : "up");
    set(card, "heartbeat_age", engine.heartbeat_age.toFixed(1));
    const fill = Math.max(0, Math.min(100, engine.fill_pct));
    // A <meter>: its value sets the length and, by region, the colour; no style attribute.
    const bar = card.querySelector('[data-field="bar"]');
    bar.value = fill;
    bar.textContent = fill.toFixed(1) + " %";
    set(card, "fill_pct", fill.toFixed(1));
    for (const field of ["buffer_size", "buffer_capacity", "queries_total", "written", "drops", "write_errors"]) {
      set(card, field, number.format(engine[field]));
    }
    set(card, "qps", engine.qps.toFixed(1));
    set(card, "write_rate", engine.write_rate.toFixed(1));
    set(card, "drop_pct", engine.drop_pct.toFixed(3));
    for (const field of ["workers", "mode", "threads", "generation", "hostname", "pid"]) {
      set(card, field, String(engine[field]));
    }
    set(card, "processes", String(engine.processes));
    processRows(card, engine.process_list);
    const link = card.querySelector('a[data-field="metrics_url"]');
    if (link && engine.metrics_url) {
      link.href = engine.metrics_url;
      link.textContent = engine.metrics_url;
    }
    const at = Date.parse(engine.heartbeat_at);
    const before = previous.get(engine.name);
    if (before && at > before.at) {
      const rate = Math.max(0, engine.drops - before.drops) / ((at - before.at) / 1000);
      set(card, "drop_rate", rate.toFixed(1));
    }
    if (!before || at !== before.at) previous.set(engine.name, { drops: engine.drops, at: at });
  }

  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401 || response.status === 403) {
        stamp.textContent = "signed out: reload the page to log in again";
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      data.engines.forEach(update);
      stamp.textContent = "updated " + new Date().toLocaleTimeString();
      box.dataset.updates = String((parseInt(box.dataset.updates, 10) || 0) + 1);
    } catch (err) {
      stamp.textContent = "refresh failed (" + err.message + "), retrying";
    }
    window.setTimeout(refresh, every);
  }

  window.setTimeout(refresh, every);
})();
