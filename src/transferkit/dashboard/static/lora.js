// LoRA parameter savings: the API sends each targeted layer's d and k once (from the actual
// model); the rank slider computes r(d + k) here, so moving it updates every number at once.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const main = $("main");
  let current = null; // /api/lora's answer for the chosen model, targets and head size

  function fillModels() {
    TK.api("/api/explorers/models")
      .then((models) => $("models").replaceChildren(...models.map((m) => TK.el("option", { value: m.spec }))))
      .catch(() => {}); // the picker still takes any spec typed in
  }

  // Trainable parameters at rank r: what `transferkit lora-savings` reports as trainable_params.
  function counts(r) {
    const lora = current.layers.reduce((sum, l) => sum + r * (l.d + l.k), 0);
    const trainable = lora + current.head_params;
    return { lora, trainable, share: trainable / current.total_params, reduction: current.full_params / trainable };
  }

  function setNumber(id, value, text) {
    $(id).textContent = text === undefined ? TK.int(value) : text;
    $(id).dataset.value = String(value);
  }

  function update() {
    if (!current) return;
    const r = Number($("rank").value);
    const c = counts(r);
    $("rank-value").textContent = String(r);
    $("rank-layers").textContent = String(r);
    setNumber("lora-params", c.lora);
    setNumber("head-params", current.head_params);
    setNumber("trainable", c.trainable);
    setNumber("share", c.share, (100 * c.share).toFixed(3) + "%");
    setNumber("full-params", current.full_params);
    setNumber("reduction", c.reduction, `${c.reduction.toFixed(1)}x fewer (1/${Math.round(c.reduction)})`);
    const rows = current.layers.map((l) => [l.name, l.shape.join(" x "), TK.int(l.d), TK.int(l.k), TK.int(l.d * l.k),
      TK.int(r * (l.d + l.k)), `${((l.d * l.k) / (r * (l.d + l.k))).toFixed(1)}x`]);
    $("layers").replaceChildren(TK.table(["layer", "weight shape", "d", "k", "full: d k", `LoRA: r(d + k), r = ${r}`,
      "fewer"], rows, [2, 3, 4, 5, 6]));
  }

  async function load() {
    const query = new URLSearchParams({ model: $("model").value.trim(), targets: $("targets").value.trim(),
                                        num_classes: $("num-classes").value.trim() });
    $("error").hidden = true;
    main.dataset.state = "loading";
    $("count").disabled = true;
    try {
      current = await TK.api("/api/lora?" + query.toString());
      const range = current.rank_range;
      $("rank").min = String(range[0]);
      $("rank").max = String(range[1]);
      $("what").textContent = `${current.model}: ${current.layers.length} layers targeted (${current.targets}), ` +
        `${TK.int(current.total_params)} parameters, head ${TK.int(current.head_params)}`;
      $("savings").hidden = false;
      update();
      main.dataset.state = "ready";
    } catch (error) {
      current = null;
      $("savings").hidden = true;
      TK.showError($("error"), error);
      main.dataset.state = "error";
    } finally {
      $("count").disabled = false;
    }
  }

  // ?study=<folder id> of a lora_savings.json folder: its model and target sets.
  async function preselect(study) {
    try {
      const s = await TK.api("/api/lora/study/" + TK.enc(study));
      if (s.model) $("model").value = s.model;
      const sets = s.target_sets.filter((t) => t !== "default");
      $("target-sets").append(...sets.map((t) => TK.el("option", { value: t })));
      $("targets").value = s.target_sets[0] || "default";
      $("study-note").hidden = false;
      $("study-note").replaceChildren("Model and target sets of the study ",
        TK.el("a", { href: "/file/" + TK.enc(study) + "?name=lora_savings.png", text: study }), ".");
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  $("rank").addEventListener("input", update);
  $("choose").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  fillModels();
  (main.dataset.study ? preselect(main.dataset.study) : Promise.resolve()).then(load);
})();
