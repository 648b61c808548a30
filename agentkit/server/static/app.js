// The agentkit playground: chat with the served model through POST /playground/agent, which runs
// the agent loop on the server and streams its events as server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const SAMPLING = [
  "temperature", "top_p", "top_k", "max_tokens", "seed",
  "repetition_penalty", "frequency_penalty", "presence_penalty",
];
const state = {
  info: null, history: [], controller: null, bubble: null, cards: new Map(), waiting: false,
  root: null, // the path of the run's own agent; other paths are agents it called
};

function headers() {
  const out = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) out.Authorization = "Bearer " + token;
  return out;
}

function setStatus(text, busy = false) {
  $("status").textContent = text;
  $("status").classList.toggle("busy", busy);
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function envelopeMessage(body, status) {
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  const lines = errors.map((e) => `${e.message} (code ${e.code})`);
  return lines.length ? lines.join("\n") : `HTTP ${status}`;
}

async function loadInfo() {
  const response = await fetch("/playground/info", { headers: headers() });
  if (response.status === 401) {
    $("token-box").hidden = false;
    showError("This server needs an API token: enter it under Settings.");
    return;
  }
  if (!response.ok) {
    showError(envelopeMessage(await response.json().catch(() => null), response.status));
    return;
  }
  const info = await response.json();
  state.info = info;
  $("model").replaceChildren(...info.models.map((name) => new Option(name, name)));
  $("runtime").textContent = info.runtime + " runtime";
  $("token-box").hidden = !info.auth;
  $("tools-box").hidden = info.tools.length === 0;
  // A server's own agent (serve --agents) is run as it is defined: no settings to send.
  $("agent").hidden = !info.agent;
  $("agent").textContent = info.agent ? "agent: " + info.agent : "";
  $("model-settings").hidden = Boolean(info.agent);
  $("tool-settings").hidden = Boolean(info.agent);
  applyProfile(info.profile);
  $("tool-list").replaceChildren(
    ...info.tools.map((t) => {
      const item = document.createElement("li");
      const name = document.createElement("code");
      name.textContent = t.function.name;
      item.append(name, " " + (t.function.description || "").split("\n")[0]);
      return item;
    }),
  );
  showError("");
  setStatus("ready");
}

// The runtime's defaults for its model (a small model may need a forced first call and greedy
// sampling), shown as the starting settings so the page behaves as the library and the CLI do.
function applyProfile(profile) {
  if (!profile) return;
  if (["auto", "required"].includes(profile.tool_choice)) $("tool_choice").value = profile.tool_choice;
  for (const [name, value] of Object.entries(profile.sampling || {})) {
    if (!SAMPLING.includes(name)) continue;
    $(name).value = value;
    $(name).dispatchEvent(new Event("input"));
  }
}

function sampling() {
  const out = {};
  for (const name of SAMPLING) {
    const text = $(name).value.trim();
    if (text !== "") out[name] = Number(text);
  }
  return out;
}

function scrollDown() {
  const box = $("transcript");
  box.scrollTop = box.scrollHeight;
}

function addMessage(role, text, path) {
  $("empty").hidden = true;
  const row = document.createElement("div");
  row.className = "msg " + role;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  row.append(bubble);
  // Text from an agent the run called (an agent used as a tool) says whose it is.
  if (path && path !== state.root) nameAgent(bubble, path);
  $("transcript").append(row);
  scrollDown();
  return bubble;
}

// A label over an assistant bubble: which agent wrote it.
function nameAgent(bubble, name) {
  let label = bubble.parentElement.querySelector(".agent");
  if (!label) {
    label = document.createElement("div");
    label.className = "agent";
    bubble.before(label);
  }
  label.textContent = name;
}

// The handoffs of a run (`result.handoffs`), one line each: who handed the conversation to
// whom. Nothing for a run without any.
function renderHandoffs(handoffs) {
  for (const handoff of handoffs || []) {
    const back = handoff.end !== null && handoff.returns ? ", and back" : "";
    addMeta(`handoff: ${handoff.source} → ${handoff.target}${back}`);
  }
}

function addMeta(text) {
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = text;
  $("transcript").append(meta);
}

function dropEmptyBubble() {
  const bubble = state.bubble;
  if (bubble && !bubble.textContent) bubble.parentElement.remove();
  if (bubble) bubble.classList.remove("streaming");
  state.bubble = null;
}

function toolCard(call, path) {
  const card = document.createElement("div");
  card.className = "toolcall running";
  const head = document.createElement("div");
  head.className = "head";
  head.innerHTML = '<span class="icon">⚙</span><span class="name"></span><span class="state">running…</span>';
  head.querySelector(".name").textContent = call.name;
  if (path && path !== state.root) {
    // A call of an agent the run called: its path, e.g. triage/billing.
    const where = document.createElement("span");
    where.className = "path";
    where.textContent = path;
    head.querySelector(".name").after(where);
  }
  const argsLabel = document.createElement("div");
  argsLabel.className = "label";
  argsLabel.textContent = "arguments";
  const args = document.createElement("pre");
  args.textContent = JSON.stringify(call.arguments, null, 2);
  card.append(head, argsLabel, args);
  $("transcript").append(card);
  scrollDown();
  return card;
}

function finishToolCard(record, path) {
  const card = state.cards.get(record.call.id) || toolCard(record.call, path);
  const ok = record.error === null;
  card.classList.remove("running", "waiting");
  card.classList.add(ok ? "ok" : "failed");
  const ms = (record.duration * 1000).toFixed(1);
  card.querySelector(".state").textContent = (ok ? "✓ done" : "✗ failed") + ` · ${ms} ms`;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = ok ? "result" : "error";
  const out = document.createElement("pre");
  out.className = "result";
  out.textContent = ok ? record.output : record.error;
  card.append(label, out);
  scrollDown();
}

function handle(event, data) {
  if (state.root === null && data && data.path) state.root = data.path; // the run's first event
  switch (event) {
    case "step_started":
      dropEmptyBubble();
      state.bubble = addMessage("assistant", "", data.path);
      state.bubble.classList.add("streaming");
      break;
    case "text_delta":
      if (!state.bubble) state.bubble = addMessage("assistant", "", data.path);
      state.bubble.textContent += data.text;
      scrollDown();
      break;
    case "tool_call_started": {
      dropEmptyBubble();
      const card = state.cards.get(data.call.id);
      if (card) {
        // An approved call, shown since the run paused: it runs now.
        card.classList.replace("waiting", "running");
        card.querySelector(".state").textContent = "running…";
      } else {
        state.cards.set(data.call.id, toolCard(data.call, data.path));
      }
      break;
    }
    case "tool_call_finished":
      finishToolCard(data.record, data.path);
      break;
    case "step_finished":
      dropEmptyBubble();
      break;
    case "run_finished": {
      dropEmptyBubble();
      if (data.stop_reason === "approval") {
        askApproval(data);
        break;
      }
      showAnswer();
      showAnswerer(data.agent);
      renderHandoffs(data.handoffs);
      // The system prompt is sent apart, so editing it applies to the next message.
      state.history = data.messages.filter((m) => m.role !== "system");
      const u = data.usage;
      const steps = data.steps === 1 ? "1 step" : `${data.steps} steps`;
      addMeta(`${steps} · ${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens`);
      $("usage").textContent = `last run: ${steps}, ${u.total_tokens} tokens`;
      break;
    }
    case "error":
      dropEmptyBubble();
      showError(envelopeMessage(data, "error"));
      break;
  }
}

async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [name, JSON.parse(data.join("\n"))];
    }
  }
}

