// The restoration page, for both kinds of folder: a prior comparison (the problem, the priors
// sorted by PSNR with the best bold, the side-by-side figure and every image) and a denoiser run
// (its record, PSNR before/after on crops of its training images, the loss against the step).
"use strict";
(() => {
  const id = TK.folderId();
  const fileUrl = (name) => `/file/${TK.enc(id)}?name=${encodeURIComponent(name)}`;
  const db = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(2) + " dB");

  // Small images (64 px) are shown larger; large ones no wider than maxWidth or their box.
  function image(name, alt, minWidth, maxWidth) {
    const img = TK.el("img", { src: fileUrl(name), alt, "data-name": name });
    img.addEventListener("load", () => {
      const w = img.naturalWidth;
      const room = img.parentElement && img.parentElement.clientWidth ? img.parentElement.clientWidth : maxWidth;
      if (w && w < minWidth) img.width = minWidth;
      else if (w > Math.min(maxWidth, room)) img.width = Math.min(maxWidth, room);
    });
    return img;
  }

  // -- A prior comparison -----------------------------------------------------------------------
  function problemLine(p, best) {
    const parts = [p.description, p.image && `image ${p.image}`, p.solver && `solver ${p.solver}`,
                   p.iterations !== undefined && `${p.iterations} iteration${p.iterations === 1 ? "" : "s"}`, p.seed !== undefined && `seed ${p.seed}`,
                   `degraded: PSNR ${db(p.psnr_input)}, SSIM ${TK.num(p.ssim_input, 3)}`, best && `best prior: ${best}`];
    return parts.filter(Boolean).join(" · ");
  }
  function priorTable(rows, problem) {
    const headers = ["prior", "PSNR", "gain over degraded", "SSIM", "seconds"];
    const gain = (r) => (r.psnr === null || problem.psnr_input === null || problem.psnr_input === undefined ? "–"
      : (r.psnr - problem.psnr_input >= 0 ? "+" : "") + (r.psnr - problem.psnr_input).toFixed(2) + " dB");
    const table = TK.table(headers, rows.map((r) => [r.prior, db(r.psnr), gain(r), TK.num(r.ssim, 3),
                                                     r.seconds === null ? "–" : r.seconds.toFixed(2)]), [1, 2, 3, 4]);
    table.id = "prior-table";
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      tr.dataset.prior = rows[i].prior;
      if (rows[i].best) tr.classList.add("best");
    });
    return table;
  }
  function tile(name, caption) {
    return TK.el("figure", { class: "restored" }, image(name, caption, 192, 384), TK.el("figcaption", { text: caption }));
  }
  function showComparison(data) {
    document.getElementById("comparison").hidden = false;
    const p = data.problem || {};
    document.getElementById("problem").textContent = problemLine(p, data.best);
    document.getElementById("priors").replaceChildren(data.priors.length ? priorTable(data.priors, p)
      : TK.el("p", { class: "muted", text: "No prior was recorded." }));
    const figure = document.getElementById("figure-box");
    figure.replaceChildren(data.figure ? image(data.figure, "clean, degraded and each restoration", 0, 1300)
      : TK.el("p", { class: "muted", text: "No side-by-side figure in this folder." }));
    if (data.figure) figure.firstChild.id = "figure";
    const tiles = [];
    if (data.clean) tiles.push(tile(data.clean, "clean"));
    if (data.degraded) tiles.push(tile(data.degraded, `degraded · ${db(p.psnr_input)}`));
    for (const r of data.priors) if (r.image) tiles.push(tile(r.image, `${r.prior} · ${db(r.psnr)}`));
    document.getElementById("images").replaceChildren(...tiles);
    const link = document.getElementById("link-table");
    if (data.table) { link.href = fileUrl(data.table); link.textContent = `${data.table} (the table as Markdown)`; link.hidden = false; }
  }

  // -- A denoiser run ---------------------------------------------------------------------------
  function recordTable(data) {
    const r = data.record || {};
    const c = data.config || {};
    const s = data.summary || {};
    const status = TK.el("span", { id: "run-status", class: `status ${data.status}`, text: data.status });
    const trainable = r.trainable_params === undefined ? "–"
      : `${TK.int(r.trainable_params)} of ${TK.int(r.total_params)}`;
    const table = TK.table(["from", "strategy", "status", "steps", "seconds", "trainable params", "images", "lr", "patch × batch"],
      [[r.from || c.start || s.model, r.strategy || c.strategy || s.strategy, status,
        r.steps !== undefined ? r.steps : (data.steps.length ? `${data.steps[data.steps.length - 1].step} of ${data.steps[0].steps}` : "–"),
        TK.secs(r.seconds), trainable, r.images !== undefined ? `${r.images} (${c.images || s.data || "?"})` : (s.data || "–"),
        c.lr === undefined ? "–" : Number(c.lr).toExponential(1), c.patch === undefined ? "–" : `${c.patch} × ${c.batch_size}`]],
      [3, 4, 5]);
    table.id = "record-table";
    return table;
  }
  function psnrTable(r) {
    const before = r.psnr_before || {};
    const after = r.psnr_after || {};
    const sigmas = Object.keys(before).sort((a, b) => Number(a) - Number(b));
    const table = TK.table(["noise sigma (of 255)", "before", "after", "change"], sigmas.map((s) => {
      const change = after[s] === undefined ? null : after[s] - before[s];
      return [s, db(before[s]), db(after[s]), change === null ? "–" : (change >= 0 ? "+" : "") + change.toFixed(2) + " dB"];
    }), [1, 2, 3]);
    table.id = "psnr-table";
    return table;
  }
  function lossChart(steps) {
    const box = document.getElementById("chart-loss");
    if (!steps.length) { box.replaceChildren(TK.el("p", { class: "muted", text: "No step logged yet." })); return; }
    TK.chart(box, "Training loss (L1, mean over the steps since the last point)", steps.map((s) => s.step),
             [{ label: "L1 loss", values: steps.map((s) => s.l1) }], { xLabel: "step", yLabel: "L1 loss", xIntegers: true });
    box.dataset.points = String(steps.length);
  }
  function showDenoiser(data) {
    document.getElementById("denoiser").hidden = false;
    const r = data.record;
    document.getElementById("problem").textContent = r
      ? `Fine-tuned from ${r.from} with strategy ${r.strategy} on ${r.images} image(s) · use it as a prior: transferkit restore --prior ${data.summary ? data.summary.path : data.name}`
      : (data.status === "running" ? "Training: the record is written when it finishes." : "This run has no record: it stopped before it finished (train it again).");
    document.getElementById("record").replaceChildren(recordTable(data));
    document.getElementById("psnr-note").textContent = r
      ? `On training images: ${r.psnr_note || "mean PSNR on fixed crops of the training images"}. A progress figure, not a held-out score; measure on other images with transferkit restore --simulate --compare-priors.`
      : "Measured when the training finishes (on crops of the training images).";
    document.getElementById("psnr").replaceChildren(r ? psnrTable(r) : TK.el("p", { class: "muted", text: "–" }));
    lossChart(data.steps);
    const names = [data.weights, data.log].filter(Boolean);
    document.getElementById("files").replaceChildren(...names.map((n) => TK.el("li", {}, TK.el("a", { href: fileUrl(n), text: n }))));
  }

  async function load() {
    let data;
    try { data = await TK.api(`/api/restore/${TK.enc(id)}`); } catch (e) { TK.showError(document.getElementById("error"), e); return; }
    if (data.kind === "restore-compare") showComparison(data);
    else showDenoiser(data);
    if (data.status === "running") setTimeout(load, 2000);
  }
  load();
})();
