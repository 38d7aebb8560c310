// Export a finished run to each format from the page: the verification against the eager model
// and the latency of every exported file beside eager, at each batch size.
"use strict";
(() => {
  const id = TK.folderId();
  let polling = null;

  function verification(v) {
    if (!v) return "–";
    return `max |logit diff| ${Number(v.max_abs_diff).toExponential(1)} · top-1 agreement ${TK.pct(v.top1_agreement)} (n = ${v.n}, ${v.sample})`;
  }
  function formatsTable(data) {
    const busy = data.task && (data.task.status === "running" || data.task.status === "queued");
    const finished = data.status === "finished";
    const rows = data.formats.map((f) => {
      const button = TK.el("button", { type: "button", class: "export-button", "data-format": f.name,
        disabled: !f.available || busy || !finished, onclick: () => start({ format: f.name }) },
        f.exported ? "Export again" : "Export");
      const availability = f.available ? TK.el("span", { class: "ok", text: "available" })
        : TK.el("span", { class: "warn unavailable", title: f.reason || "", text: "not available on this machine" });
      return [f.title, availability, button, f.exported ? TK.el("a", { href: `/file/${TK.enc(id)}?name=${encodeURIComponent("export/" + f.exported)}`, text: f.exported }) : "–",
              f.size_mb === null ? "–" : `${f.size_mb} MB`, verification(f.verification)];
    });
    const table = TK.table(["format", "on this machine", "", "file", "size", "verification"], rows, [4]);
    table.id = "format-table";
    table.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.format = data.formats[i].name; });
    const reasons = data.formats.filter((f) => !f.available).map((f) =>
      TK.el("p", { class: "muted reason", "data-format": f.name }, TK.el("b", { text: `${f.title}: ` }), f.reason || "not available"));
    return TK.el("div", {}, table, ...reasons);
  }
  function latencyTable(report) {
    const sizes = report.batch_sizes;
    const eager = {};
    for (const r of report.rows) if (r.name === "eager") eager[r.device] = r;
    const slowest = Math.max(...report.rows.flatMap((r) => sizes.map((b) => r.ms[String(b)] || 0)));
    const rows = report.rows.map((r) => [r.name === "eager" ? "eager (PyTorch)" : r.name, r.device,
      ...sizes.flatMap((b) => {
        const ms = r.ms[String(b)];
        const ref = eager[r.device] && eager[r.device].ms[String(b)];
        if (ms === undefined) return [r.error || "–", "–"];
        const bar = TK.el("span", { class: "bar" });
        bar.style.display = "inline-block"; bar.style.height = "8px"; bar.style.marginRight = "6px";
        bar.style.background = r.name === "eager" ? "#9ca3af" : "#2558c5";
        bar.style.width = `${Math.max(2, Math.round(120 * ms / slowest))}px`;
        return [TK.el("span", {}, bar, `${ms.toFixed(2)} ms`), r.name === "eager" || !ref ? "–" : `${(ref / ms).toFixed(2)}x`];
      })]);
    const headers = ["model", "device", ...sizes.flatMap((b) => [`batch ${b}`, `speed-up vs eager (batch ${b})`])];
    const table = TK.table(headers, rows, sizes.flatMap((_, i) => [2 + 2 * i, 3 + 2 * i]));
    table.id = "latency-table";
    table.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.model = report.rows[i].name; tr.dataset.device = report.rows[i].device; });
    return TK.el("div", {}, table, TK.el("p", { class: "muted", text: `measured ${TK.when(report.measured_at)}` }));
  }
  function showTask(task) {
    const line = document.getElementById("task");
    const error = document.getElementById("task-error");
    line.hidden = !task;
    error.hidden = !(task && task.status === "failed");
    if (!task) return;
    const what = task.action === "export" ? `Export to ${task.format}` : "Latency measurement";
    line.textContent = task.status === "running" ? `${what}: running (export, verification, then timing every file)…`
      : task.status === "queued" ? `${what}: queued (job ${task.job}), waiting for the job that holds the slot`
      : `${what}: ${task.status}` + (task.ended ? ` in ${TK.secs(task.ended - task.started)}` : "");
    line.dataset.status = task.status;
    error.textContent = task.status === "failed" ? task.error : "";
  }
  async function start(body) {
    try { await TK.post(`/api/export/${TK.enc(id)}`, body); } catch (e) { TK.showError(document.getElementById("task-error"), e); return; }
    load();
  }
  async function load() {
    let data;
    try { data = await TK.api(`/api/export/${TK.enc(id)}`); } catch (e) { TK.showError(document.getElementById("error"), e); return; }
    if (data.status !== "finished") TK.showError(document.getElementById("error"), `This run is ${data.status}: only a finished run can be exported.`);
    document.getElementById("formats").replaceChildren(formatsTable(data));
    showTask(data.task);
    if (data.latency) document.getElementById("latency").replaceChildren(latencyTable(data.latency));
    const measure = document.getElementById("measure");
    const busy = data.task && (data.task.status === "running" || data.task.status === "queued");
    measure.hidden = !data.latency && !data.latency_stale;
    measure.disabled = busy;
    measure.textContent = data.latency_stale ? "Measure (files changed since the last measurement)" : "Measure again";
    clearTimeout(polling);
    if (busy) polling = setTimeout(load, 1000);
  }
  document.getElementById("measure").addEventListener("click", () => start({ action: "measure" }));
  load();
})();
