// A comparison: the strategy table (best row bold, a button to open each run) and validation
// accuracy against cumulative epoch seconds, one line per strategy.
"use strict";
(() => {
  const id = TK.folderId();

  function strategyTable(rows) {
    const headers = ["strategy", "run", "status", "test accuracy", "macro-F1", "trainable", "total params",
                     "seconds", "peak MB", "epochs to best"];
    const cells = rows.map((r) => [r.strategy,
      r.run_id ? TK.el("a", { class: "button open-run", href: `/run/${TK.enc(r.run_id)}`, text: "Open run" }) : "–",
      r.same_run_as ? `${r.status} (same run as ${r.same_run_as})` : r.status, TK.num(r.accuracy), TK.num(r.macro_f1), TK.int(r.trainable_params), TK.int(r.total_params),
      TK.secs(r.seconds), r.peak_memory_mb === null ? "–" : Number(r.peak_memory_mb).toFixed(1), r.epochs_to_best]);
    const table = TK.table(headers, cells, [3, 4, 5, 6, 7, 8, 9]);
    table.id = "strategy-table";
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      tr.dataset.strategy = rows[i].strategy;
      if (rows[i].best) tr.classList.add("best");
    });
    return table;
  }

  // uPlot wants one x array: the union of every run's x values, each series null elsewhere.
  function accuracyChart(curves) {
    const box = document.getElementById("chart-compare");
    const withPoints = curves.filter((c) => c.seconds.length);
    if (!withPoints.length) { box.replaceChildren(TK.el("p", { class: "muted", text: "No epochs recorded yet." })); return; }
    const xs = [...new Set(withPoints.flatMap((c) => c.seconds))].sort((a, b) => a - b);
    const series = withPoints.map((c) => {
      const at = new Map(c.seconds.map((x, i) => [x, c.val_accuracy[i]]));
      return { label: c.strategy, values: xs.map((x) => (at.has(x) ? at.get(x) : null)) };
    });
    TK.chart(box, "Validation accuracy", xs, series, {
      xLabel: "cumulative epoch seconds", yLabel: "validation accuracy",
      uplot: { scales: { x: { time: false }, y: { range: [0, 1.02] } } } });
    box.dataset.series = String(series.length);
  }

  async function load() {
    let data;
    try { data = await TK.api(`/api/compare/${TK.enc(id)}`); } catch (e) { TK.showError(document.getElementById("error"), e); return; }
    document.getElementById("settings").textContent = [data.settings, data.status && `status: ${data.status}`]
      .filter(Boolean).join(" · ");
    document.getElementById("strategies").replaceChildren(strategyTable(data.rows),
      data.best ? TK.el("p", {}, "Best: ", TK.el("b", { id: "best", text: data.best })) : TK.el("p", { class: "muted", text: "No strategy finished yet." }));
    accuracyChart(data.curves);
    if (data.status === "running") setTimeout(load, 2000);
  }
  load();
})();