// The answer format the settings ask for: undefined (text), or response_format.
function responseFormat() {
  if (!$("use-schema").checked) return undefined;
  const text = $("schema").value.trim();
  if (!text) return { type: "json_object" };
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new Error(`JSON Schema: not valid JSON (${error.message})`);
  }
  return { type: "json_schema", json_schema: schema };
}

// Which agent answered, over the answer: always for a server's own agent, and whenever it is
// not the agent the run started with.
function showAnswerer(name) {
  const bubbles = document.querySelectorAll("#transcript .msg.assistant .bubble");
  const bubble = bubbles[bubbles.length - 1];
  if (bubble && name && ((state.info && state.info.agent) || name !== state.root)) {
    nameAgent(bubble, name);
  }
}

// A JSON answer, once whole, shown indented (the last assistant bubble).
function showAnswer() {
  const bubbles = document.querySelectorAll("#transcript .msg.assistant .bubble");
  const bubble = bubbles[bubbles.length - 1];
  if (!bubble || !$("use-schema").checked) return;
  try {
    const value = JSON.parse(bubble.textContent);
    bubble.textContent = JSON.stringify(value, null, 2);
    bubble.classList.add("json");
  } catch {
    // cut off (max_tokens) or not JSON: left as it came
  }
}

// A run paused for approval: each pending call gets a card with Approve and Deny (and a reason
// for a no); once every call is decided, the decisions go to the server, which holds the run.
function askApproval(data) {
  const decisions = { run: data.run, approve: [], deny: {} };
  let left = data.pending.length;
  state.waiting = true;
  for (const call of data.pending) {
    // A tool that asked while it ran has its card already.
    const card = state.cards.get(call.id) || toolCard(call);
    card.classList.replace("running", "waiting");
    card.querySelector(".state").textContent = "waiting for approval";
    state.cards.set(call.id, card);
    if (call.question) {
      const question = document.createElement("div");
      question.className = "question";
      question.textContent = call.question;
      card.append(question);
    }
    const box = document.createElement("div");
    box.className = "approval";
    const reason = document.createElement("input");
    reason.type = "text";
    reason.className = "reason";
    reason.placeholder = "reason, if you deny (optional)";
    reason.setAttribute("aria-label", `reason to deny ${call.name}`);
    const approve = document.createElement("button");
    approve.type = "button";
    approve.className = "approve";
    approve.textContent = "Approve";
    const deny = document.createElement("button");
    deny.type = "button";
    deny.className = "deny secondary";
    deny.textContent = "Deny";
    const decide = (approved) => {
      approve.disabled = deny.disabled = reason.disabled = true;
      if (approved) decisions.approve.push(call.id);
      else decisions.deny[call.id] = reason.value.trim();
      card.querySelector(".state").textContent = approved ? "approved" : "denied";
      left -= 1;
      if (left === 0) {
        state.waiting = false;
        streamRun("/playground/resume", decisions);
      }
    };
    approve.addEventListener("click", () => decide(true));
    deny.addEventListener("click", () => decide(false));
    box.append(reason, approve, deny);
    card.append(box);
  }
  addMeta(data.pending.length === 1 ? "1 call waits for approval" : `${data.pending.length} calls wait for approval`);
  scrollDown();
}

