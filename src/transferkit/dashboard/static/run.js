// A run's page: overview, live loss/accuracy/learning-rate curves (server-sent events from
// metrics.jsonl), phase changes and unfreezing marked, then test metrics, confusion matrix and
// per-class recall once the run has finished.
"use strict";
(() => {
  const id = TK.folderId();
  const records = [];
  let details = null;
  let source = null;

  // Vertical markers at phase changes and unfreezing steps (x = the epoch's place on the charts,
  // which leave out the L-BFGS head's sweep steps: those are not epochs).
  function markers(epochRecords) {
    const marks = [];
    epochRecords.forEach((r, i) => {
      if (i > 0 && r.phase !== epochRecords[i - 1].phase) marks.push({ x: i + 1, label: `phase: ${r.phase}`, color: "#555" });
      for (const e of r.events || []) {
        if (e.kind === "unfrozen") marks.push({ x: i + 1, label: e.message, color: "#2ca02c" });
        if (e.kind === "overfitting") marks.push({ x: i + 1, label: e.message, color: "#d62728", kind: "overfitting" });
        if (e.kind === "early-stop") marks.push({ x: i + 1, label: e.message, color: "#ff7f0e" });
      }
    });
    return marks;
  }
  function markerPlugin(marks) {
    return { hooks: { draw: [(u) => {
      const ctx = u.ctx;
      ctx.save();
      for (const m of marks) {
        const x = u.valToPos(m.x - 0.5, "x", true);
        ctx.strokeStyle = m.color; ctx.setLineDash([4, 4]); ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      }
      ctx.restore();
    }] } };
  }
  function drawCharts() {
    const epochRecords = records.filter((r) => r.phase !== "head-lbfgs");
    const xs = epochRecords.map((_, i) => i + 1);
    const marks = markers(epochRecords);
    const opts = { xLabel: "epoch (all phases)", xIntegers: true, uplot: { plugins: [markerPlugin(marks)] } };
    const pick = (key) => epochRecords.map((r) => r[key]);
    const lossBox = document.getElementById("chart-loss");
    const accBox = document.getElementById("chart-accuracy");
    TK.chart(lossBox, "Loss", xs, [{ label: "train loss", values: pick("train_loss") },
                                   { label: "validation loss", values: pick("val_loss") }], Object.assign({ yLabel: "loss" }, opts));
    TK.chart(accBox, "Accuracy", xs, [{ label: "train accuracy", values: pick("train_accuracy") },
                                       { label: "validation accuracy", values: pick("val_accuracy") }], Object.assign({ yLabel: "accuracy" }, opts));
    accBox.dataset.valPoints = String(epochRecords.filter((r) => r.val_accuracy !== null).length);
    const groups = [];
    for (const r of epochRecords) for (const g of Object.keys(r.lrs || {})) if (!groups.includes(g)) groups.push(g);
    const lrBox = document.getElementById("chart-lr");
    if (groups.length) {
      TK.chart(lrBox, "Learning rate per layer group", xs, groups.map((g) => ({
        label: g, values: epochRecords.map((r) => (r.lrs && g in r.lrs ? r.lrs[g] : null)) })),
        Object.assign({ yLabel: "learning rate", yExponent: true }, opts));
    }
    const list = document.getElementById("events");
    list.replaceChildren(...marks.map((m) => TK.el("div", { class: m.kind === "overfitting" ? "event warn overfitting" : "event" },
      TK.el("b", { text: `epoch ${m.x}: ` }), m.label)));
    const lbfgs = records.filter((r) => r.phase === "head-lbfgs");
    if (lbfgs.length) list.append(TK.el("div", { class: "muted", text: `L-BFGS head: ${lbfgs.length} regularisation strengths tried` }));
  }
  function overview(s) {
    const box = document.getElementById("overview");
    box.replaceChildren(TK.table(["model", "strategy", "data", "status", "epochs", "test accuracy", "macro-F1", "trainable params", "time"],
      [[s.model, s.strategy, s.data, TK.el("span", { id: "run-status", class: `status ${s.status}`, text: s.status }), s.epochs,
        TK.num(s.accuracy), TK.num(s.macro_f1), TK.int(s.trainable_params), TK.secs(s.seconds)]], [4, 5, 6, 7]));
    if (s.error) box.append(TK.el("p", { class: "error", text: `Failed: ${s.error}` }));
    if (s.parent_id) box.append(TK.el("p", {}, "Part of ", TK.el("a", { href: `/compare/${TK.enc(s.parent_id)}`, text: "a comparison" })));
  }
  function results(m) {
    if (!m) return;
    document.getElementById("results").hidden = false;
    document.getElementById("metrics").replaceChildren(TK.table(["accuracy", "macro-F1", "balanced accuracy", "examples", "epochs", "epochs to best"],
      [[TK.num(m.accuracy), TK.num(m.macro_f1), TK.num(m.balanced_accuracy), m.n, m.epochs, m.epochs_to_best]], [0, 1, 2, 3, 4, 5]));
    const classes = m.classes || [];
    document.getElementById("confusion").replaceChildren(TK.table(["true \\ predicted", ...classes],
      (m.confusion_matrix || []).map((row, i) => [classes[i], ...row]), classes.map((_, i) => i + 1)));
    document.getElementById("recall").replaceChildren(TK.table(["class", "recall", "support"],
      Object.entries(m.per_class || {}).map(([c, v]) => [c, TK.num(v.recall), v.support]), [1, 2]));
    for (const w of m.warnings || []) document.getElementById("events").append(TK.el("div", { class: "warn", text: w }));
  }
  function files(list) {
    const ul = document.getElementById("files");
    ul.replaceChildren(...list.map((name) => TK.el("li", {}, TK.el("a", { href: `/file/${TK.enc(id)}?name=${encodeURIComponent(name)}`, text: name }))));
    document.getElementById("link-report").hidden = !list.includes("report.html");
  }
  async function load() {
    try {
      details = await TK.api(`/api/run/${TK.enc(id)}`);
    } catch (e) { TK.showError(document.getElementById("error"), e); return; }
    records.splice(0, records.length, ...details.records);
    overview(details.summary);
    document.getElementById("config").textContent = details.config_text || "";
    document.getElementById("spec").textContent = JSON.stringify(details.model_spec, null, 2);
    files(details.files);
    drawCharts();
    results(details.test_metrics);
    if (details.summary.status === "running" && !source) follow();
  }
  function follow() {
    source = new EventSource(`/api/events/run/${TK.enc(id)}?after=${records.length}`);
    source.addEventListener("epoch", (event) => {
      const data = JSON.parse(event.data);
      if (data.index === records.length) { records.push(data.record); drawCharts(); }
    });
    source.addEventListener("status", (event) => {
      const el = document.getElementById("run-status");
      if (el) { const s = JSON.parse(event.data).status; el.textContent = s; el.className = `status ${s}`; }
    });
    source.addEventListener("end", () => { source.close(); source = null; load(); });
  }
  load();
})();
