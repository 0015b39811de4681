// Carrier web console: plain ES module, no build step.  Talks to the same REST and WebSocket
// API as any client; the API key stays in this tab's sessionStorage.  Every text from the
// server goes into the page through textContent, never as HTML.

const state = {
  key: sessionStorage.getItem("carrier.key") || "",
  agent: null,
  persona: null,
  speakers: JSON.parse(sessionStorage.getItem("carrier.speakers") || '["ana","bo"]'),
  speaker: null,
  socket: null,
  channel: null,
  pending: new Map(), // request_id -> log entry awaiting its outcome
  nextRequest: 1,
  person: null,
};
state.speaker = state.speakers[0];

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function notice(message, kind = "error") {
  const box = $("#notice");
  box.textContent = message;
  box.className = kind;
  box.hidden = !message;
}

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const agentPath = (suffix = "") => `/api/v1/agents/${encodeURIComponent(state.agent?.id ?? "unknown")}${suffix}`;

// Runs an API call and shows its error; ``reading`` calls (the live refreshes) leave the
// notice of the last action in place.
async function guarded(work, { reading = false } = {}) {
  try {
    if (!reading) notice("");
    return await work();
  } catch (error) {
    notice(error.message);
    return undefined;
  }
}

// -- the key ---------------------------------------------------------------------------------

async function useKey(key) {
  state.key = key.trim();
  sessionStorage.setItem("carrier.key", state.key);
  const status = $("#key-status");
  if (!state.key) {
    status.textContent = "no key";
    return false;
  }
  try {
    const info = await fetch("/api/v1/agents", { headers: { Authorization: `Bearer ${state.key}` } });
    const served = await info.json();
    if (!info.ok) throw new ApiError(info.status, served);
    const body = served[0];
    state.agent = body;
    $("#agent-name").textContent = body.name;
    document.title = `${body.name} · Carrier console`;
    status.textContent = "key accepted";
    status.className = "ok";
    return true;
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
    return false;
  }
}

// -- chat ------------------------------------------------------------------------------------

function renderSpeakers() {
  const box = $("#speakers");
  box.replaceChildren(
    ...state.speakers.map((name) =>
      el(
        "button",
        {
          type: "button",
          class: name === state.speaker ? "speaker current" : "speaker",
          "data-testid": `speaker-${name}`,
          onclick: () => {
            state.speaker = name;
            renderSpeakers();
          },
        },
        name,
      ),
    ),
  );
}

function contextView(context) {
  const details = el("details", { class: "context", "data-testid": "context" }, el("summary", {}, "context"));
  const list = el("dl");
  for (const [key, value] of Object.entries(context || {})) {
    list.append(el("dt", {}, key), el("dd", {}, typeof value === "string" ? value : JSON.stringify(value)));
  }
  details.append(list);
  return details;
}

function addLine(kind, author, text, extra = {}) {
  const entry = el(
    "li",
    { class: `line ${kind}`, "data-testid": kind === "bot" ? "bot-line" : "user-line", "data-message": extra.id },
    el("span", { class: "author" }, author),
    el("span", { class: "text", "data-testid": "text" }, text),
  );
  if (extra.reason) entry.append(el("span", { class: "reason", "data-testid": "reason" }, extra.reason));
  $("#log").append(entry);
  entry.scrollIntoView({ block: "end" });
  return entry;
}

function connect(channel) {
  if (state.socket) state.socket.close();
  state.channel = channel;
  $("#log").replaceChildren();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${agentPath(`/channels/${encodeURIComponent(channel)}/ws`)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  const status = $("#socket-status");
  status.textContent = "connecting…";
  socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", key: state.key })));
  socket.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    status.textContent = `offline (${event.code}${event.reason ? `: ${event.reason}` : ""})`;
    status.className = "error";
  });
}

const seen = new Set();

function onEvent(event) {
  switch (event.type) {
    case "ready":
      $("#socket-status").textContent = `in #${event.channel_id}`;
      $("#socket-status").className = "ok";
      break;
    case "message":
      if (!seen.has(event.message_id)) {
        seen.add(event.message_id);
        addLine("user", event.author_name, event.text, { id: event.message_id });
      }
      break;
    case "reply":
      if (!seen.has(event.id)) {
        seen.add(event.id);
        const line = addLine("bot", state.agent?.name || "bot", event.text, { id: event.id, reason: event.reason });
        line.dataset.source = event.source;
      }
      refreshLive();
      break;
    case "outcome": {
      const decision = event.decision;
      const line = event.reply ? document.querySelector(`[data-message="${CSS.escape(event.reply.id)}"]`) : null;
      const target =
        line ||
        addLine("system", "·", `${decision.respond ? "answers" : "stays silent"}: ${decision.reason}${decision.detail ? ` (${decision.detail})` : ""}`);
      if (!event.reply) target.dataset.testid = "silence";
      if (Object.keys(event.context || {}).length) target.append(contextView(event.context));
      break;
    }
    case "error":
      notice(event.error.message);
      break;
    default:
      break;
  }
}

