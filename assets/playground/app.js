// The pixfork playground: builds forms from GET /v1/ops, sends the image
// to the real API, and shows what came back. No framework and no build
// step; every value from the server is put in the page as text, never as
// markup.
"use strict";

const $ = (id) => document.getElementById(id);

const config = {
  urlSources: document.body.dataset.urlSources === "true",
  apiKeys: document.body.dataset.apiKeys === "true",
  signedUrls: document.body.dataset.signedUrls === "true",
};

const state = {
  ops: [],          // from /v1/ops
  byName: new Map(),
  output: [],       // output parameters (format, quality, ...)
  maxOps: 16,
  steps: [],        // [{op, params: {name: value}}]
  selected: 0,
  file: null,
  outputValues: {},
  beforeUrl: null,
  afterUrl: null,
  running: null,    // AbortController of the request in flight
  overlays: [],     // names from /v1/overlays
  inputGen: 0,      // bumped per new input; older answers are dropped
};

// ---- the catalogue -------------------------------------------------------

async function loadCatalogue() {
  const resp = await fetch("/v1/ops", { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`GET /v1/ops answered ${resp.status}`);
  const doc = await resp.json();
  state.ops = doc.ops;
  state.byName = new Map(doc.ops.map((op) => [op.name, op]));
  state.output = doc.output_params || [];
  state.maxOps = (doc.pipeline && doc.pipeline.max_ops) || 16;
  // The registered overlays, offered for overlay's image= (the page works
  // without them).
  try {
    const r = await fetch("/v1/overlays", { headers: { Accept: "application/json" } });
    if (r.ok) state.overlays = ((await r.json()).overlays || []).map((o) => o.name);
  } catch {
    state.overlays = [];
  }
}

// ---- forms ---------------------------------------------------------------

/** One labelled control for a catalogue parameter, named after it. */
function paramField(param, value, onChange, idPrefix) {
  const row = document.createElement("div");
  row.className = "row";
  const id = `${idPrefix}-${param.name}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = param.name + (param.required ? " *" : "");
  let input;
  const dflt = param.default !== undefined && param.default !== null ? String(param.default) : "";
  if (param.enum || param.type === "boolean") {
    input = document.createElement("select");
    const choices = param.enum || ["true", "false"];
    const blank = document.createElement("option");
    blank.value = "";
    blank.textContent = dflt ? `(default: ${dflt})` : "(not set)";
    input.append(blank);
    for (const c of choices) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c;
      input.append(o);
    }
  } else {
    input = document.createElement("input");
    if (param.type === "integer" || param.type === "number") {
      // type=number would let the browser refuse out-of-range values before
      // the server can explain them; inputmode gives phones a number pad.
      input.type = "text";
      input.inputMode = param.type === "integer" ? "numeric" : "decimal";
    } else {
      input.type = "text";
    }
    input.autocomplete = "off";
    input.spellcheck = false;
    input.placeholder = dflt ? `default ${dflt}` : "";
    if (param.type === "name" && param.name === "image" && state.overlays.length) {
      const list = document.createElement("datalist");
      list.id = `${idPrefix}-${param.name}-choices`;
      for (const n of state.overlays) {
        const o = document.createElement("option");
        o.value = n;
        list.append(o);
      }
      row.append(list);
      input.setAttribute("list", list.id);
      input.placeholder = `registered: ${state.overlays.join(", ")}`;
    }
  }
  input.id = id;
  input.name = param.name;
  input.value = value ?? "";
  input.addEventListener("input", () => onChange(param.name, input.value));
  input.addEventListener("change", () => onChange(param.name, input.value));
  const help = document.createElement("small");
  help.id = `${id}-help`;
  help.textContent = describe(param);
  input.setAttribute("aria-describedby", help.id);
  row.append(label, input, help);
  return row;
}

/** The help line under a field: the catalogue's words plus its range. */
function describe(param) {
  const parts = [];
  if (param.help) parts.push(param.help);
  if (param.minimum !== undefined && param.maximum !== undefined) {
    parts.push(`${param.minimum} to ${param.maximum}`);
  }
  if (param.type === "color") parts.push("a colour: RRGGBB, RRGGBBAA or a name");
  return parts.join("; ");
}

function renderSteps() {
  const list = $("steps");
  list.replaceChildren();
  state.steps.forEach((step, i) => {
    const li = document.createElement("li");
    li.className = i === state.selected ? "selected" : "";
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "step";
    pick.textContent = stepText(step);
    pick.setAttribute("aria-pressed", String(i === state.selected));
    pick.title = "Edit this step";
    pick.addEventListener("click", () => select(i));
    li.append(pick);
    const tools = [
      ["↑", "Move up", i > 0, () => move(i, -1)],
      ["↓", "Move down", i < state.steps.length - 1, () => move(i, 1)],
      ["×", "Remove", state.steps.length > 1, () => remove(i)],
    ];
    for (const [glyph, what, enabled, act] of tools) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "tool";
      b.textContent = glyph;
      b.disabled = !enabled;
      b.setAttribute("aria-label", `${what} step ${i + 1}`);
      b.addEventListener("click", act);
      li.append(b);
    }
    list.append(li);
  });
  $("add-step").disabled = state.steps.length >= state.maxOps;
  updateCurl();
}

function renderEditor() {
  const step = state.steps[state.selected];
  $("step-no").textContent = String(state.selected + 1);
  const chooser = $("op");
  if (!chooser.options.length) {
    for (const op of state.ops) {
      const o = document.createElement("option");
      o.value = op.name;
      // an alias (extract, extend) says which op it is
      o.textContent = op.alias_of ? `${op.name} (= ${op.alias_of})` : op.name;
      chooser.append(o);
    }
  }
  chooser.value = step.op;
  const spec = state.byName.get(step.op);
  $("op-help").textContent = spec ? spec.help : "";
  const box = $("params");
  box.replaceChildren();
  if (spec && spec.params.length === 0) {
    const p = document.createElement("p");
    p.className = "none";
    p.textContent = "No parameters.";
    box.append(p);
  }
  for (const param of spec ? spec.params : []) {
    box.append(paramField(param, step.params[param.name], (name, value) => {
      step.params[name] = value;
      renderSteps();
    }, "p"));
  }
}

function renderOutput() {
  const box = $("output-params");
  box.replaceChildren();
  for (const param of state.output) {
    box.append(paramField(param, state.outputValues[param.name], (name, value) => {
      state.outputValues[name] = value;
      updateCurl();
    }, "o"));
  }
}

function select(i) {
  state.selected = i;
  renderSteps();
  renderEditor();
}

function move(i, by) {
  const [step] = state.steps.splice(i, 1);
  state.steps.splice(i + by, 0, step);
  select(i + by);
}

function remove(i) {
  state.steps.splice(i, 1);
  select(Math.min(state.selected, state.steps.length - 1));
}

function addStep() {
  if (state.steps.length >= state.maxOps) return;
  state.steps.push({ op: state.ops.length ? state.ops[0].name : "resize", params: {} });
  select(state.steps.length - 1);
  $("op").focus();
}

/** A new op for the selected step keeps the values of same-named params. */
function changeOp(name) {
  const step = state.steps[state.selected];
  const spec = state.byName.get(name);
  const kept = {};
  for (const p of spec ? spec.params : []) {
    if (step.params[p.name]) kept[p.name] = step.params[p.name];
  }
  state.steps[state.selected] = { op: name, params: kept };
  renderSteps();
  renderEditor();
}

// ---- requests ------------------------------------------------------------

const given = (params) => Object.entries(params).filter(([, v]) => v !== undefined && v.trim() !== "");

/** `resize(width=200)`: a step as the pipeline grammar writes it. */
function stepText(step) {
  const args = given(step.params).map(([k, v]) => `${k}=${encodeURIComponent(v.trim())}`);
  return args.length ? `${step.op}(${args.join(",")})` : step.op;
}

/** Path and query of the request the page would send now. */
function target() {
  const q = [];
  let path;
  if (state.steps.length === 1) {
    const step = state.steps[0];
    path = `/v1/${step.op}`;
    for (const [k, v] of given(step.params)) q.push(`${k}=${encodeURIComponent(v.trim())}`);
  } else {
    path = "/v1/pipeline";
    q.push(`ops=${state.steps.map(stepText).join(",")}`);
  }
  for (const [k, v] of given(state.outputValues)) q.push(`${k}=${encodeURIComponent(v.trim())}`);
  const url = sourceUrl();
  if (url) q.unshift(`url=${encodeURIComponent(url)}`);
  return q.length ? `${path}?${q.join("&")}` : path;
}

function sourceUrl() {
  return config.urlSources ? $("source-url").value.trim() : "";
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return config.apiKeys && key ? { Authorization: `Bearer ${key}` } : {};
}

const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

const EXTENSIONS = {
  "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
  "image/avif": "avif", "application/json": "json",
};

function guessExtension() {
  const fmt = (state.outputValues.format || "").trim();
  if (fmt && fmt !== "auto") return fmt === "jpeg" ? "jpg" : fmt;
  if (state.steps.some((s) => s.op === "info")) return "json";
  return "out";
}

function updateCurl(ext) {
  const parts = ["curl", "-sS"];
  const url = sourceUrl();
  if (!url) {
    const name = state.file ? state.file.name : "in.jpg";
    parts.push("--data-binary", `@${shellQuote(name)}`);
  }
  if (config.apiKeys) parts.push("-H", '"Authorization: Bearer $PIXFORK_API_KEY"');
  if ((state.outputValues.format || "").trim() === "auto") parts.push("-H", shellQuote("Accept: image/avif,image/webp"));
  parts.push(shellQuote(location.origin + target()));
  parts.push("-o", `out.${ext || guessExtension()}`);
  $("curl").textContent = parts.join(" ");
}

/** `decode;dur=1.2, total;dur=3.4` as [{name, dur, desc}]. */
function parseServerTiming(header) {
  if (!header) return [];
  return header.split(",").map((entry) => {
    const [name, ...attrs] = entry.trim().split(";");
    const item = { name: name.trim(), dur: null, desc: "" };
    for (const attr of attrs) {
      const [k, v = ""] = attr.trim().split("=");
      if (k === "dur") item.dur = Number(v);
      if (k === "desc") item.desc = v.replace(/^"|"$/g, "");
    }
    return item;
  }).filter((t) => t.name);
}

function renderTiming(header) {
  const table = $("timing");
  const body = table.tBodies[0];
  body.replaceChildren();
  const stages = parseServerTiming(header);
  const total = stages.find((s) => s.name === "total");
  for (const s of stages) {
    const tr = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = s.desc ? `${s.name} (${s.desc})` : s.name;
    const ms = document.createElement("td");
    ms.textContent = s.dur === null ? "" : s.dur.toFixed(2);
    const bar = document.createElement("td");
    const meter = document.createElement("span");
    meter.className = "bar";
    const share = total && total.dur > 0 && s.dur !== null ? Math.min(1, s.dur / total.dur) : 0;
    meter.style.width = `${(share * 100).toFixed(1)}%`;
    bar.append(meter);
    tr.append(name, ms, bar);
    body.append(tr);
  }
  table.hidden = stages.length === 0;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function renderMeta(dl, items) {
  dl.replaceChildren();
  for (const [k, v] of items) {
    if (v === undefined || v === null || v === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dd.dataset.test = k;
    dl.append(dt, dd);
  }
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

/** The API's JSON error as one line: `bad_parameter: width must be ... (width)`. */
async function errorText(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    // not JSON: say what the status was
  }
  const e = body && body.error;
  if (!e) return `${resp.status} ${resp.statusText}`;
  const param = e.param ? ` (parameter: ${e.param})` : "";
  return `${resp.status} ${e.code}: ${e.message}${param}`;
}

function setObjectUrl(key, blob) {
  if (state[key]) URL.revokeObjectURL(state[key]);
  state[key] = blob ? URL.createObjectURL(blob) : null;
  return state[key];
}

/** What the server says of the input (format, size, frames): shown beside
 * the browser's own preview, which for HEIC or JPEG XL may not exist. */
async function describeInput() {
  const url = sourceUrl();
  if (!state.file && !url) return;
  // Answers about an input the user has since replaced are dropped: a
  // slow /v1/info for the last file must not describe this one.
  const gen = ++state.inputGen;
  const current = () => gen === state.inputGen;
  const dl = $("before-meta");
  const init = url
    ? { method: "GET", headers: authHeaders() }
    : { method: "POST", body: state.file, headers: authHeaders() };
  const path = url ? `/v1/info?url=${encodeURIComponent(url)}` : "/v1/info";
  try {
    const resp = await fetch(path, init);
    if (!current()) return;
    if (!resp.ok) {
      const text = await errorText(resp);
      if (current()) renderMeta(dl, [["info", text]]);
      return;
    }
    const info = await resp.json();
    if (!current()) return;
    renderMeta(dl, [
      ["size", `${info.width} × ${info.height}`],
      ["bytes", formatBytes(info.bytes ?? (state.file ? state.file.size : 0))],
      ["format", info.format],
      ["frames", info.frames > 1 ? info.frames : ""],
    ]);
    if (url || $("before").hidden) await previewViaServer(url, gen);
  } catch (err) {
    if (current()) renderMeta(dl, [["info", String(err)]]);
  }
}

/** A PNG of the input made by the server, for formats the browser cannot show. */
async function previewViaServer(url, gen = state.inputGen) {
  const init = url
    ? { method: "GET", headers: authHeaders() }
    : { method: "POST", body: state.file, headers: authHeaders() };
  const path = url ? `/v1/convert?url=${encodeURIComponent(url)}&format=png` : "/v1/convert?format=png";
  const resp = await fetch(path, init);
  if (!resp.ok || gen !== state.inputGen) return;
  const blob = await resp.blob();
  if (gen !== state.inputGen) return;
  const img = $("before");
  img.src = setObjectUrl("beforeUrl", blob);
  img.hidden = false;
}

function takeFile(file) {
  if (!file) return;
  state.file = file;
  showError("");
  // The last file's format and size must not stand beside this one while
  // the server describes it (its preview can arrive first).
  renderMeta($("before-meta"), []);
  const img = $("before");
  img.hidden = false;
  img.onerror = () => {
    img.hidden = true;
    img.onerror = null;
    previewViaServer("");
  };
  img.src = setObjectUrl("beforeUrl", file);
  $("drop").querySelector(".drop-text").textContent = file.name;
  updateCurl();
  describeInput();
}

async function run(event) {
  if (event) event.preventDefault();
  const url = sourceUrl();
  if (!state.file && !url) {
    showError(config.urlSources ? "Choose an image file or give its URL first." : "Choose an image file first.");
    $("file").focus();
    return;
  }
  if (state.running) state.running.abort();
  const controller = new AbortController();
  state.running = controller;
  showError("");
  $("status").textContent = "Running…";
  $("run").disabled = true;
  const path = target();
  const headers = authHeaders();
  if ((state.outputValues.format || "").trim() === "auto") headers.Accept = "image/avif,image/webp,*/*";
  const init = url
    ? { method: "GET", headers, signal: controller.signal }
    : { method: "POST", body: state.file, headers, signal: controller.signal };
  const started = performance.now();
  try {
    const resp = await fetch(path, init);
    renderTiming(resp.headers.get("server-timing"));
    if (!resp.ok) {
      showError(await errorText(resp));
      $("status").textContent = `Failed after ${(performance.now() - started).toFixed(0)} ms.`;
      return;
    }
    const blob = await resp.blob();
    const type = (resp.headers.get("content-type") || "").split(";")[0].trim();
    const ext = EXTENSIONS[type] || "out";
    updateCurl(ext);
    const img = $("result");
    const json = $("result-json");
    const short = type.startsWith("image/") ? type.slice(6) : type;
    const meta = [["bytes", formatBytes(blob.size)], ["format", `${short} (${type})`]];
    if (type === "application/json") {
      json.textContent = JSON.stringify(JSON.parse(await blob.text()), null, 2);
      json.hidden = false;
      img.hidden = true;
      img.removeAttribute("src");
      renderMeta($("result-meta"), meta);
    } else {
      json.hidden = true;
      await new Promise((resolve) => {
        img.onload = resolve;
        img.onerror = resolve;
        img.src = setObjectUrl("afterUrl", blob);
        img.hidden = false;
      });
      meta.unshift(["size", img.naturalWidth ? `${img.naturalWidth} × ${img.naturalHeight}` : "(the browser cannot show this format)"]);
      renderMeta($("result-meta"), meta);
    }
    const link = $("download");
    link.href = state.afterUrl || URL.createObjectURL(blob);
    link.download = `out.${ext}`;
    link.hidden = type === "application/json";
    $("status").textContent = `Done in ${(performance.now() - started).toFixed(0)} ms (request ${resp.headers.get("x-request-id") || "?"}).`;
  } catch (err) {
    if (err.name === "AbortError") return;
    showError(`The request failed: ${err.message}`);
    $("status").textContent = "";
  } finally {
    if (state.running === controller) {
      state.running = null;
      $("run").disabled = false;
    }
  }
}

// ---- wiring --------------------------------------------------------------

function wire() {
  $("controls").addEventListener("submit", run);
  $("op").addEventListener("change", (e) => changeOp(e.target.value));
  $("add-step").addEventListener("click", addStep);
  $("file").addEventListener("change", (e) => takeFile(e.target.files[0]));
  $("source-url").addEventListener("change", () => {
    updateCurl();
    if (sourceUrl()) describeInput();
  });
  $("source-url").addEventListener("input", () => updateCurl());
  $("copy-curl").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("curl").textContent);
      $("status").textContent = "Copied the curl command.";
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("curl"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
  });
  // Drop anywhere on the page; the drop zone shows where.
  const drop = $("drop");
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (e) => {
    if (e.target === document.documentElement || e.relatedTarget === null) drop.classList.remove("over");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) {
      $("file").files = e.dataTransfer.files;
      takeFile(file);
    }
  });
  $("url-row").hidden = !config.urlSources;
  $("key-row").hidden = !config.apiKeys;
}

async function start() {
  wire();
  try {
    await loadCatalogue();
  } catch (err) {
    showError(`Cannot load the op list: ${err.message}`);
    return;
  }
  const first = state.byName.has("resize") ? "resize" : state.ops[0].name;
  state.steps = [{ op: first, params: {} }];
  renderOutput();
  select(0);
  document.body.dataset.ready = "true";
}

start();
