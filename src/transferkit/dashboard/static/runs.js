// The Runs page: every folder under the roots, newest first; filter, sort, and new folders
// appear without a reload (the list is fetched again every two seconds).
"use strict";
(() => {
  const body = document.querySelector("#runs tbody");
  const filter = document.getElementById("filter");
  const statusFilter = document.getElementById("status-filter");
  const kindFilter = document.getElementById("kind-filter");
  let folders = [];
  let sortKey = "modified";
  let descending = true;

  const PAGE_OF = { run: "run", compare: "compare", efficiency: "efficiency", freezing: "freezing",
                    lora: "lora", transferability: "transferability", "restore-compare": "restore",
                    denoiser: "restore" };
  function link(row) {
    const page = PAGE_OF[row.kind] || "run";
    if (page === "lora" || page === "freezing") return `/${page}?study=${encodeURIComponent(row.id)}`;
    return `/${page}/${TK.enc(row.id)}`;
  }
  function matches(row) {
    const text = filter.value.trim().toLowerCase();
    if (statusFilter.value && row.status !== statusFilter.value) return false;
    if (kindFilter.value && row.kind !== kindFilter.value) return false;
    if (!text) return true;
    return [row.name, row.model, row.strategy, row.data, row.kind, row.status]
      .some((v) => v && String(v).toLowerCase().includes(text));
  }
  function compare(a, b) {
    const x = a[sortKey], y = b[sortKey];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  }
  function render() {
    const rows = folders.filter(matches).sort(compare);
    body.replaceChildren(...rows.map((row) => TK.el("tr", { "data-id": row.id, class: row.parent_id ? "child" : null },
      TK.el("td", {}, TK.el("a", { href: link(row), text: row.name })),
      TK.el("td", { text: row.kind }), TK.el("td", { text: row.model || "–" }),
      TK.el("td", { text: row.strategy || "–" }), TK.el("td", { text: row.data || "–" }),
      TK.el("td", {}, TK.el("span", { class: `status ${row.status}`, text: row.status, title: row.error || "" })),
      TK.el("td", { class: "num", text: TK.num(row.accuracy) }), TK.el("td", { class: "num", text: TK.num(row.macro_f1) }),
      TK.el("td", { class: "num", text: TK.int(row.trainable_params) }), TK.el("td", { class: "num", text: TK.secs(row.seconds) }),
      TK.el("td", { text: TK.when(row.modified) }))));
    document.getElementById("count").textContent = `${rows.length} of ${folders.length} folders`;
  }
  async function refresh() {
    try {
      const data = await TK.api("/api/runs");
      folders = data.folders;
      document.getElementById("roots").textContent = "Roots: " + data.roots.join(", ");
      render();
    } catch (e) { /* the next poll tries again */ }
  }
  for (const th of document.querySelectorAll("#runs th")) {
    th.addEventListener("click", () => {
      descending = sortKey === th.dataset.key ? !descending : true;
      sortKey = th.dataset.key;
      render();
    });
  }
  [filter, statusFilter, kindFilter].forEach((input) => input.addEventListener("input", render));
  refresh();
  setInterval(refresh, 2000);
})();