async function send(text) {
  showError("");
  let format;
  try {
    format = responseFormat();
  } catch (error) {
    showError(error.message);
    return;
  }
  addMessage("user", text);
  const messages = [...state.history, { role: "user", content: text }];
  const body = state.info && state.info.agent ? { messages } : {
    messages,
    instructions: $("instructions").value.trim() || null,
    use_tools: $("use-tools").checked,
    tool_choice: $("tool_choice").value,
    ...sampling(),
  };
  if (format && !(state.info && state.info.agent)) body.response_format = format;
  state.cards.clear();
  await streamRun("/playground/agent", body);
}

async function streamRun(url, body) {
  state.controller = new AbortController();
  state.root = null;
  setBusy(true);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: state.controller.signal,
    });
    if (!response.ok) {
      if (response.status === 401) $("token-box").hidden = false;
      showError(envelopeMessage(await response.json().catch(() => null), response.status));
      return;
    }
    for await (const [name, data] of events(response)) handle(name, data);
  } catch (error) {
    if (error.name === "AbortError") addMeta("stopped");
    else showError(String(error));
  } finally {
    dropEmptyBubble();
    setBusy(false);
  }
}

function setBusy(busy) {
  $("send").disabled = busy || state.waiting;
  $("stop").hidden = !busy;
  if (!busy && state.waiting) setStatus("waiting for approval");
  else setStatus(busy ? "generating" : "ready", busy);
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function curlCommand() {
  const info = state.info || { models: ["@cf/meta/llama-3.1-8b-instruct"], tools: [], auth: false };
  const model = $("model").value || info.models[0];
  const messages = [];
  const system = $("instructions").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history);
  messages.push({ role: "user", content: $("prompt").value.trim() || "Hello!" });
  const body = { messages, ...sampling() };
  try {
    const format = responseFormat();
    if (format) body.response_format = format;
  } catch {
    // an unparsable schema is reported when a message is sent
  }
  if ($("use-tools").checked && info.tools.length) {
    body.tools = info.tools;
    if ($("tool_choice").value !== "auto") body.tool_choice = $("tool_choice").value;
  }
  const url = `${location.origin}/client/v4/accounts/local/ai/run/${model}`;
  const lines = [`curl ${url}`];
  if (info.auth) lines.push(`  -H "Authorization: Bearer $AGENTKIT_API_TOKEN"`);
  lines.push(`  -H "Content-Type: application/json"`);
  lines.push(`  -d ${shellQuote(JSON.stringify(body, null, 2))}`);
  return lines.join(" \\\n");
}

async function copyCurl() {
  const command = curlCommand();
  const box = $("curl");
  box.textContent = command;
  box.hidden = false;
  try {
    await navigator.clipboard.writeText(command);
    $("copy-curl").textContent = "Copied ✓";
  } catch {
    // No clipboard access (e.g. a page served over plain HTTP to another host): select it.
    const range = document.createRange();
    range.selectNodeContents(box);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-curl").textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => ($("copy-curl").textContent = "Copy curl"), 2000);
}

function linkSlider(name) {
  // The slider and the box show one value; an empty box means "unset" and dims the slider.
  const range = $(name + "-range");
  const box = $(name);
  const show = () => range.parentElement.classList.toggle("unset", box.value === "");
  range.addEventListener("input", () => {
    box.value = range.value;
    show();
  });
  box.addEventListener("input", () => {
    if (box.value !== "") range.value = box.value;
    show();
  });
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  linkSlider("temperature");
  linkSlider("top_p");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || $("send").disabled) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => {
    state.history = [];
    state.waiting = false; // a run left waiting expires on the server
    if (!state.controller || $("stop").hidden) setBusy(false);
    $("transcript").replaceChildren($("empty"));
    $("empty").hidden = false;
    $("usage").textContent = "";
    showError("");
  });
  $("copy-curl").addEventListener("click", copyCurl);
  $("use-schema").addEventListener("change", () => {
    $("schema-box").hidden = !$("use-schema").checked;
  });
  $("token").addEventListener("change", loadInfo);
  setStatus("connecting…");
  loadInfo().catch((error) => showError(String(error)));
});
