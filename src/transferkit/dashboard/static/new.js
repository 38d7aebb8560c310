// The Start-a-run page: a form built from /api/models and /api/strategies (each strategy's own
// options appear when it is chosen) that POSTs to /api/jobs, the CLI's error paragraph when the
// check fails, and the job list (status, run folder link, cancel), refreshed every two seconds.
"use strict";
(() => {
  const form = document.getElementById("start-form");
  const errorBox = document.getElementById("form-error");
  const state = document.getElementById("form-state");
  const strategySelect = document.getElementById("strategy");
  let strategies = [];
  // Inputs of the options (name -> {input, info}); a value equal to the default is not sent.
  let inputs = {};

  function optionInput(info) {
    const id = `opt-${info.name}`;
    let input;
    if (info.kind === "bool") {
      input = TK.el("input", { id, type: "checkbox", name: info.name, checked: !!info.default });
    } else if (info.kind === "choice") {
      input = TK.el("select", { id, name: info.name },
        TK.el("option", { value: "", text: `default (${info.default ?? "–"})` }),
        info.choices.map((c) => TK.el("option", { value: c, text: c })));
    } else {
      // Text, even for numbers: the CLI parses and checks every value, so a mistake gets its message.
      const numeric = info.kind === "int" || info.kind === "float";
      input = TK.el("input", { id, name: info.name, type: "text", inputmode: numeric ? "decimal" : null,
        placeholder: info.default === null || info.default === undefined ? "default" : `default: ${info.default}`});
    }
    return input;
  }
  function addRows(infos, marker) {
    const end = document.getElementById("form-end");
    for (const info of infos) {
      const input = optionInput(info);
      inputs[info.name] = { input, info, marker };
      const label = TK.el("label", { for: input.id, title: info.help, "data-row": marker, text: info.name.replace(/_/g, " ") });
      input.setAttribute("data-row", marker);
      input.title = info.help;
      form.insertBefore(label, end);
      form.insertBefore(input, end);
    }
  }
  function showStrategy() {
    for (const node of form.querySelectorAll('[data-row="strategy"]')) node.remove();
    for (const [name, entry] of Object.entries(inputs)) if (entry.marker === "strategy") delete inputs[name];
    const chosen = strategies.find((s) => s.name === strategySelect.value);
    document.getElementById("strategy-summary").textContent = chosen ? chosen.summary : "";
    if (chosen) addRows(chosen.options, "strategy");
  }
  function values() {
    const options = {
      model: document.getElementById("model-text").value.trim() || document.getElementById("model-select").value,
      data: document.getElementById("data").value.trim(),
      strategy: strategySelect.value,
    };
    for (const [name, { input, info }] of Object.entries(inputs)) {
      if (info.kind === "bool") {
        if (input.checked !== !!info.default) options[name] = input.checked;
      } else if (input.value.trim() !== "") {
        options[name] = input.value.trim();  // the CLI parses and checks it, as on the command line
      }
    }
    return options;
  }
  async function submit(event) {
    event.preventDefault();
    const button = document.getElementById("start");
    button.disabled = true;
    state.textContent = "checking the options…";
    try {
      const answer = await TK.post("/api/jobs", { command: "train", options: values() });
      errorBox.hidden = true;
      errorBox.textContent = "";
      state.textContent = `job ${answer.job.id} ${answer.job.status}`;
      refreshJobs();
    } catch (e) {
      TK.showError(errorBox, e);
      state.textContent = "";
    } finally {
      button.disabled = false;
    }
  }
  // What a job works on: its model, or for an export or measurement the run folder it writes into.
  function jobSubject(job) {
    const model = job.argv.filter((a) => a.startsWith("--model=")).map((a) => a.slice(8)).join("");
    return model || (job.argv[0] && !job.argv[0].startsWith("--") ? job.argv[0].split("/").pop() : "");
  }
  const PAGE_OF = { train: "run", compare: "compare", efficiency: "efficiency", export: "export", latency: "export" };
  function jobRow(job) {
    const folder = job.folder_id
      ? TK.el("a", { href: `/${PAGE_OF[job.command] || "run"}/${TK.enc(job.folder_id)}`, class: "job-folder",
                     text: job.out.split(/[\\/]/).pop() })
      : TK.el("span", { class: "muted", text: job.status === "queued" ? "(waiting)" : "–" });
    const live = job.status === "queued" || job.status === "running";
    const cancel = live ? TK.el("button", { type: "button", class: "cancel", onclick: () => cancelJob(job.id), text: "Cancel" }) : null;
    const seconds = job.started ? ((job.ended || Date.now() / 1000) - job.started) : null;
    const message = job.error || (job.status === "finished" ? job.output[job.output.length - 1] : "") || "";
    return TK.el("tr", { "data-job": job.id },
      TK.el("td", { text: job.id }),
      TK.el("td", { title: [job.command, ...job.argv].join(" "), text: `${job.command} ${jobSubject(job)}` }),
      TK.el("td", {}, TK.el("span", { class: `status ${job.status} job-status`, text: job.status })),
      TK.el("td", { text: TK.when(job.started) }),
      TK.el("td", { class: "num", text: TK.secs(seconds) }),
      TK.el("td", {}, folder),
      TK.el("td", { class: job.error ? "error job-error" : "muted", text: message }),
      TK.el("td", {}, cancel));
  }
  async function refreshJobs() {
    try {
      const data = await TK.api("/api/jobs");
      document.querySelector("#jobs tbody").replaceChildren(...data.jobs.map(jobRow));
      document.getElementById("jobs-note").textContent = data.max_running
        ? `At most ${data.max_running} job(s) run at once; the others wait in the queue.`
        : "This dashboard has no job queue.";
    } catch (e) { /* the next poll tries again */ }
  }
  async function cancelJob(id) {
    try { await TK.post(`/api/jobs/${encodeURIComponent(id)}/cancel`); } catch (e) { TK.showError(errorBox, e); }
    refreshJobs();
  }
  async function loadModels() {
    const select = document.getElementById("model-select");
    try {
      const data = await TK.api("/api/models");
      const here = data.models.filter((m) => m.weights_available);
      const groups = {};
      for (const m of here) (groups[m.modality] = groups[m.modality] || []).push(m);
      select.replaceChildren(TK.el("option", { value: "", text: here.length ? "choose a model" : "(no weights on this machine: type a spec)" }),
        ...Object.entries(groups).map(([modality, models]) => TK.el("optgroup", { label: modality },
          models.map((m) => TK.el("option", { value: m.spec, text: m.spec })))));
    } catch (e) {
      select.replaceChildren(TK.el("option", { value: "", text: "(models could not be listed: type a spec)" }));
    }
  }
  async function loadStrategies() {
    const data = await TK.api("/api/strategies");
    strategies = data.strategies;
    strategySelect.replaceChildren(...strategies.map((s) => TK.el("option", { value: s.name, text: s.name, selected: s.name === data.default })));
    addRows(data.form, "form");
    showStrategy();
  }
  strategySelect.addEventListener("change", showStrategy);
  form.addEventListener("submit", submit);
  loadStrategies().catch((e) => TK.showError(errorBox, e));
  loadModels();
  refreshJobs();
  setInterval(refreshJobs, 2000);
})();