function say(text) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    notice("not connected to a channel: press Join");
    return;
  }
  const message = {
    type: "message",
    request_id: String(state.nextRequest++),
    author_id: `console:${state.speaker.toLowerCase()}`,
    author_name: state.speaker,
    text,
  };
  if ($("#mention").checked) message.mentions_bot = true;
  state.socket.send(JSON.stringify(message));
}

// -- persona ---------------------------------------------------------------------------------

async function loadPersona() {
  const persona = await guarded(() => api("GET", agentPath("/persona")), { reading: true });
  if (!persona) return;
  const kinds = $("#persona-kind");
  if (!kinds.options.length) {
    kinds.append(...persona.kinds.map((kind) => el("option", { value: kind }, kind)));
    kinds.value = "trait";
  }
  const box = $("#persona-items");
  const groups = [];
  for (const kind of persona.kinds) {
    const items = persona.items.filter((item) => item.kind === kind);
    if (!items.length) continue;
    const list = el("ul", { class: "items" });
    for (const item of items) {
      const input = el("input", { value: item.text, size: 70, "data-testid": `persona-item-${item.id}` });
      list.append(
        el(
          "li",
          { "data-kind": kind },
          input,
          el("button", { type: "button", onclick: () => editItem(item.id, input.value) }, "Save"),
          el("button", { type: "button", class: "danger", onclick: () => removeItem(item.id) }, "Remove"),
        ),
      );
    }
    groups.push(el("h3", {}, kind), list);
  }
  // Do not clobber an item being edited right now.
  if (!box.contains(document.activeElement)) box.replaceChildren(...groups);
}

async function editItem(id, text) {
  if (await guarded(() => api("PATCH", agentPath(`/persona/items/${id}`), { text }))) {
    notice("saved", "ok");
    await loadPersona();
  }
}

async function removeItem(id) {
  await guarded(() => api("DELETE", agentPath(`/persona/items/${id}`)));
  await loadPersona();
}

// -- people ----------------------------------------------------------------------------------

async function loadPerson(userId) {
  state.person = userId;
  const user = await guarded(() => api("GET", agentPath(`/users/${encodeURIComponent(userId)}`)), {
    reading: true,
  });
  $("#person").hidden = !user;
  if (!user) return;
  $("#person-summary").textContent = `${user.name} (${user.user_id}): ${user.message_count} messages since ${new Date(user.first_seen).toLocaleString()}; also known as ${user.nicknames.map((n) => n.nickname).join(", ")}`;
  const form = $("#relationship-form");
  if (!form.contains(document.activeElement)) {
    for (const name of ["anger", "rapport", "trust", "formality"]) form.elements[name].value = user.relationship[name];
  }
  $("#relationship-words").textContent = user.relationship.words;
  $("#facts").replaceChildren(
    ...user.facts.map((fact) =>
      el(
        "li",
        { "data-testid": "fact" },
        el("span", {}, fact.fact),
        el("small", {}, ` ${fact.category} · mentioned ${fact.reference_count}×`),
        el("button", { type: "button", class: "danger", onclick: () => forgetFact(fact.id) }, "Delete"),
      ),
    ),
  );
}

async function forgetFact(id) {
  await guarded(() => api("DELETE", agentPath(`/users/${encodeURIComponent(state.person)}/memories/${id}`)));
  await loadPerson(state.person);
}

// -- mood and state --------------------------------------------------------------------------

