// ntm serve's page: make a request, run it through the task API with return_attention, draw the
// answer and the attention over time. Vanilla JS, no dependencies. Every URL is relative (the
// page may be served under a path prefix), and the API key lives in this page only.
"use strict";

const state = {
  models: {},     // served name -> GET v1/models entry (describe())
  cards: {},      // served name -> {card, parameters, task} from GET page/cards.json
  key: "",        // typed by the person; sent as Authorization: Bearer KEY
  model: null,    // the selected listing entry
  seq: [],        // copy, repeat-copy: [length][bits]
  items: [],      // recall: [items][item_length][bits]
  drafts: {},     // any other task: served name -> the JSON request as edited
  running: false,
};

const $ = (id) => document.getElementById(id);

// -- the API -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

class BadInput extends Error {}  // a request the page will not send (the JSON editor's)

async function api(path, body) {
  const headers = {};
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function needKey(message) {
  $("key-form").hidden = false;
  $("status").textContent = message;
  $("key").focus();
}

// -- models ----------------------------------------------------------------------------------
async function loadModels() {
  $("status").textContent = "Loading the models…";
  showError("");
  let listing, cards;
  try {
    [listing, cards] = await Promise.all([api("v1/models"), api("page/cards.json")]);
  } catch (err) {
    if (err.status === 401) {
      needKey(state.key ? "That key was refused: check it and try again."
        : "This server asks for an API key: type it below.");
    } else {
      $("status").textContent = "Could not load the models: " + err.message;
    }
    return;
  }
  $("key-form").hidden = true;
  state.models = {};
  for (const m of listing.models) state.models[m.name] = m;
  state.cards = cards.models;
  const names = Object.keys(state.models);
  $("status").textContent = names.length === 1 ? "One model is served here."
    : `${names.length} models are served here; pick one below or in the table.`;
  fillModelTable();
  const select = $("model");
  select.replaceChildren(...names.map((n) => {
    const task = state.models[n].task;
    return new Option(task === n ? n : `${n} (${task})`, n);
  }));
  select.disabled = false;
  selectModel(names.includes("copy") ? "copy" : names[0]);
  $("run").disabled = false;
}

function range(pair) {
  return pair ? (pair[0] === pair[1] ? `${pair[0]}` : `${pair[0]}–${pair[1]}`) : "";
}

function taskOf(name) {
  // The task's own description (page/cards.json): name, training_range, request_keys, example.
  return (state.cards[name] || {}).task || {};
}

function builtIn(task) {
  return task in DEFAULTS;  // the tasks this page has editors and true answers for
}

function trainedOn(m) {
  if (!builtIn(m.task)) return taskOf(m.name).training_range || "";
  const what = { copy: "length", "repeat-copy": "length", recall: "items" }[m.task] || "length";
  let text = `${what} ${range(m.train_lengths)}`;
  if (m.train_repeats) text += `, repeats ${range(m.train_repeats)}`;
  return text;
}

function thousands(n) {
  return n >= 1000 ? `${Math.round(n / 1000)}k` : `${n}`;
}

function cardSummary(name) {
  const card = (state.cards[name] || {}).card;
  const m = state.models[name];
  if (!card) {
    const bits = m.heldout_bits_per_seq;
    return bits === null || bits === undefined ? "no card (not a bundled model)"
      : `${bits.toFixed(3)} at the end of training (no card: not a bundled model)`;
  }
  return card.evaluation.map((row) => {
    const point = row.repeats ? `${row.length}×${row.repeats}` : `${row.length}`;
    const rows = m.memory && row.memory_size !== m.memory[0] ? ` (${row.memory_size} rows)` : "";
    return `${point}: ${+row.mean_bits.toFixed(2)}${rows}`;
  }).join(" · ");
}

function training(name) {
  const card = (state.cards[name] || {}).card;
  const m = state.models[name];
  if (card) {
    return `${thousands(card.sequences_seen)} sequences, ${Math.round(card.train_wall_seconds / 60)} min`;
  }
  return m.training_sequences ? `${thousands(m.training_sequences)} sequences` : "";
}

function memoryText(m) {
  // memory_sizes: "128..2048, chosen per request" when it grows, else the fixed rows; a model
  // without memory (the LSTM baseline) has neither.
  if (!m.memory) return "none (LSTM baseline)";
  const grows = /^\d+\.\.(\d+)/.exec(m.memory_sizes);
  return `${m.memory[0]} × ${m.memory[1]}` + (grows ? `, grows to ${grows[1]} rows`
    : m.memory_sizes !== `${m.memory[0]}` ? `, runs with ${m.memory_sizes} rows` : "");
}

function fillModelTable() {
  const body = $("models").tBodies[0];
  body.replaceChildren();
  for (const name of Object.keys(state.models)) {
    const m = state.models[name];
    const row = body.insertRow();
    row.dataset.model = name;
    const cells = [name, m.task, trainedOn(m), training(name), cardSummary(name),
      memoryText(m)];
    for (const text of cells) row.insertCell().textContent = text;
    row.addEventListener("click", () => selectModel(name));
  }
  $("models").hidden = false;
}

// -- the request being edited ----------------------------------------------------------------
function geometry() {
  const m = state.model;
  const params = (state.cards[m.name] || {}).parameters || {};
  const bits = m.task === "repeat-copy" ? m.output_size - 1 : m.output_size;
  return { task: m.task, bits, itemLength: params.item_length || 3,
    repeatScale: params.repeat_scale || 10 };
}

function randomBits(width) {
  return Array.from({ length: width }, () => (Math.random() < 0.5 ? 0 : 1));
}

function randomItems(n, g) {
  for (;;) {  // distinct items, so the answer is unambiguous
    const items = Array.from({ length: n }, () =>
      Array.from({ length: g.itemLength }, () => randomBits(g.bits)));
    if (new Set(items.map((i) => JSON.stringify(i))).size === n) return items;
  }
}

function intValue(id, low, high) {
  const input = $(id);
  let v = Math.round(Number(input.value));
  if (!Number.isFinite(v)) v = low;
  v = Math.min(Math.max(v, low), high);
  input.value = v;
  return v;
}

function limits() {
  // Longest requests the model's --max-time-steps allows (the memory limit answers 422 itself).
  const g = geometry(), steps = state.model.max_time_steps;
  const repeats = Number($("repeats").value) || 1;
  return {
    length: g.task === "repeat-copy" ? Math.max(1, Math.floor((steps - 2) / (repeats + 1)))
      : Math.floor((steps - 1) / 2),
    items: Math.max(2, Math.floor((steps - 2 * g.itemLength - 2) / (g.itemLength + 1))),
  };
}

const DEFAULTS = { copy: { length: 8 }, "repeat-copy": { length: 5, repeats: 3 },
  recall: { items: 5 } };

function selectModel(name) {
  state.model = state.models[name];
  $("model").value = name;
  for (const row of $("models").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.model === name);
  }
  const task = state.model.task, kind = builtIn(task) ? task : "other";
  for (const element of document.querySelectorAll("[data-tasks]")) {
    element.hidden = !element.dataset.tasks.split(" ").includes(kind);
  }
  if (kind === "other") {
    $("request-json").value = state.drafts[name] ?? exampleText(name);
    showRange();
    return;
  }
  const g = geometry();
  // Start every task from a request inside its training range.
  const defaults = DEFAULTS[task] || DEFAULTS.copy;
  const top = { length: state.model.train_lengths[1], items: state.model.train_lengths[1],
    repeats: (state.model.train_repeats || [1, 1])[1] };
  for (const id of Object.keys(defaults)) $(id).value = Math.min(defaults[id], top[id]);
  $("length").max = limits().length;
  $("items").max = limits().items;
  if (task === "recall") {
    state.items = randomItems(intValue("items", 2, limits().items), g);
    fillQueries(1);
  } else {
    const length = intValue("length", 1, limits().length);
    state.seq = Array.from({ length }, () => randomBits(g.bits));
  }
  showRange();
  drawEditor();
}

