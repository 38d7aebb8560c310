// Shared helpers of every dashboard page: the JSON API, DOM building without innerHTML (text
// from run folders is never parsed as HTML), number formats and uPlot line charts.
"use strict";
const TK = (() => {
  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  function post(path, values) {
    return api(path, { method: "POST", headers: { "content-type": "application/json" },
                       body: JSON.stringify(values || {}) });
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const num = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : (100 * v).toFixed(digits) + "%");
  const int = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 90) return v.toFixed(1) + " s";
    if (v < 5400) return (v / 60).toFixed(1) + " min";
    return (v / 3600).toFixed(1) + " h";
  }
  function when(epochSeconds) {  // local time, "2026-11-30 05:59"
    if (!epochSeconds) return "–";
    const d = new Date(epochSeconds * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
  }
  function showError(box, error) {
    box.hidden = false;
    box.textContent = error && error.message ? error.message : String(error);
  }
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  // Axis options: {xLabel, yLabel}; xIntegers: ticks on whole numbers only (epochs, depths);
  // yExponent: tick labels as 1.0e-4 (learning rates, which fixed decimals print as 0.001, 0.001).
  function axis(options, which) {
    const o = options || {};
    const result = { label: (which === "x" ? o.xLabel : o.yLabel) || "" };
    if (which === "x" && o.xIntegers) result.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
    if (which === "y" && o.yExponent) {
      result.values = (u, ticks) => ticks.map((v) => (v === null ? "" : v.toExponential(1)));
      result.size = 70;
    }
    return result;
  }
  // A uPlot line chart: xs and one array per series ({label, values, dash, points}).
  function chart(target, title, xs, series, options) {
    target.replaceChildren();
    const opts = Object.assign({
      title, width: Math.max(320, Math.min(target.clientWidth || 560, 640)), height: 260,
      scales: { x: { time: false } }, axes: [axis(options, "x"), axis(options, "y")],
      series: [{ label: (options && options.xLabel) || "x" }].concat(series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, dash: s.dash,
        points: { show: s.points !== false, size: 5 }, spanGaps: true,
      }))),
    }, (options && options.uplot) || {});
    return new uPlot(opts, [xs].concat(series.map((s) => s.values)), target);
  }
  function table(headers, rows, numeric) {
    const isNum = new Set(numeric || []);
    return el("table", { class: "data" },
      el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { class: isNum.has(i) ? "num" : null, text: h })))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell, i) =>
        el("td", { class: isNum.has(i) ? "num" : null }, cell instanceof Node ? cell : (cell === null || cell === undefined ? "–" : String(cell))))))));
  }
  const folderId = () => document.getElementById("main").dataset.folderId;
  const enc = (id) => id.split("/").map(encodeURIComponent).join("/");
  return { api, post, el, num, pct, int, secs, when, showError, chart, table, folderId, enc, COLORS };
})();
