// Layer transferability: the studies under the roots, and one study's linear-probe accuracy after
// each layer group, pre-trained against random initialisation (transferability.json).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const id = TK.folderId();

  async function list() {
    try {
      const { studies } = await TK.api("/api/transferability");
      $("studies").replaceChildren(studies.length ? TK.table(["study", "model", "data", "time", "modified"], studies.map((s) => [
        TK.el("a", { href: "/transferability/" + TK.enc(s.id), text: s.name }), s.model, s.data, TK.secs(s.seconds), TK.when(s.modified)]))
        : TK.el("p", { class: "muted", text: "No transferability study under the dashboard's roots yet." }));
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  function overview(s) {
    const facts = [["model", s.model], ["data", s.data], ["probe training examples per class", s.per_class],
      ["train / val / test examples", `${s.n_train} / ${s.n_val} / ${s.n_test}`], ["chance", TK.num(s.chance, 3)],
      ["best depth", s.best_group ? `${s.best_group} (depth ${s.best_depth}, ${TK.num(s.best_accuracy)})` : "–"],
      ["time", TK.secs(s.seconds)]];
    // One line of facts, so the chart stays in view.
    $("overview").replaceChildren(TK.el("p", {}, ...facts.map(([key, value], i) => [i ? " · " : "",
      TK.el("span", { class: "muted", text: `${key}: ` }), String(value)])));
  }

  function chart(s) {
    const groups = s.groups && s.groups.length ? s.groups : [...new Set(s.points.map((p) => p.group))];
    const xs = groups.map((_, i) => i + 1);
    const curve = (init) => xs.map((d) => { const p = s.points.find((q) => q.init === init && q.depth === d); return p ? p.test_accuracy : null; });
    const series = [{ label: "pre-trained weights", values: curve("pretrained") }];
    if (s.points.some((p) => p.init === "random")) series.push({ label: "random init (control)", values: curve("random"), dash: [6, 4] });
    series.push({ label: "chance", values: xs.map(() => s.chance), dash: [2, 4], points: false, color: "#7f7f7f" });
    const box = $("chart");
    TK.chart(box, "Linear-probe test accuracy after each layer group", xs, series, {
      xLabel: "features after layer group", yLabel: "test accuracy",
      uplot: { width: Math.max(560, Math.min(box.clientWidth || 900, 1000)), height: 320,
               scales: { x: { time: false, range: [0.7, xs.length + 0.3] }, y: { range: [0, 1] } },
               axes: [{ label: "features after layer group", splits: () => xs, size: 60, rotate: -30,
                        values: (u, splits) => splits.map((v) => groups[v - 1] || "") },
                      { label: "test accuracy" }] },
    });
    box.dataset.points = String(s.points.length);
  }

  async function study() {
    try {
      const s = await TK.api("/api/transferability/" + TK.enc(id));
      overview(s);
      chart(s);
      $("summary-text").textContent = s.text || "";
      const random = Object.fromEntries(s.points.filter((p) => p.init === "random").map((p) => [p.group, p.test_accuracy]));
      $("points").replaceChildren(TK.table(["depth", "group", "init", "features", "val accuracy", "test accuracy", "gain over random"],
        s.points.map((p) => [p.depth, p.group, p.init, TK.int(p.features), TK.num(p.val_accuracy), TK.num(p.test_accuracy),
          p.init === "pretrained" && p.group in random ? TK.num(p.test_accuracy - random[p.group]) : "–"]), [0, 3, 4, 5, 6]));
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  (id ? study : list)();
})();