async function loadMood() {
  const [mood, entries] = await Promise.all([
    guarded(() => api("GET", agentPath("/mood")), { reading: true }),
    guarded(() => api("GET", agentPath("/state")), { reading: true }),
  ]);
  if (mood) {
    const form = $("#mood-form");
    if (!form.contains(document.activeElement)) {
      for (const name of ["anger", "happiness", "energy", "curiosity"]) form.elements[name].value = mood[name];
    }
    $("#mood-day").textContent = mood.day;
    $("#mood-words").textContent = mood.words;
  }
  if (entries) {
    $("#state tbody").replaceChildren(
      ...entries.map((entry) =>
        el(
          "tr",
          {},
          el("th", {}, entry.key),
          el("td", {}, entry.value),
          el(
            "td",
            {},
            el(
              "button",
              {
                type: "button",
                class: "danger",
                onclick: async () => {
                  await guarded(() => api("DELETE", agentPath(`/state/${encodeURIComponent(entry.key)}`)));
                  await loadMood();
                },
              },
              "Delete",
            ),
          ),
        ),
      ),
    );
  }
}

function numbers(form, names) {
  const values = {};
  for (const name of names) {
    const raw = form.elements[name].value;
    if (raw !== "") values[name] = Number(raw);
  }
  return values;
}

// -- pages -----------------------------------------------------------------------------------

const loaders = { persona: loadPersona, people: () => state.person && loadPerson(state.person), mood: loadMood };

function currentPage() {
  return (location.hash || "#chat").slice(1);
}

function showPage() {
  const page = currentPage();
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${page}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.page === page);
  refreshLive();
}

function refreshLive() {
  const load = loaders[currentPage()];
  if (load && state.key) load();
}

// -- wiring ----------------------------------------------------------------------------------

function wire() {
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await useKey($("#api-key").value)) {
      connect($("#channel").value.trim() || "general");
      refreshLive();
    }
  });
  $("#join").addEventListener("click", () => connect($("#channel").value.trim() || "general"));
  $("#speaker-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("#new-speaker").value.trim().slice(0, 32);
    if (name && !state.speakers.includes(name)) state.speakers.push(name);
    if (name) state.speaker = name;
    sessionStorage.setItem("carrier.speakers", JSON.stringify(state.speakers));
    $("#new-speaker").value = "";
    renderSpeakers();
  });
  $("#say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#say-text").value;
    if (!text.trim()) return;
    say(text);
    $("#say-text").value = "";
  });
  $("#persona-add").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { kind: $("#persona-kind").value, text: $("#persona-text").value };
    if (await guarded(() => api("POST", agentPath("/persona/items"), body))) {
      $("#persona-text").value = "";
      notice("added", "ok");
      await loadPersona();
    }
  });
  $("#person-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadPerson($("#person-id").value.trim());
  });
  $("#relationship-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = numbers(event.target, ["anger", "rapport", "trust", "formality"]);
    if (await guarded(() => api("PATCH", agentPath(`/users/${encodeURIComponent(state.person)}/relationship`), values))) {
      notice("saved", "ok");
      await loadPerson(state.person);
    }
  });
  $("#fact-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { fact: $("#fact-text").value, category: $("#fact-category").value || "general" };
    if (await guarded(() => api("POST", agentPath(`/users/${encodeURIComponent(state.person)}/memories`), body))) {
      $("#fact-text").value = "";
      await loadPerson(state.person);
    }
  });
  $("#forget").addEventListener("click", async () => {
    if (!confirm(`Forget everything about ${state.person}?`)) return;
    await guarded(() => api("DELETE", agentPath(`/users/${encodeURIComponent(state.person)}`)));
    $("#person").hidden = true;
  });
  $("#mood-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await guarded(() => api("PATCH", agentPath("/mood"), numbers(event.target, ["anger", "happiness", "energy", "curiosity"])))) {
      notice("saved", "ok");
      await loadMood();
    }
  });
  $("#state-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#state-key").value.trim();
    if (await guarded(() => api("PUT", agentPath(`/state/${encodeURIComponent(key)}`), { value: $("#state-value").value }))) {
      $("#state-key").value = "";
      $("#state-value").value = "";
      await loadMood();
    }
  });
  $("#consolidate").addEventListener("click", async () => {
    const report = await guarded(() => api("POST", agentPath("/consolidate")));
    if (report) $("#consolidation").textContent = JSON.stringify(report, null, 2);
  });
  window.addEventListener("hashchange", showPage);
  // "Live": the page in view re-reads the database every few seconds and after each reply.
  setInterval(() => document.visibilityState === "visible" && refreshLive(), 5000);
}

async function start() {
  wire();
  renderSpeakers();
  showPage();
  $("#api-key").value = state.key;
  if (state.key && (await useKey(state.key))) {
    connect($("#channel").value.trim() || "general");
    refreshLive();
  } else {
    $("#key-status").textContent = "enter an API key (carrier apikey create console --scope chat --scope admin)";
  }
}

start();