function fillQueries(wanted) {
  const n = state.items.length;
  const options = [];
  for (let i = 0; i < n - 1; i++) {
    options.push(new Option(`item ${i + 1} (answer: item ${i + 2})`, i));
  }
  $("query").replaceChildren(...options);
  $("query").value = Math.min(wanted, n - 2);
}

function exampleText(name) {
  const example = taskOf(name).example;
  return readableJson(example === null || example === undefined ? {} : example);
}

function showRange() {
  const m = state.model;
  if (!builtIn(m.task)) {
    const t = taskOf(m.name), keys = (t.request_keys || []).join(", ");
    $("range").textContent = `${m.name} (task ${m.task}) was trained on ${t.training_range}; `
      + `the example below lies inside that range.${keys ? ` Request fields: ${keys}.` : ""}`
      + (t.example_error ? ` The task gave no example (${t.example_error}).` : "");
    return;
  }
  const what = m.task === "recall" ? "episodes of" : "sequences of";
  let text = `${m.name} was trained on ${what} ${trainedOn(m)}; anything past that is `
    + "extrapolation, and the answer says so.";
  if (m.task === "copy" && m.memory) text += " Try length 500: the memory grows with the request.";
  $("range").textContent = text;
}

function resize() {
  const g = geometry();
  if (g.task === "recall") {
    const n = intValue("items", 2, limits().items);
    const query = Number($("query").value) || 0;
    state.items = state.items.slice(0, n);
    while (state.items.length < n) {
      const fresh = randomItems(state.items.length + 1, g);
      state.items.push(fresh[fresh.length - 1]);
    }
    fillQueries(query);
  } else {
    const length = intValue("length", 1, limits().length);
    state.seq = state.seq.slice(0, length);
    while (state.seq.length < length) state.seq.push(randomBits(g.bits));
  }
  drawEditor();
}

