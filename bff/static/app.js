// The bff sample SPA: plain modern JavaScript, no framework, no build step.

// ═══ The few lines a real SPA needs ═════════════════════════════════════════════════════════
// Copy this block into your app. The browser sends the gateway's session cookie by itself
// (same origin; it is HttpOnly, so JavaScript never sees it, nor any token). Every call to
// /bff/* or to a proxied API must carry the X-CSRF header, which a cross-site form or link
// cannot add. A 401 means "not signed in (any more)": show the log-in button.

class SignedOut extends Error {}

async function bff(path, { json, headers, ...options } = {}) {
  const init = { credentials: "same-origin", ...options, headers: { "X-CSRF": "1", ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    showSignedOut(); // in your app: show the "Log in" button
    throw new SignedOut();
  }
  return response;
}

// Log in / create an account: a plain navigation; the gateway brings the browser back here.
const loginUrl = (returnTo = location.pathname, prompt) =>
  `/bff/login?returnTo=${encodeURIComponent(returnTo)}${prompt ? `&prompt=${prompt}` : ""}`;

// Log out: end the session at the gateway, then let the provider end its own.
async function logout(path = "/bff/logout") {
  const { logout_url } = await (await bff(path, { method: "POST" })).json();
  location.assign(logout_url);
}
// ════════════════════════════════════════════════════════════════════════════════════════════

// Everything below is the demo's own user interface.

const $ = (id) => document.getElementById(id);
const state = { user: null, fingerprint: null, refreshes: 0, expiresAt: null, timer: null };

function show(which) {
  document.body.dataset.state = which;
  $("loading").hidden = true;
  $("signed-out").hidden = which !== "signed-out";
  $("signed-in").hidden = which !== "signed-in";
  $("who-chip").hidden = which !== "signed-in";
}

function showSignedOut() {
  state.user = null;
  clearInterval(state.timer);
  show("signed-out");
}

function toast(message, kind = "info") {
  const el = $("toast");
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

const time = (epoch) => new Date(epoch * 1000).toLocaleTimeString();
const dateTime = (epoch) => new Date(epoch * 1000).toLocaleString();
const initials = (name) => name.split(/[\s@._-]+/).filter(Boolean).slice(0, 2)
  .map((part) => part[0].toUpperCase()).join("") || "?";

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Errors in the gateway's contract shape: {"error": "...", "detail": "..."}.
async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.error || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// Wrap a handler so that SignedOut (already handled by bff()) and network errors are shown.
const guarded = (handler) => async (...args) => {
  try {
    await handler(...args);
  } catch (error) {
    if (!(error instanceof SignedOut)) toast(`Something went wrong: ${error.message}`, "error");
  }
};

// ─── The user ───────────────────────────────────────────────────────────────────────────────

function renderUser(user) {
  const name = user.name || user.preferred_username || user.email || user.sub;
  $("user-name").textContent = name;
  $("chip-name").textContent = name;
  $("avatar").textContent = $("chip-avatar").textContent = initials(name);
  $("user-email").textContent = user.email || "no e-mail address";
  $("user-sub").textContent = user.sub;
  $("session-expiry").textContent = user.session_expires_at
    ? `${dateTime(user.session_expires_at)} unless you keep using it` : "unknown";
}

async function loadUser() {
  const response = await bff("/bff/user");
  if (!response.ok) throw new Error(await problem(response));
  state.user = await response.json();
  renderUser(state.user);
  show("signed-in");
}

// ─── The API ────────────────────────────────────────────────────────────────────────────────

function setStatus(text, kind) {
  const pill = $("api-status");
  pill.textContent = text;
  pill.dataset.kind = kind;
}

function logCall(status, text, fresh) {
  const entry = el("li", {},
    el("span", { className: "when", textContent: new Date().toLocaleTimeString() }),
    el("span", { className: `code ${status < 400 ? "ok" : "bad"}`, textContent: String(status) }),
    el("span", { textContent: text }),
    fresh ? el("span", { className: "pill refresh", textContent: "new token" }) : null);
  $("call-log").prepend(entry);
  while ($("call-log").children.length > 8) $("call-log").lastChild.remove();
}

function tick() {
  if (!state.expiresAt) {
    $("token-countdown").textContent = "";
    return;
  }
  const left = Math.round(state.expiresAt - Date.now() / 1000);
  $("token-countdown").textContent = left > 0 ? `(in ${left} s)` : "(expired: the next call refreshes it)";
}

function renderToken(body) {
  const token = body.token;
  const fresh = state.fingerprint !== null && state.fingerprint !== token.fingerprint;
  if (fresh) state.refreshes += 1;
  state.fingerprint = token.fingerprint;
  $("token-facts").hidden = false;
  $("token-kind").textContent = token.kind === "jwt" ? "JWT" : `opaque, ${token.length} chars`;
  $("token-fingerprint").textContent = token.fingerprint;
  const iat = token.claims?.iat ?? token.first_seen;
  $("token-issued").textContent = token.claims?.iat
    ? time(iat) : `first seen by the API at ${time(iat)}`;
  state.expiresAt = token.claims?.exp ?? null;
  $("token-expires").textContent = state.expiresAt ? time(state.expiresAt) : "not visible to the API";
  $("refresh-count").textContent = String(state.refreshes);
  $("cookie-forwarded").textContent = body.request.cookie_received
    ? "yes (it should not be!)" : "no: the gateway keeps the cookie to itself";
  $("refresh-badge").hidden = !fresh;
  const note = $("token-note");
  note.hidden = token.kind !== "jwt";
  note.textContent = token.note || "";
  $("whoami-json").textContent = JSON.stringify(body, null, 2);
  clearInterval(state.timer);
  tick();
  state.timer = setInterval(tick, 1000);
  return fresh;
}

async function callApi() {
  setStatus("calling…", "busy");
  let response;
  try {
    response = await bff("/api/whoami");
  } catch (error) {
    if (error instanceof SignedOut) {
      setStatus("401: signed out", "bad");
      return;
    }
    throw error;
  }
  if (!response.ok) {
    const detail = await problem(response);
    setStatus(`${response.status}: ${detail}`, "bad");
    logCall(response.status, detail, false);
    return;
  }
  const body = await response.json();
  const fresh = renderToken(body);
  setStatus(`200 OK at ${time(body.now)}`, "ok");
  logCall(200, fresh ? "the gateway refreshed the token" : `token ${body.token.fingerprint}`, fresh);
}

// ─── Items ──────────────────────────────────────────────────────────────────────────────────

function renderItems(items) {
  const list = $("items");
  list.replaceChildren(...items.slice().reverse().map((item) => el("li", {},
    el("span", { className: "text", textContent: item.text }),
    el("span", { className: "muted small", textContent: `${item.author || "someone"} · ${time(item.created)}` }))));
  if (!items.length) list.append(el("li", { className: "empty muted", textContent: "No items yet." }));
}

async function loadItems() {
  const response = await bff("/api/items");
  if (response.ok) renderItems((await response.json()).items);
}

async function addItem(event) {
  event.preventDefault();
  const input = $("item-text");
  const response = await bff("/api/items", { method: "POST", json: { text: input.value } });
  $("item-error").hidden = response.ok;
  if (!response.ok) {
    $("item-error").textContent = await problem(response);
    return;
  }
  input.value = "";
  await loadItems();
}

// ─── Sessions ───────────────────────────────────────────────────────────────────────────────

function renderSessions(sessions) {
  $("sessions").replaceChildren(...sessions.map((session) => {
    const revoke = el("button", {
      type: "button", className: session.current ? "danger" : "",
      textContent: session.current ? "Log out here" : "Revoke",
    });
    revoke.dataset.session = session.id;
    revoke.classList.add("revoke");
    revoke.addEventListener("click", guarded(() => revokeSession(session)));
    const item = el("li", {},
      el("div", {},
        el("strong", { textContent: session.device || "Unknown device" }),
        session.current ? el("span", { className: "pill ok", textContent: "this browser" }) : null,
        el("div", { className: "muted small",
          textContent: `${session.ip || "unknown address"} · signed in ${dateTime(session.created)} · last seen ${time(session.last_seen)}` })),
      revoke);
    item.dataset.current = String(session.current);
    return item;
  }));
}

async function loadSessions() {
  const response = await bff("/bff/sessions");
  if (response.ok) renderSessions((await response.json()).sessions);
}

async function revokeSession(session) {
  const response = await bff(`/bff/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    toast(await problem(response), "error");
    return;
  }
  if (session.current) {
    showSignedOut();
    return;
  }
  toast(`Ended the session on ${session.device || "that device"}.`);
  await loadSessions();
}

// ─── Wiring ─────────────────────────────────────────────────────────────────────────────────

function wire() {
  $("login").href = loginUrl();
  $("create-account").href = loginUrl(location.pathname, "create");
  $("call-api").addEventListener("click", guarded(async () => {
    await callApi();
    await loadSessions();
  }));
  $("item-form").addEventListener("submit", guarded(addItem));
  $("reload-sessions").addEventListener("click", guarded(loadSessions));
  $("logout").addEventListener("click", guarded(() => logout()));
  $("logout-all").addEventListener("click", guarded(() => logout("/bff/logout-all")));
}

async function start() {
  wire();
  try {
    await loadUser();
  } catch (error) {
    if (error instanceof SignedOut) return;
    show("signed-out");
    toast(`Cannot reach the gateway: ${error.message}`, "error");
    return;
  }
  await Promise.all([callApi(), loadItems(), loadSessions()]).catch((error) => {
    if (!(error instanceof SignedOut)) toast(error.message, "error");
  });
}

start();
