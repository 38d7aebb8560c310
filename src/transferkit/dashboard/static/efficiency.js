// Transfer efficiency: the studies under the roots and a form that starts one (a job), and one
// study's accuracy against examples per class (log axis) per method: mean line, min-max band over
// seeds and every seed as a dot; hovering a size lists its points and their runs.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const id = TK.folderId();

  // -- the list and the "new study" form ----------------------------------------------------------
  async function list() {
    try {
      const { studies } = await TK.api("/api/efficiency");
      $("studies").replaceChildren(studies.length ? TK.table(["study", "model", "data", "status", "time", "modified"], studies.map((s) => [
        TK.el("a", { href: "/efficiency/" + TK.enc(s.id), text: s.name }), s.model, s.data,
        s.status === "finished" ? "finished" : "stopped before its summary", TK.secs(s.seconds), TK.when(s.modified)]))
        : TK.el("p", { class: "muted", text: "No efficiency study under the dashboard's roots yet: start one below." }));
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  async function startStudy(event) {
    event.preventDefault();
    const value = (name) => $(name).value.trim();
    const options = { model: value("model"), data: value("data"), per_class: value("per-class"),
                      seeds: Number(value("seeds")), time_budget: Number(value("time-budget")) };
    $("form-error").hidden = true;
    $("queued").hidden = true;
    $("start").disabled = true;
    try {
      const job = await TK.post("/api/jobs", { command: "efficiency", options });
      $("queued").hidden = false;
      $("queued").replaceChildren(`Study queued${job && job.id ? ` (job ${job.id})` : ""}: it appears in the list above and on the `,
        TK.el("a", { href: "/", text: "Runs page" }), " once it writes its first point.");
      list();
    } catch (error) {
      TK.showError($("form-error"), error);
    } finally {
      $("start").disabled = false;
    }
  }

  // -- one study -----------------------------------------------------------------------------------
  const colorOf = (methods, m) => TK.COLORS[methods.indexOf(m) % TK.COLORS.length];

  function overview(d) {
    const s = d.summary || {};
    const first = d.points[0] || {};
    const facts = [["model", s.model || "–"], ["data", s.data || "–"], ["methods", d.methods.join(", ")],
      ["seeds", s.seeds ? s.seeds.join(", ") : [...new Set(d.points.map((p) => p.seed))].join(", ")],
      ["examples per class", (s.per_class || [...new Set(d.points.map((p) => p.per_class))]).join(", ")],
      ["classes / test examples", s.classes ? `${s.classes} / ${s.n_test}` : "–"],
      ["end-to-end image size", s.image_size || first.image_size || "–"], ["time", TK.secs(s.seconds)],
      ["status", d.finished ? "finished" : `stopped before its summary: ${d.points.length} points so far`]];
    // One line of facts, so the chart stays in view.
    $("overview").replaceChildren(TK.el("p", {}, ...facts.map(([key, value], i) => [i ? " · " : "",
      TK.el("span", { class: "muted", text: `${key}: ` }), String(value)])));
  }

  // Bands (min-max over seeds) and seed dots, drawn on the plot's canvas after the lines.
  function bandsPlugin(d, xs) {
    return { hooks: { draw: [(u) => {
      const ctx = u.ctx;
      const X = (v) => u.valToPos(v, "x", true);
      const Y = (v) => u.valToPos(v, "y", true);
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      for (const m of d.methods) {
        const curve = (d.curves[m] || []).filter((c) => xs.includes(c.per_class));
        const color = colorOf(d.methods, m);
        if (curve.length) {
          ctx.globalAlpha = 0.15;
          ctx.fillStyle = color;
          ctx.beginPath();
          curve.forEach((c, i) => (i ? ctx.lineTo(X(c.per_class), Y(c.max)) : ctx.moveTo(X(c.per_class), Y(c.max))));
          [...curve].reverse().forEach((c) => ctx.lineTo(X(c.per_class), Y(c.min)));
          ctx.closePath();
          ctx.fill();
        }
        ctx.globalAlpha = 0.6;
        ctx.fillStyle = color;
        for (const p of d.points) {
          if (p.method !== m || p.accuracy === null || p.accuracy === undefined) continue;
          ctx.beginPath();
          ctx.arc(X(p.per_class), Y(p.accuracy), 3 * devicePixelRatio, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      ctx.restore();
    }] } };
  }

  // The points at the hovered size: method, examples per class, seed, accuracy and run (a link).
  function showHover(d, size) {
    const points = d.points.filter((p) => p.per_class === size);
    $("hover").dataset.perClass = String(size);
    $("hover").replaceChildren(TK.el("b", { text: `${size} examples per class` }), ...points.map((p) => TK.el("div", { class: "event point" },
      TK.el("span", { text: p.method }), ` · ${p.per_class}/class · seed ${p.seed} · accuracy `,
      TK.el("b", { text: p.accuracy === null || p.accuracy === undefined ? (p.status || "–") : TK.num(p.accuracy) }),
      p.run_id ? [" · ", TK.el("a", { href: "/run/" + TK.enc(p.run_id), text: "open its run" })] : " · no run folder (trained in the study's process)")));
  }

  function chart(d) {
    const xs = [...new Set(d.points.filter((p) => p.accuracy !== null && p.accuracy !== undefined).map((p) => p.per_class))].sort((a, b) => a - b);
    if (!xs.length) { $("chart").replaceChildren(TK.el("p", { class: "muted", text: "No point has finished yet." })); return; }
    const series = d.methods.map((m) => {
      const byX = Object.fromEntries((d.curves[m] || []).map((c) => [c.per_class, c.mean]));
      return { label: `${m} (mean)`, values: xs.map((x) => (x in byX ? byX[x] : null)), color: colorOf(d.methods, m) };
    });
    const box = $("chart");
    let last = null;
    TK.chart(box, "Test accuracy against training examples per class (log scale)", xs, series, {
      xLabel: "examples per class", yLabel: "test accuracy",
      uplot: { width: Math.max(560, Math.min(box.clientWidth || 900, 1000)), height: 360,
               scales: { x: { time: false, distr: 3, range: (u, lo, hi) => [lo / 1.4, hi * 1.4] }, y: { range: [0, 1] } },
               // every size tried is a tick; uPlot's log axis would otherwise blank the ones not 1, 2 or 5 x 10^n
               axes: [{ label: "examples per class (log scale)", splits: () => xs, filter: (u, splits) => splits,
                        values: (u, splits) => splits.map((v) => (v === null ? "" : String(v))) },
                      { label: "test accuracy" }],
               plugins: [bandsPlugin(d, xs)],
               hooks: { setCursor: [(u) => {
                 const i = u.cursor.idx;
                 if (i !== null && i !== undefined && xs[i] !== last) { last = xs[i]; showHover(d, xs[i]); }
               }] } },
    });
    box.dataset.sizes = xs.join(",");
  }

  function multipliers(d) {
    const lines = d.headline.length ? d.headline : d.multipliers.map((m) => m.text);
    $("headline").replaceChildren(...(lines.length ? lines : ["No transfer or no from-scratch points to compare."]).map((t) => TK.el("li", { text: t })));
    const sign = { "=": "", ">": "more than ", "<=": "at most ", none: "" };
    $("multipliers").replaceChildren(TK.table(["method", "per class", "mean accuracy", "scratch needs (per class)", "data multiplier"],
      d.multipliers.map((m) => [m.method, m.per_class, TK.num(m.accuracy), m.scratch_per_class === null ? "–" : `${sign[m.relation] || ""}${m.scratch_per_class}`,
        m.multiplier === null ? "–" : `${sign[m.relation] || ""}${m.multiplier}x`]), [1, 2, 3, 4]));
  }

  async function study() {
    try {
      const d = await TK.api("/api/efficiency/" + TK.enc(id));
      overview(d);
      chart(d);
      multipliers(d);
      $("points").replaceChildren(TK.table(["method", "per class", "seed", "status", "test accuracy", "val accuracy", "epochs", "seconds", "run"],
        d.points.map((p) => [p.method, p.per_class, p.seed, p.status, TK.num(p.accuracy), TK.num(p.val_accuracy),
          p.epochs === undefined ? "–" : p.epochs, TK.secs(p.seconds),
          p.run_id ? TK.el("a", { href: "/run/" + TK.enc(p.run_id), text: "run" }) : "–"]), [1, 2, 4, 5, 6, 7]));
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  if (id) {
    study();
  } else {
    list();
    TK.api("/api/explorers/models")
      .then((models) => $("models").replaceChildren(...models.map((m) => TK.el("option", { value: m.spec }))))
      .catch(() => {});
    $("new-study").addEventListener("submit", startStudy);
  }
})();
