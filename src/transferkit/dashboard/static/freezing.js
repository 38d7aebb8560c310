// Layer freezing: trainable parameters as layer groups are frozen from the stem up (counted on
// the actual model), and the measured accuracy at each depth of this model's freezing studies.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const main = $("main");
  let current = null; // /api/freezing's answer: rows (one per depth) and studies

  function fillModels() {
    TK.api("/api/explorers/models")
      .then((models) => $("models").replaceChildren(...models.map((m) => TK.el("option", { value: m.spec }))))
      .catch(() => {}); // the picker still takes any spec typed in
  }

  // The first study that measured this depth: [accuracy, study].
  function measured(k) {
    for (const s of current.studies) {
      const row = s.rows.find((r) => r.frozen_groups === k && r.accuracy !== null && r.accuracy !== undefined);
      if (row) return [row, s];
    }
    return [null, null];
  }

  function setNumber(id, value, text) {
    $(id).textContent = text === undefined ? TK.int(value) : text;
    $(id).dataset.value = String(value);
  }

  function update() {
    if (!current) return;
    const k = Number($("depth").value);
    const row = current.rows[k];
    $("depth-value").textContent = String(k);
    const names = current.rows[0].trainable; // every group, stem ... head
    $("groups").replaceChildren(...names.map((name, i) => TK.el("div", { class: `stage ${i < k ? "frozen" : "trained"}` },
      TK.el("b", { text: name }), TK.el("div", { class: "muted", text: i < k ? "frozen" : "trains" }))));
    $("frozen-names").textContent = row.frozen.length ? row.frozen.join(", ") : "nothing (full fine-tuning)";
    setNumber("trainable", row.trainable_params);
    setNumber("share", row.share, (100 * row.share).toFixed(1) + "%");
    setNumber("total", row.total_params);
    const [hit, study] = measured(k);
    $("accuracy").replaceChildren(hit ? TK.el("span", {}, TK.num(hit.accuracy), ` (${study.data}, `,
      hit.run_id ? TK.el("a", { href: "/run/" + TK.enc(hit.run_id), text: hit.strategy || "run" }) : (hit.strategy || "run"), ")")
      : "– (no freezing study of this model measured it)");
    $("accuracy").dataset.value = hit ? String(hit.accuracy) : "";
    for (const tr of $("depths").querySelectorAll("tbody tr")) tr.classList.toggle("best", Number(tr.dataset.k) === k);
  }

  function depthTable() {
    const studies = current.studies;
    const headers = ["frozen groups", "last frozen", "trainable params", "share"].concat(studies.map((s) => `accuracy (${s.data})`));
    const rows = current.rows.map((r) => [String(r.frozen_groups), r.frozen.length ? r.frozen[r.frozen.length - 1] : "–",
      TK.int(r.trainable_params), (100 * r.share).toFixed(1) + "%"].concat(studies.map((s) => {
      const hit = s.rows.find((x) => x.frozen_groups === r.frozen_groups);
      return hit && hit.accuracy !== null ? TK.num(hit.accuracy) : "–";
    })));
    const table = TK.table(headers, rows, [0, 2, 3].concat(studies.map((_, i) => 4 + i)));
    table.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.k = String(current.rows[i].frozen_groups); });
    $("depths").replaceChildren(table);
  }

  function studiesChart() {
    const studies = current.studies;
    $("studies-section").hidden = !studies.length;
    if (!studies.length) return;
    const xs = current.rows.map((r) => r.frozen_groups);
    TK.chart($("chart-accuracy"), "Test accuracy by frozen depth", xs, studies.map((s) => ({
      label: `${s.data}`, values: xs.map((k) => { const hit = s.rows.find((r) => r.frozen_groups === k); return hit ? hit.accuracy : null; }),
    })), { xLabel: "layer groups frozen", yLabel: "test accuracy", uplot: { scales: { x: { time: false }, y: { range: [0, 1] } } } });
    $("studies").replaceChildren(...studies.map((s) => TK.el("li", {}, TK.el("a", { href: "/file/" + TK.enc(s.id) + "?name=freezing.png", text: s.id }),
      ` ${s.data}` + (s.num_classes ? `, ${s.num_classes} classes` : ""))));
  }

  async function load() {
    const query = new URLSearchParams({ model: $("model").value.trim(), num_classes: $("num-classes").value.trim() });
    $("error").hidden = true;
    main.dataset.state = "loading";
    $("count").disabled = true;
    try {
      current = await TK.api("/api/freezing?" + query.toString());
      const slider = $("depth");
      slider.max = String(current.rows.length - 1);
      if (Number(slider.value) > current.rows.length - 1) slider.value = "0";
      $("depth-max").textContent = String(current.rows.length - 1);
      $("what").textContent = `${current.model}: ${current.rows.length - 1} backbone layer groups and the head, ` +
        `${TK.int(current.rows[0].total_params)} parameters (head for ${current.num_classes} classes)`;
      $("freezing").hidden = false;
      depthTable();
      studiesChart();
      update();
      main.dataset.state = "ready";
    } catch (error) {
      current = null;
      $("freezing").hidden = true;
      TK.showError($("error"), error);
      main.dataset.state = "error";
    } finally {
      $("count").disabled = false;
    }
  }

  // ?study=<folder id> of a freezing.json folder: its model and head size.
  async function preselect(study) {
    try {
      const s = await TK.api("/api/freezing/study/" + TK.enc(study));
      if (s.model) $("model").value = s.model;
      if (s.num_classes) $("num-classes").value = String(s.num_classes);
    } catch (error) {
      TK.showError($("error"), error);
    }
  }

  $("depth").addEventListener("input", update);
  $("choose").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  fillModels();
  (main.dataset.study ? preselect(main.dataset.study) : Promise.resolve()).then(load);
})();
