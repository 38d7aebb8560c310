// A run drawn as its pipeline: data -> preprocessing -> backbone layer groups (frozen, LoRA-adapted
// or trained, with parameter counts) -> head -> exports.
"use strict";
(() => {
  const id = TK.folderId();
  const STATUS_TEXT = { frozen: "frozen", lora: "LoRA-adapted", trained: "trained" };

  const arrow = () => TK.el("div", { class: "arrow", text: "→" });
  function stage(title, cls, ...lines) {
    return TK.el("div", { class: `stage ${cls || ""}` }, TK.el("b", { text: title }),
      ...lines.filter((l) => l !== null && l !== undefined).map((l) => TK.el("div", { class: "line" }, l)));
  }
  function groupStage(g) {
    const lines = [STATUS_TEXT[g.status], g.params === null ? null : `${TK.int(g.params)} params`];
    if (g.status === "lora") lines.push(`${TK.int(g.trainable_params)} LoRA params, ${g.lora_layers} layers`);
    if (g.unfrozen_epoch) lines.push(`unfrozen at epoch ${g.unfrozen_epoch}`);
    const box = stage(g.name, g.status, ...lines);
    box.dataset.group = g.name;
    box.dataset.status = g.status;
    return box;
  }
  function draw(p) {
    const d = p.data;
    const data = stage("data", "", d.data, `${d.classes.length} classes` + (d.classes.length <= 6 ? `: ${d.classes.join(", ")}` : ""),
      d.per_class ? `${d.per_class} per class` : "all examples",
      d.val_fraction === null ? null : `val ${d.val_fraction}, test ${d.test_fraction}, seed ${d.seed}`,
      d.test_examples ? `${d.test_examples} test examples` : null);
    data.id = "stage-data";
    const pre = stage(`preprocessing (${p.modality || "?"})`, "", ...p.preprocessing.map((s) => `${s.step}: ${s.value}`));
    pre.id = "stage-preprocessing";
    const backbone = TK.el("div", { id: "stage-backbone", class: "stage backbone" }, TK.el("b", { text: `backbone: ${p.model}` }),
      TK.el("div", { class: "pipeline" }, p.backbone.map(groupStage)));
    const h = p.head;
    const head = stage("head", h.status || "trained", `Linear ${h.in_features} → ${h.classes}`,
      h.params === null || h.params === undefined ? null : `${TK.int(h.params)} params`, STATUS_TEXT[h.status || "trained"]);
    head.id = "stage-head";
    head.dataset.group = "head";
    head.dataset.status = h.status || "trained";
    const exports = stage("exports", "", ...(p.exports.length ? p.exports.map((e) =>
      TK.el("a", { href: `/file/${TK.enc(id)}?name=${encodeURIComponent(e.file)}`, text: `${e.format}: ${e.file}` + (e.size_mb === null ? "" : ` (${e.size_mb} MB)`) }))
      : [TK.el("a", { href: `/export/${TK.enc(id)}`, text: "none yet: export" })]));
    exports.id = "stage-exports";
    document.getElementById("pipeline").replaceChildren(data, arrow(), pre, arrow(), backbone, arrow(), head, arrow(), exports);
  }
  function groupsTable(p) {
    const rows = p.backbone.concat([Object.assign({ name: "head" }, p.head)]).map((g) => [g.name,
      TK.el("span", { class: `status ${g.status}`, text: STATUS_TEXT[g.status] || g.status }), TK.int(g.params),
      TK.int(g.trainable_params), g.status === "lora" ? g.lora_layers : "–",
      g.peak_lr === null || g.peak_lr === undefined ? "–" : Number(g.peak_lr).toExponential(2), g.unfrozen_epoch || "–"]);
    return TK.table(["layer group", "status", "parameters", "trained parameters", "LoRA layers", "peak learning rate", "unfrozen at epoch"], rows, [2, 3, 4, 5, 6]);
  }
  async function load() {
    let p;
    try { p = await TK.api(`/api/pipeline/${TK.enc(id)}`); } catch (e) { TK.showError(document.getElementById("error"), e); return; }
    document.getElementById("headline").textContent = `${p.strategy || "?"} on ${p.model}` + (p.status ? ` (${p.status})` : "");
    draw(p);
    document.getElementById("groups").replaceChildren(groupsTable(p));
    document.getElementById("totals").textContent = p.trainable_params === null ? "" :
      `${TK.int(p.trainable_params)} of ${TK.int(p.total_params)} parameters trained (${TK.pct(p.trainable_params / p.total_params, 2)}).`;
    const note = document.getElementById("model-note");
    note.hidden = !p.model_error;
    note.textContent = p.model_error ? `Parameter counts unavailable: ${p.model_error}` : "";
    if (p.status === "running") setTimeout(load, 3000);
  }
  load();
})();