function request() {
  if (!builtIn(state.model.task)) return jsonRequest();
  const g = geometry();
  if (g.task === "recall") {
    return { items: state.items, query: state.items[Number($("query").value)],
      return_attention: true };
  }
  const body = { sequence: state.seq, return_attention: true };
  if (g.task === "repeat-copy") body.repeats = intValue("repeats", 1, 1000);
  return body;
}

function jsonRequest() {
  let body;
  try {
    body = JSON.parse($("request-json").value);
  } catch (err) {
    throw new BadInput(`The request is not valid JSON, so nothing was sent: ${err.message}`);
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new BadInput("The request must be a JSON object ({…}), so nothing was sent.");
  }
  return { ...body, return_attention: true };
}

function readableJson(value, indent = "") {
  // JSON with each innermost list on one line, so a bit matrix reads as rows.
  const inner = indent + "  ";
  if (Array.isArray(value) && value.some((v) => v && typeof v === "object")) {
    return `[\n${value.map((v) => inner + readableJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value)
      .map(([k, v]) => `${inner}${JSON.stringify(k)}: ${readableJson(v, inner)}`);
    return entries.length ? `{\n${entries.join(",\n")}\n${indent}}` : "{}";
  }
  return JSON.stringify(value);
}

// -- the editor: bits on a canvas, click to flip ---------------------------------------------
const EDITOR_TOP = 16;  // a row of labels above the cells

function editorColumns() {
  // Columns of the editor in order: [item or -1, vector index] per column, null for a gap.
  const g = geometry();
  if (g.task !== "recall") return state.seq.map((_, t) => [-1, t]);
  const columns = [];
  state.items.forEach((item, i) => {
    if (i) columns.push(null);
    item.forEach((_, j) => columns.push([i, j]));
  });
  return columns;
}

function vectorAt(column) {
  const [item, j] = column;
  return item < 0 ? state.seq[j] : state.items[item][j];
}

function drawEditor() {
  const canvas = $("editor"), g = geometry(), columns = editorColumns();
  const avail = Math.max(200, canvas.parentElement.clientWidth - 2);
  const cell = Math.max(4, Math.min(22, Math.floor(avail / columns.length)));
  const width = columns.length * cell + 1, height = EDITOR_TOP + g.bits * cell + 1;
  const ctx = scaledContext(canvas, width, height);
  canvas.dataset.cell = cell;
  canvas.dataset.top = EDITOR_TOP;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5f6368";
  ctx.textBaseline = "top";
  const query = g.task === "recall" ? Number($("query").value) : -1;
  columns.forEach((column, x) => {
    if (!column) return;
    const [item, j] = column;
    if (g.task === "recall" && j === 0) {
      const label = item === query ? `${item + 1} query` : item === query + 1 ? `${item + 1} answer`
        : `${item + 1}`;
      ctx.fillStyle = item === query ? "#1f5fbf" : item === query + 1 ? "#1b7a36" : "#5f6368";
      ctx.fillText(label, x * cell, 2);
    } else if (g.task !== "recall" && (j === 0 || (j + 1) % tickStep(columns.length) === 0)) {
      ctx.fillStyle = "#5f6368";
      ctx.fillText(`${j + 1}`, x * cell, 2);
    }
    const vector = vectorAt(column);
    for (let c = 0; c < g.bits; c++) {
      ctx.fillStyle = vector[c] ? "#222" : "#fff";
      ctx.fillRect(x * cell, EDITOR_TOP + c * cell, cell, cell);
    }
    if (cell >= 8) {
      ctx.strokeStyle = "#d0d0d6";
      ctx.lineWidth = 1;
      for (let c = 0; c < g.bits; c++) {
        ctx.strokeRect(x * cell + 0.5, EDITOR_TOP + c * cell + 0.5, cell, cell);
      }
    }
  });
  if (g.task === "recall") {  // outline the query and the item the model should answer
    for (const [item, colour] of [[query, "#1f5fbf"], [query + 1, "#1b7a36"]]) {
      const x = columns.findIndex((col) => col && col[0] === item);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.strokeRect(x * cell + 1, EDITOR_TOP + 1, g.itemLength * cell - 1, g.bits * cell - 1);
    }
  }
}

function flipBit(event) {
  const canvas = $("editor"), cell = Number(canvas.dataset.cell);
  const x = Math.floor(event.offsetX / cell);
  const c = Math.floor((event.offsetY - EDITOR_TOP) / cell);
  const column = editorColumns()[x];
  if (!column || c < 0 || c >= geometry().bits) return;
  const vector = vectorAt(column);
  vector[c] = 1 - vector[c];
  drawEditor();
}

function tickStep(n) {
  for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]) {
    if (n / step <= 12) return step;
  }
  return 2000;
}

function scaledContext(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return ctx;
}

// -- running ---------------------------------------------------------------------------------
async function run() {
  if (state.running || !state.model) return;
  const model = state.model;
  let body;
  try {
    body = request();
  } catch (err) {
    if (!(err instanceof BadInput)) throw err;
    showError(err.message);
    return;
  }
  const path = `v1/models/${encodeURIComponent(model.name)}:predict`;
  state.running = true;
  $("run").disabled = true;
  $("run").textContent = "Running…";
  showError("");
  const start = performance.now();
  try {
    const answer = (await api(path, { instances: [body] })).predictions[0];
    const elapsed = performance.now() - start;
    render(model, body, answer, elapsed, path);
  } catch (err) {
    if (err.status === 401) needKey("This server asks for an API key: type it below.");
    showError(`The server refused the request (${err.status || "no answer"}): ${err.message}`);
  } finally {
    state.running = false;
    $("run").disabled = false;
    $("run").textContent = "Run";
  }
}

function truthOf(task, body) {
  // The answer a perfect model gives: {vectors, endMarker?}.
  if (task === "recall") {
    const key = JSON.stringify(body.query);
    const index = body.items.findIndex((item) => JSON.stringify(item) === key);
    return { vectors: body.items[index + 1], query: index };
  }
  if (task === "repeat-copy") {
    const vectors = [];
    for (let r = 0; r < body.repeats; r++) vectors.push(...body.sequence);
    return { vectors };
  }
  return { vectors: body.sequence };
}

function render(model, body, answer, elapsed, path) {
  const known = builtIn(model.task);
  if (known) renderBits(model, body, answer, elapsed);
  else renderJson(model, answer, elapsed);
  drawAttention(known ? layoutInputs(model.task, body, geometry()) : null, answer, model);
  $("answer-line").hidden = !known;
  $("curl").textContent = curlCommand(path, body);
  $("placeholder").hidden = true;
  const result = $("result");
  result.dataset.runs = Number(result.dataset.runs) + 1;
}

function rangeVerdict(model, answer, elapsed) {
  const memory = model.memory
    ? `Ran with ${answer.memory_size} memory rows (trained with ${model.memory[0]})`
    : "No memory (an LSTM baseline)";
  return [answer.within_training_range
    ? `<p class="good">Within the training range (${escapeHtml(trainedOn(model))}).</p>`
    : `<p class="warn">Extrapolated: beyond the training range (${escapeHtml(trainedOn(model))}); `
      + "the model was never trained on a request like this.</p>",
  `<p>${memory}; answered in ${Math.round(elapsed)} ms.</p>`];
}

function renderJson(model, answer, elapsed) {
  // A task the page does not know: the answer as it came, attention aside (drawn below).
  $("verdict").innerHTML = rangeVerdict(model, answer, elapsed).join("")
    + `<p>This page does not know the true answers of task ${escapeHtml(model.task)}: `
    + "read the answer below.</p>";
  const { attention, ...shown } = answer;
  const title = document.createElement("h3"), pre = document.createElement("pre");
  title.textContent = "The answer (JSON)";
  pre.textContent = readableJson(shown);
  pre.dataset.testid = "answer-json";
  $("output").replaceChildren(title, pre);
}

function renderBits(model, body, answer, elapsed) {
  const task = model.task, truth = truthOf(task, body);
  const output = task === "recall" ? answer.item : answer.output;
  let wrong = 0, total = 0;
  truth.vectors.forEach((v, t) => v.forEach((bit, c) => {
    total++;
    if (output[t][c] !== bit) wrong++;
  }));
  const endOk = task !== "repeat-copy" || answer.end_marker > 0.5;
  const verdict = [];
  verdict.push(wrong === 0 && endOk
    ? `<p class="good">Right: the output equals the true answer (all ${total} bits).</p>`
    : `<p class="bad">Wrong: ${wrong} of ${total} bits differ from the true answer (marked red)`
      + `${endOk ? "" : "; the end marker is missing"}.</p>`);
  verdict.push(...rangeVerdict(model, answer, elapsed));
  $("verdict").innerHTML = verdict.join("");

  const parts = [];
  if (task === "recall") {
    parts.push(`<h3>Output: the item after item ${truth.query + 1}</h3>`,
      bitGrid(output, truth.vectors));
  } else {
    const what = task === "repeat-copy" ? `the sequence ${body.repeats} times` : "the sequence";
    parts.push(`<h3>Output: ${what}, one row per bit channel, time left to right</h3>`,
      bitGrid(output, truth.vectors));
    if (task === "repeat-copy") {
      parts.push(`<p>End marker: ${answer.end_marker.toFixed(3)} (above 0.5 means the model `
        + "says it is done).</p>");
    }
  }
  if (wrong) parts.push("<h3>True answer</h3>", bitGrid(truth.vectors, truth.vectors));
  $("output").innerHTML = parts.join("");
}

function bitGrid(vectors, truth) {
  // Rows "c ###..#.#" per channel, like ntm predict --pretty; wrong bits in a red span.
  const width = vectors[0].length, lines = [];
  for (let c = 0; c < width; c++) {
    let line = `${String(c).padStart(2)} `;
    vectors.forEach((v, t) => {
      const ch = v[c] ? "#" : ".";
      line += v[c] === truth[t][c] ? ch : `<span class="wrong">${ch}</span>`;
    });
    lines.push(line);
  }
  return `<pre>${lines.join("\n")}</pre>`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[ch]));
}

function curlCommand(path, body) {
  let json = JSON.stringify({ instances: [body] });
  if (json.length > 4000) json = json.slice(0, 4000) + " …(cut here; the page sent all of it)";
  const auth = state.key ? " -H \"Authorization: Bearer $NTM_API_KEY\"" : "";
  return `curl -s -X POST '${new URL(path, document.baseURI).href}'${auth} `
    + `-H 'Content-Type: application/json' -d '${json}'`;
}

// -- the attention picture (same panels as ntm plot attention) -------------------------------
function layoutInputs(task, body, g) {
  // The model's input [T][width] and where its answer is scored: mirrors ntm/tasks.
  const width = state.model.input_size, rows = [];
  const blank = () => new Array(width).fill(0);
  if (task === "recall") {
    const k = g.itemLength, n = body.items.length;
    const query = body.items.findIndex((i) => JSON.stringify(i) === JSON.stringify(body.query));
    const push = (vector, channel) => {
      const row = blank();
      if (vector) vector.forEach((b, c) => { row[c] = b; });
      if (channel !== undefined) row[channel] = 1;
      rows.push(row);
    };
    body.items.forEach((item) => { push(null, g.bits); item.forEach((v) => push(v)); });
    push(null, g.bits + 1);
    body.items[query].forEach((v) => push(v));
    push(null, g.bits + 1);
    for (let j = 0; j < k; j++) push(null);
    return { rows, scored: [n * (k + 1) + k + 2, rows.length] };
  }
  const L = body.sequence.length;
  body.sequence.forEach((v) => { const row = blank(); v.forEach((b, c) => { row[c] = b; }); rows.push(row); });
  const delimiter = blank();
  delimiter[g.bits] = 1;
  if (task === "repeat-copy") delimiter[g.bits + 1] = body.repeats / g.repeatScale;
  rows.push(delimiter);
  const answerSteps = task === "repeat-copy" ? L * body.repeats + 1 : L;
  for (let t = 0; t < answerSteps; t++) rows.push(blank());
  return { rows, scored: [L + 1, rows.length] };
}

function outputMatrix(task, answer, inputs, outputSize) {
  // Probabilities [T][output_size]: zero where the API returns none (unscored steps).
  const T = inputs.rows.length, rows = Array.from({ length: T }, () => new Array(outputSize).fill(0));
  const start = inputs.scored[0];
  answer.probabilities.forEach((p, i) => { p.forEach((v, c) => { rows[start + i][c] = v; }); });
  if (task === "repeat-copy") rows[T - 1][outputSize - 1] = answer.end_marker;
  return rows;
}

function memoryWindow(heads, n) {
  // ntm.plots.memory_window: the shortest circular run of locations that some head puts more
  // than max(0.05, 2/N) on, padded by 2 each side; all N when that would cover the memory.
  const threshold = Math.max(0.05, 2 / n), peak = new Float32Array(n);
  for (const head of heads) for (const step of head) {
    for (let i = 0; i < n; i++) if (step[i] > peak[i]) peak[i] = step[i];
  }
  const used = [];
  for (let i = 0; i < n; i++) if (peak[i] > threshold) used.push(i);
  const all = Array.from({ length: n }, (_, i) => i);
  if (!used.length) return all;
  let largest = 0, gap = -1;
  used.forEach((u, i) => {
    const next = i + 1 < used.length ? used[i + 1] : used[0] + n;
    if (next - u > gap) { gap = next - u; largest = i; }
  });
  const start = used[(largest + 1) % used.length], span = n - gap + 1, pad = 2;
  if (span + 2 * pad >= n) return all;
  return Array.from({ length: span + 2 * pad }, (_, i) => (((start - pad + i) % n) + n) % n);
}

function drawAttention(inputs, answer, model) {
  // inputs: layoutInputs(...), or null for a task the page does not know (memory panels only).
  // A model without memory answers no attention: the inputs and outputs alone, or nothing.
  const task = model.task, attention = answer.attention || { read: [], write: [] };
  const read = attention.read, write = attention.write;
  $("picture-title").textContent = answer.attention ? "Attention over time"
    : "Inputs and outputs over time (no memory, so no attention)";
  $("memory-note").hidden = !answer.attention;
  $("picture-note").hidden = !answer.attention && !inputs;
  $("attention").hidden = !answer.attention && !inputs;
  if ($("attention").hidden) return;
  const T = inputs ? inputs.rows.length : [...write, ...read][0].length;
  const n = answer.memory_size;
  const shown = answer.attention ? memoryWindow([...read, ...write], n) : [];
  const bitsPanel = (title, label, matrix) => ({
    title, label, rows: matrix[0].length, value: (r, t) => matrix[t][r], top: true,
    tick: (r) => `${r}` });
  const memoryPanel = (title, head) => ({
    title, label: "location", rows: shown.length, value: (r, t) => head[t][shown[r]],
    top: false, tick: (r) => `${shown[r]}`, window: shown });
  const several = (list) => list.length > 1;
  const panels = [
    ...(inputs ? [bitsPanel("Inputs", "input", inputs.rows), bitsPanel("Outputs (probabilities)",
      "output", outputMatrix(task, answer, inputs, model.output_size))] : []),
    ...write.map((h, i) => memoryPanel(`Write weightings${several(write) ? ` (head ${i})` : ""}`, h)),
    ...read.map((h, i) => memoryPanel(`Read weightings${several(read) ? ` (head ${i})` : ""}`, h)),
  ];
  const canvas = $("attention");
  canvas.setAttribute("aria-label", `${T} time steps: ${panels.map((p) => p.title).join(", ")}`);
  const width = Math.max(320, canvas.parentElement.clientWidth);
  const left = 74, right = 12, plotW = width - left - right, titleH = 18, gap = 10, axisH = 34;
  for (const p of panels) {
    p.height = p.window ? Math.min(220, Math.max(110, p.rows * 3)) : Math.min(90, Math.max(48, p.rows * 8));
  }
  const height = panels.reduce((sum, p) => sum + titleH + p.height + gap, 0) + axisH;
  const ctx = scaledContext(canvas, width, height);
  const ratio = window.devicePixelRatio || 1;
  ctx.font = "12px system-ui, sans-serif";
  let y = 0;
  const layout = [];
  for (const p of panels) {
    ctx.fillStyle = "#1d1d1f";
    ctx.textBaseline = "bottom";
    ctx.textAlign = "left";
    ctx.fillText(p.title, left, y + titleH - 3);
    y += titleH;
    drawHeatmap(ctx, p, T, left, y, plotW, p.height, ratio);
    ctx.strokeStyle = "#888";
    ctx.lineWidth = 1;
    ctx.strokeRect(left - 0.5, y - 0.5, plotW + 1, p.height + 1);
    drawRowTicks(ctx, p, left, y, p.height);
    layout.push({ panel: p, y, height: p.height });
    y += p.height + gap;
  }
  // The dashed line: the model answers from here on (where the page knows the layout).
  if (inputs) {
    const answerX = left + (inputs.scored[0] / T) * plotW;
    ctx.strokeStyle = "#d62728";
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.2;
    for (const { y: top, height: h } of layout) {
      ctx.beginPath(); ctx.moveTo(answerX, top); ctx.lineTo(answerX, top + h); ctx.stroke();
    }
    ctx.setLineDash([]);
  }
  // Time axis under the last panel.
  const axisY = y - gap + 2, step = tickStep(T);
  ctx.fillStyle = "#1d1d1f";
  ctx.strokeStyle = "#888";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = 0; t < T; t += step) {
    const x = left + ((t + 0.5) / T) * plotW;
    ctx.beginPath(); ctx.moveTo(x, axisY); ctx.lineTo(x, axisY + 4); ctx.stroke();
    ctx.fillText(`${t}`, x, axisY + 5);
  }
  ctx.fillText("time step", left + plotW / 2, axisY + 19);
  canvas.onmousemove = (event) => readout(event, layout, T, left, plotW);
  canvas.onmouseleave = () => { $("readout").innerHTML = "&nbsp;"; };
}

function drawHeatmap(ctx, p, T, x0, y0, w, h, ratio) {
  // Max-pool [rows][T] down to the device pixels there are, so a sharp weighting never vanishes
  // when 1001 steps x 512 locations are drawn in a few hundred pixels; 0 white, 1 black.
  const cols = Math.min(T, Math.round(w * ratio)), rows = Math.min(p.rows, Math.round(h * ratio));
  const image = new ImageData(cols, rows);
  for (let py = 0; py < rows; py++) {
    // Memory panels put location window[0] at the bottom; bit panels put channel 0 on top.
    const pyData = p.top ? py : rows - 1 - py;
    const r0 = Math.floor((pyData * p.rows) / rows), r1 = Math.max(r0 + 1, Math.floor(((pyData + 1) * p.rows) / rows));
    for (let px = 0; px < cols; px++) {
      const t0 = Math.floor((px * T) / cols), t1 = Math.max(t0 + 1, Math.floor(((px + 1) * T) / cols));
      let v = 0;
      for (let r = r0; r < r1; r++) for (let t = t0; t < t1; t++) {
        const value = p.value(r, t);
        if (value > v) v = value;
      }
      const grey = Math.round(255 * (1 - Math.min(1, Math.max(0, v))));
      const i = 4 * (py * cols + px);
      image.data[i] = image.data[i + 1] = image.data[i + 2] = grey;
      image.data[i + 3] = 255;
    }
  }
  const bitmap = document.createElement("canvas");
  bitmap.width = cols;
  bitmap.height = rows;
  bitmap.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, x0, y0, w, h);
  if (p.window) {  // a dotted line where the shown window wraps from N - 1 to 0
    ctx.strokeStyle = "#999";
    ctx.setLineDash([2, 3]);
    for (let r = 0; r + 1 < p.rows; r++) {
      if (p.window[r + 1] !== p.window[r] + 1) {
        const y = y0 + h - ((r + 1) / p.rows) * h;
        ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x0 + w, y); ctx.stroke();
      }
    }
    ctx.setLineDash([]);
  }
}

function drawRowTicks(ctx, p, left, y0, h) {
  ctx.fillStyle = "#1d1d1f";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const count = Math.min(p.rows, p.window ? 5 : 3);
  const shown = new Set();
  for (let i = 0; i < count; i++) {
    const r = count === 1 ? 0 : Math.round((i * (p.rows - 1)) / (count - 1));
    if (shown.has(r)) continue;
    shown.add(r);
    const frac = (r + 0.5) / p.rows, y = p.top ? y0 + frac * h : y0 + h - frac * h;
    ctx.fillText(p.tick(r), left - 5, y);
  }
  ctx.save();
  ctx.translate(14, y0 + h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillStyle = "#5f6368";
  ctx.fillText(p.label, 0, 0);
  ctx.restore();
}

function readout(event, layout, T, left, plotW) {
  const x = event.offsetX, y = event.offsetY;
  const t = Math.floor(((x - left) / plotW) * T);
  const hit = layout.find((l) => y >= l.y && y < l.y + l.height);
  if (!hit || t < 0 || t >= T) { $("readout").innerHTML = "&nbsp;"; return; }
  const p = hit.panel, frac = (y - hit.y) / hit.height;
  const r = Math.min(p.rows - 1, Math.floor((p.top ? frac : 1 - frac) * p.rows));
  const where = p.window ? `location ${p.window[r]}` : `channel ${r}`;
  $("readout").textContent = `${p.title}: time step ${t}, ${where}: ${p.value(r, t).toFixed(3)}`;
}

// -- wiring ------------------------------------------------------------------------------------
function start() {
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  $("length").addEventListener("change", resize);
  $("items").addEventListener("change", resize);
  $("repeats").addEventListener("change", () => { intValue("repeats", 1, 1000); $("length").max = limits().length; });
  $("query").addEventListener("change", drawEditor);
  $("random").addEventListener("click", () => {
    const g = geometry();
    if (g.task === "recall") state.items = randomItems(state.items.length, g);
    else state.seq = state.seq.map(() => randomBits(g.bits));
    drawEditor();
  });
  $("clear").addEventListener("click", () => {
    const zero = (v) => v.map(() => 0);
    if (geometry().task === "recall") state.items = state.items.map((item) => item.map(zero));
    else state.seq = state.seq.map(zero);
    drawEditor();
  });
  $("editor").addEventListener("click", flipBit);
  $("request-json").addEventListener("input", (e) => { state.drafts[state.model.name] = e.target.value; });
  $("example").addEventListener("click", () => {
    delete state.drafts[state.model.name];
    $("request-json").value = exampleText(state.model.name);
  });
  $("run").addEventListener("click", run);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    loadModels();
  });
  let width = window.innerWidth;
  window.addEventListener("resize", () => {
    if (state.model && builtIn(state.model.task) && window.innerWidth !== width) {
      width = window.innerWidth;
      drawEditor();
    }
  });
  loadModels();
}

start();
