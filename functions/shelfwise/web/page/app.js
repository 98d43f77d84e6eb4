// The shelfwise chat page: vanilla JS, no build step. Every URL is relative to the page (so it works
// under a stage prefix). Text from the model is never parsed as HTML: answers go through a small
// markdown subset (renderMarkdown) that builds elements with createElement and sets text with
// textContent only, so markup in an answer shows as text and never runs.
"use strict";

(() => {
  const store = window.sessionStorage;
  const KEY_TOKEN = "shelfwise.token";
  const KEY_USER = "shelfwise.user";
  const KEY_OPEN = "shelfwise.conversation";
  const KEY_PENDING = "shelfwise.pending"; // {conversation_id, message_id, last_id, text}
  const KEY_PKCE = "shelfwise.pkce"; // {verifier, state} while the browser is at the managed login
  const KEY_VIA = "shelfwise.via"; // "cognito" after the managed login: Sign out ends that session too
  const $ = (id) => document.getElementById(id);

  let token = store.getItem(KEY_TOKEN);
  let current = null; // the open conversation's id
  let running = null; // {conversation_id, message_id, controller, stopped}
  let pollTimer = null;
  // How this page signs in (GET app/config): local dev tokens and/or Cognito's managed login.
  let config = { auth: document.body.dataset.authMode, cognito: null };

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `The server answered ${status}.`);
      this.status = status;
      this.code = err.code || "";
      this.details = Object.assign({}, err, err.details || {});
    }
  }

  const url = (path) => new URL(path, document.baseURI);

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // -- errors a person understands -------------------------------------------------------------------
  function explain(error) {
    if (!(error instanceof ApiError)) return "The server could not be reached. Check the connection and try again.";
    const d = error.details;
    switch (error.code) {
      case "budget_exceeded":
        return `You have used today's budget. It resets at ${new Date(d.resets_at).toLocaleString()}.`;
      case "rate_limited":
        return `Too many requests just now. Try again${d.retry_after ? ` in ${d.retry_after} s` : " shortly"}.`;
      case "turn_in_progress":
        return "An answer in this conversation is still being written.";
      case "upstream_timeout":
      case "upstream_error":
        return "The assistant's model did not answer properly. Try again in a moment.";
      case "unauthenticated":
        return "Your sign-in has expired. Sign in again.";
      default:
        if (error.status === 502 || error.status === 504) {
          return "The assistant's model did not answer properly. Try again in a moment.";
        }
        return error.message;
    }
  }

  function showError(error, action) {
    const box = $("error");
    box.replaceChildren(el("span", { text: typeof error === "string" ? error : explain(error) }));
    if (action) box.append(" ", action);
    box.append(" ", el("button", { type: "button", class: "dismiss", text: "Dismiss" }));
    box.lastChild.addEventListener("click", clearError);
    box.hidden = false;
    if (error instanceof ApiError && error.code === "unauthenticated") signOut();
  }

  function clearError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  // -- signing in ------------------------------------------------------------------------------------
  // Cognito's managed login: authorization code + PKCE (S256). The verifier and state wait in
  // sessionStorage while the browser is away; the code comes back in the query, is exchanged by this
  // page at the token endpoint and removed from the URL at once. Only the ID token is kept (the API's
  // Cognito authorizer wants it), in sessionStorage, never in a URL.
  const base64url = (bytes) =>
    btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const randomString = (bytes) => base64url(crypto.getRandomValues(new Uint8Array(bytes)));

  function pageUrl() {
    const here = new URL(window.location.href);
    here.search = "";
    here.hash = "";
    return here.href;
  }

  async function loadConfig() {
    try {
      const response = await fetch(url("app/config"), { headers: { Accept: "application/json" } });
      if (response.ok) config = await response.json();
    } catch {
      // no config: whatever the page's own markup says (local sign-in or none)
    }
  }

  async function signInHosted() {
    const { domain, client_id: clientId } = config.cognito;
    const verifier = randomString(32); // 43 characters, as RFC 7636 asks at least
    const state = randomString(16);
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    store.setItem(KEY_PKCE, JSON.stringify({ verifier, state }));
    const authorize = new URL(`https://${domain}/oauth2/authorize`);
    authorize.search = new URLSearchParams({
      response_type: "code",
      client_id: clientId,
      redirect_uri: pageUrl(),
      scope: "openid email profile",
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
    }).toString();
    window.location.assign(authorize.href);
  }

  function userOf(idToken) {
    try {
      const part = idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part));
      return claims.email || claims["cognito:username"] || claims.sub || "you";
    } catch {
      return "you";
    }
  }

  // Back from the managed login with ?code=&state= (or ?error=): finish signing in.
  async function finishHostedSignIn() {
    const query = new URLSearchParams(window.location.search);
    if (!query.has("code") && !query.has("error")) return;
    let saved = null;
    try {
      saved = JSON.parse(store.getItem(KEY_PKCE) || "null");
    } catch {
      saved = null;
    }
    store.removeItem(KEY_PKCE);
    window.history.replaceState(null, "", pageUrl()); // the code never stays in the address bar
    if (query.has("error")) {
      showError(`Signing in did not complete: ${query.get("error_description") || query.get("error")}.`);
      return;
    }
    if (!saved || !config.cognito || query.get("state") !== saved.state) {
      showError("That sign-in did not start in this tab. Sign in again.");
      return;
    }
    const { domain, client_id: clientId } = config.cognito;
    const response = await fetch(`https://${domain}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: clientId,
        code: query.get("code"),
        code_verifier: saved.verifier,
        redirect_uri: pageUrl(),
      }),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok || !data || !data.id_token) {
      showError(`Signing in failed: ${(data && (data.error_description || data.error)) || `the sign-in service answered ${response.status}`}. Sign in again.`);
      return;
    }
    token = data.id_token;
    store.setItem(KEY_TOKEN, token);
    store.setItem(KEY_USER, userOf(token));
    store.setItem(KEY_VIA, "cognito");
  }

  function showSignedIn() {
    const signedIn = Boolean(token);
    $("sign-in").hidden = signedIn;
    $("app").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    $("who").hidden = !signedIn;
    $("who").textContent = signedIn ? `Signed in as ${store.getItem(KEY_USER) || "you"}` : "";
    const local = config.auth === "local";
    $("local-sign-in").hidden = !local;
    $("hosted-sign-in").hidden = !config.cognito;
    $("no-sign-in").hidden = local || Boolean(config.cognito);
  }

  async function signInLocal(event) {
    event.preventDefault();
    clearError();
    const user = $("sign-in-user").value.trim();
    try {
      const data = await api("POST", "local/sign-in", { user, admin: $("sign-in-admin").checked });
      token = data.token;
      store.setItem(KEY_TOKEN, token);
      store.setItem(KEY_USER, user);
      await start();
    } catch (error) {
      showError(error);
    }
  }

  // Sign out (the button): after the managed login, Cognito's session ends too (its /logout sends
  // the browser back to this page, one of the app client's logout URLs).
  function signOutEverywhere() {
    const hosted = store.getItem(KEY_VIA) === "cognito" && config.cognito;
    signOut();
    if (!hosted) return;
    const logout = new URL(`https://${config.cognito.domain}/logout`);
    logout.search = new URLSearchParams({ client_id: config.cognito.client_id, logout_uri: pageUrl() }).toString();
    window.location.assign(logout.href);
  }

  function signOut() {
    token = null;
    current = null;
    for (const key of [KEY_TOKEN, KEY_USER, KEY_OPEN, KEY_PENDING, KEY_VIA]) store.removeItem(key);
    clearInterval(pollTimer);
    $("conversations").replaceChildren();
    $("log").replaceChildren();
    showSignedIn();
  }

  // -- conversations ---------------------------------------------------------------------------------
  async function loadPersonas() {
    const data = await api("GET", "prompts");
    const select = $("persona");
    select.replaceChildren(
      ...data.items.map((p) => {
        const option = el("option", { value: p.key, text: p.description ? `${p.key} – ${p.description}` : p.key });
        if (p.key === data.default) option.selected = true;
        return option;
      }),
    );
  }

  async function loadConversations() {
    const data = await api("GET", "conversations?limit=50");
    const items = [...data.items].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const list = $("conversations");
    list.replaceChildren(
      ...items.map((c) => {
        const title = c.title || "New conversation";
        const open = el("button", { type: "button", class: "open", text: title });
        if (c.id === current) open.setAttribute("aria-current", "page");
        open.addEventListener("click", () => openConversation(c.id));
        const rename = el("button", { type: "button", class: "small", "aria-label": `Rename ${title}`, text: "Rename" });
        rename.addEventListener("click", () => renameConversation(c));
        const remove = el("button", { type: "button", class: "small", "aria-label": `Delete ${title}`, text: "Delete" });
        remove.addEventListener("click", () => deleteConversation(c));
        return el("li", { "data-id": c.id }, open, rename, remove);
      }),
    );
    showTitle(items);
    return items;
  }

  function showTitle(items) {
    const open = items.find((c) => c.id === current);
    if (open) $("chat-title").textContent = open.title || "New conversation";
  }

  function poll() {
    clearInterval(pollTimer);
    pollTimer = setInterval(() => {
      if (token) loadConversations().catch(() => {});
    }, 2000);
  }

  async function newChat() {
    clearError();
    try {
      const conversation = await api("POST", "conversations", { prompt_key: $("persona").value || undefined });
      await openConversation(conversation.id);
      await loadConversations();
      $("message").focus();
    } catch (error) {
      showError(error);
    }
  }

  async function renameConversation(c) {
    const title = window.prompt("New title", c.title || "");
    if (title === null || !title.trim()) return;
    try {
      await api("PATCH", `conversations/${encodeURIComponent(c.id)}`, { title: title.trim() });
      await loadConversations();
    } catch (error) {
      showError(error);
    }
  }

  async function deleteConversation(c) {
    if (!window.confirm(`Delete "${c.title || "New conversation"}"? This cannot be undone.`)) return;
    try {
      await api("DELETE", `conversations/${encodeURIComponent(c.id)}`);
      if (c.id === current) {
        current = null;
        store.removeItem(KEY_OPEN);
        $("log").replaceChildren();
        $("chat-title").textContent = "No conversation open";
        enableAsk(false);
      }
      await loadConversations();
    } catch (error) {
      showError(error);
    }
  }

  function enableAsk(on) {
    $("message").disabled = !on;
    $("send").disabled = !on || Boolean(running);
  }

  let opening = 0; // the latest openConversation: an earlier one still loading renders nothing

  async function openConversation(id) {
    clearError();
    const mine = ++opening;
    current = id;
    store.setItem(KEY_OPEN, id);
    $("log").replaceChildren();
    enableAsk(false);
    const data = await api("GET", `conversations/${encodeURIComponent(id)}/messages?limit=50`);
    if (mine !== opening) return;
    enableAsk(true); // only once its messages show: a question asked earlier would show twice
    const messages = [...data.items].sort((a, b) => a.seq - b.seq);
    const pending = readPending();
    let live = null; // an answer still being written (in another tab, or before a reload)
    for (const m of messages) {
      if (pending && m.id === pending.message_id) continue; // the resume renders it
      if (m.role === "assistant" && m.status === "streaming") {
        live = m;
        continue;
      }
      const view = addMessage(m.role, m.content, m.id, m.grounding);
      if (m.role === "assistant") fillDetails(view, m);
    }
    for (const li of $("conversations").children) {
      const button = li.querySelector(".open");
      if (li.dataset.id === id) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    if (live && !pending && !running) {
      watchAnswer(id, { conversation_id: id, message_id: live.id, last_id: 0, text: "" });
    }
  }

  // -- answers as formatted text ---------------------------------------------------------------------
  // A markdown subset: paragraphs (blank-line separated), line breaks, **bold**, *italic*, `code`,
  // fenced ``` code blocks, bullet (- or *) and numbered lists, and [links](https://...) to http(s)
  // addresses only (anything else stays text). Built from elements and text nodes: never innerHTML.
  const INLINE = /`([^`\n]+)`|\*\*(?=\S)([^\n]*?\S)\*\*|\*([^\s*](?:[^*\n]*?[^\s*])?)\*|\[([^\]\n]+)\]\(([^)\s]+)\)/g;

  function safeHref(href) {
    try {
      const parsed = new URL(href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function inline(parent, text) {
    let at = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > at) parent.append(text.slice(at, m.index));
      at = m.index + m[0].length;
      if (m[1] !== undefined) {
        parent.append(el("code", { text: m[1] }));
      } else if (m[2] !== undefined) {
        const strong = el("strong");
        inline(strong, m[2]);
        parent.append(strong);
      } else if (m[4] !== undefined) {
        const href = safeHref(m[5]);
        if (!href) {
          parent.append(m[0]);
          continue;
        }
        const link = el("a", { href, rel: "noopener noreferrer", target: "_blank" });
        inline(link, m[4]);
        parent.append(link);
      } else {
        const em = el("em");
        inline(em, m[3]);
        parent.append(em);
      }
    }
    if (at < text.length) parent.append(text.slice(at));
  }

  function inlineLines(parent, lines) {
    lines.forEach((line, n) => {
      if (n) parent.append(el("br"));
      inline(parent, line);
    });
  }

  const FENCE = /^\s*```/;
  const BULLET = /^\s*[-*]\s+(.*)$/;
  const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;

  function renderMarkdown(text) {
    const out = document.createDocumentFragment();
    const lines = String(text || "").replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        i += 1;
      } else if (FENCE.test(line)) {
        const code = [];
        for (i += 1; i < lines.length && !FENCE.test(lines[i]); i += 1) code.push(lines[i]);
        i += 1; // the closing fence (an unclosed one, while streaming, runs to the end)
        out.append(el("pre", {}, el("code", { text: code.join("\n") })));
      } else if (BULLET.test(line) || NUMBERED.test(line)) {
        const numbered = !BULLET.test(line);
        const pattern = numbered ? NUMBERED : BULLET;
        const list = el(numbered ? "ol" : "ul");
        if (numbered && Number(line.match(NUMBERED)[1]) !== 1) list.setAttribute("start", String(Number(line.match(NUMBERED)[1])));
        for (; i < lines.length && pattern.test(lines[i]); i += 1) {
          const item = el("li");
          inline(item, lines[i].match(pattern)[numbered ? 2 : 1]);
          list.append(item);
        }
        out.append(list);
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !BULLET.test(lines[i]) && !NUMBERED.test(lines[i]); i += 1) {
          para.push(lines[i]);
        }
        const p = el("p");
        inlineLines(p, para);
        out.append(p);
      }
    }
    return out;
  }

  // -- figures no lookup returned ----------------------------------------------------------------------
  // The server checks every figure of an answer against its turn's tool results (the message's
  // `grounding`, also in `done`); the ones none of them held are marked where they stand in the
  // rendered answer. A figure is found as the server finds one (digits, an optional currency sign,
  // not inside a word, a SKU, a date or a time) and marked when its written form is one of
  // `grounding.unsupported`. Text nodes are split and wrapped in <mark>: still never innerHTML.
  const FIGURE = /(?<![\p{L}\p{N}_.,:\/#=])(?<![\p{L}\p{N}_][-\u2013])(?:[-\u2212]\s?)?([$\u20ac\u00a3]\s?)?(\d+(?:[.,]\d+)*)([kK](?![\p{L}\p{N}_]))?(?![\p{L}\p{N}_])(?![.,:\/\-\u2013]\d)/gu;
  const UNSUPPORTED_TITLE = "No lookup in this answer returned this figure";

  function markUnsupported(root, unsupported) {
    const wanted = new Set((unsupported || []).map(String));
    if (!wanted.size) return;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const nodes = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
    for (const node of nodes) {
      const text = node.nodeValue;
      const pieces = [];
      let at = 0;
      for (const m of text.matchAll(FIGURE)) {
        const written = `${m[1] || ""}${m[2]}${m[3] || ""}`.trim();
        if (!wanted.has(written)) continue;
        const start = m.index + m[0].length - (m[1] || "").length - m[2].length - (m[3] || "").length;
        if (start > at) pieces.push(text.slice(at, start));
        pieces.push(el("mark", { class: "unsupported", title: UNSUPPORTED_TITLE, text: text.slice(start, m.index + m[0].length) }));
        at = m.index + m[0].length;
      }
      if (!pieces.length) continue;
      if (at < text.length) pieces.push(text.slice(at));
      node.replaceWith(...pieces);
    }
  }

  function showAnswer(body, text, grounding) {
    body.replaceChildren(renderMarkdown(text));
    if (grounding) markUnsupported(body, grounding.unsupported);
  }

  function figuresRow(grounding) {
    if (!grounding) return null;
    const { checked, unsupported } = grounding;
    if (!checked) return "none stated";
    if (!unsupported || !unsupported.length) return `${checked} checked, all found in this answer's lookups`;
    return `${checked} checked; not found in any lookup (marked): ${unsupported.join(", ")}`;
  }

  // -- messages --------------------------------------------------------------------------------------
  function addMessage(role, text, id, grounding) {
    const body = el("div", { class: "text" });
    if (role === "assistant") showAnswer(body, text, grounding);
    else body.textContent = text || "";
    const tools = el("div", { class: "tools" });
    const article = el("article", { class: `msg ${role}` }, el("h3", { class: "visually-hidden", text: role === "user" ? "You" : "Assistant" }), tools, body);
    if (id) article.dataset.messageId = id;
    $("log").append(article);
    article.scrollIntoView({ block: "end" });
    return { article, body, tools };
  }

  function fillDetails(view, m) {
    if (m.status && m.status !== "complete") view.article.dataset.status = m.status;
    const rows = [
      ["Status", m.status + (m.finish_reason ? ` (${m.finish_reason})` : "")],
      ["Tokens", m.prompt_tokens != null ? `${m.prompt_tokens} in, ${m.completion_tokens} out` : null],
      ["Time to first token", m.ttft_ms != null ? `${m.ttft_ms} ms` : null],
      ["Latency", m.latency_ms != null ? `${m.latency_ms} ms` : null],
      ["Tools", (m.tool_calls || []).map((t) => t.name).join(", ") || "none"],
      ["Figures", figuresRow(m.grounding)],
      ["Cost", m.cost_usd != null ? `$${m.cost_usd}` : null],
    ].filter(([, v]) => v != null);
    const list = el("dl");
    for (const [k, v] of rows) list.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    view.article.querySelector("details")?.remove();
    if (m.grounding && m.content != null) showAnswer(view.body, m.content, m.grounding);
    view.article.append(el("details", { class: "details" }, el("summary", { text: "Details" }), list));
  }

  function toolChip(view, data) {
    const labels = {
      search_products: "looking up stock",
      get_product: "looking up a product",
      list_low_stock: "checking low stock",
      get_inventory_value: "adding up the stock's value",
    };
    const label = labels[data.name] || `using ${data.name}`;
    let chip = view.tools.querySelector(`[data-tool="${CSS.escape(data.name)}"][data-status="running"]`);
    if (!chip) {
      chip = el("span", { class: "chip", "data-tool": data.name });
      view.tools.append(chip);
    }
    chip.dataset.status = data.status;
    chip.textContent = data.status === "running" ? `${label}…` : data.status === "error" ? `${label}: failed` : `${label} ✓`;
  }

  function readPending() {
    try {
      return JSON.parse(store.getItem(KEY_PENDING) || "null");
    } catch {
      return null;
    }
  }

  function setRunning(state) {
    running = state;
    $("stop").hidden = !state;
    $("send").disabled = Boolean(state) || !current;
  }

  // Reads an SSE body as it arrives: calls onEvent(id, name, data) per event.
  async function readEvents(response, onEvent) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const fields = {};
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const at = line.indexOf(":");
          const name = at < 0 ? line : line.slice(0, at);
          const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          fields[name] = name === "data" && fields.data !== undefined ? `${fields.data}\n${val}` : val;
        }
        if (fields.event) onEvent(Number(fields.id), fields.event, JSON.parse(fields.data || "{}"));
      }
    }
  }

  // Follows one answer's stream (a new one or a resumed one) until done or error.
  async function follow(response, conversationId, pending, view) {
    let ended = false;
    await readEvents(response, (id, name, data) => {
      if (name === "start") {
        pending.message_id = data.assistant_message_id;
        view.article.dataset.messageId = pending.message_id;
        running.message_id = pending.message_id;
      } else if (name === "delta") {
        pending.text += data.content;
        showAnswer(view.body, pending.text);
      } else if (name === "tool") {
        toolChip(view, data);
      } else if (name === "done") {
        ended = true;
        if (data.status && data.status !== "complete") view.article.dataset.status = data.status;
        if (data.grounding) showAnswer(view.body, pending.text, data.grounding);
      } else if (name === "error") {
        ended = true;
        view.article.dataset.status = "error";
        showError(new ApiError(0, { error: data }));
      }
      if (Number.isFinite(id)) pending.last_id = id;
      if (pending.message_id) store.setItem(KEY_PENDING, JSON.stringify(pending));
    });
    return ended;
  }

  async function streamFrom(path, init, conversationId, pending, view) {
    setRunning({ conversation_id: conversationId, message_id: pending.message_id, controller: new AbortController() });
    let attempts = 0;
    try {
      for (;;) {
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}`, ...(init.headers || {}) };
        let ended = false;
        try {
          const response = await fetch(url(path), { ...init, headers, signal: running.controller.signal });
          if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
          // 204: the answer has ended and nothing follows the last event seen
          ended = response.status === 204 || (await follow(response, conversationId, pending, view));
        } catch (error) {
          if (error instanceof ApiError) throw error;
          if (running.controller.signal.aborted) return;
        }
        if (ended || !pending.message_id || ++attempts > 5) break;
        // The connection dropped mid-answer: resume after the last event seen.
        path = `conversations/${encodeURIComponent(conversationId)}/messages/${encodeURIComponent(pending.message_id)}/events`;
        init = { method: "GET", headers: { "Last-Event-ID": String(pending.last_id) } };
      }
      store.removeItem(KEY_PENDING);
      if (pending.message_id && current === conversationId) {
        const m = await api("GET", `conversations/${encodeURIComponent(conversationId)}/messages/${encodeURIComponent(pending.message_id)}`);
        fillDetails(view, m);
      }
    } finally {
      setRunning(null);
      loadConversations().catch(() => {});
    }
  }

  async function send(event) {
    event.preventDefault();
    const content = $("message").value.trim();
    if (!content || !current || running) return;
    clearError();
    const conversationId = current;
    const user = addMessage("user", content);
    const view = addMessage("assistant", "");
    view.article.classList.add("streaming");
    const pending = { conversation_id: conversationId, message_id: null, last_id: 0, text: "" };
    $("message").value = "";
    try {
      await streamFrom(
        `conversations/${encodeURIComponent(conversationId)}/messages`,
        { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ content }) },
        conversationId,
        pending,
        view,
      );
    } catch (error) {
      view.article.remove();
      if (error instanceof ApiError && !pending.message_id) {
        // refused before anything was stored: the question goes back into the box
        user.article.remove();
        if (!$("message").value) $("message").value = content;
      }
      if (error instanceof ApiError && error.code === "turn_in_progress") {
        const messageId = error.details.message_id;
        if (messageId) {
          const watch = el("button", { type: "button", text: "Watch the running answer" });
          watch.addEventListener("click", () => {
            clearError();
            watchAnswer(conversationId, { conversation_id: conversationId, message_id: messageId, last_id: 0, text: "" });
          });
          showError(error, watch);
          return;
        }
      }
      showError(error);
    } finally {
      view.article.classList.remove("streaming");
    }
  }

  async function watchAnswer(conversationId, pending) {
    const view = addMessage("assistant", pending.text, pending.message_id);
    view.article.classList.add("streaming");
    try {
      await streamFrom(
        `conversations/${encodeURIComponent(conversationId)}/messages/${encodeURIComponent(pending.message_id)}/events`,
        { method: "GET", headers: { "Last-Event-ID": String(pending.last_id) } },
        conversationId,
        pending,
        view,
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) store.removeItem(KEY_PENDING);
      showError(error);
    } finally {
      view.article.classList.remove("streaming");
    }
  }

  async function stop() {
    if (!running || !running.message_id) return;
    try {
      await api("POST", `conversations/${encodeURIComponent(running.conversation_id)}/messages/${encodeURIComponent(running.message_id)}/stop`);
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "not_running")) showError(error);
    }
  }

  // -- inventory -------------------------------------------------------------------------------------
  // "Wrap Midi Dress in rust XS (DR-0003)": products of one name differ by colour, and the SKU is what a shelf shows
  const lowStockName = (i) => `${i.name || "Product"}${i.color ? ` in ${i.color}` : ""} ${i.size} (${i.sku})`;

  async function refreshInventory() {
    try {
      const [value, low] = await Promise.all([api("GET", "inventory/value"), api("GET", "inventory/low-stock?limit=20")]);
      $("inventory-value").textContent = `${value.units} units worth ${value.value} ${value.currency} (${value.variants} variants)`;
      $("low-stock").replaceChildren(
        ...(low.items.length
          ? low.items.map((i) => el("li", { text: `${lowStockName(i)}: ${i.quantity} left (reorder at ${i.reorder_level})` }))
          : [el("li", { text: "Nothing is low on stock." })]),
      );
    } catch (error) {
      showError(error);
    }
  }

  // -- start -----------------------------------------------------------------------------------------
  async function boot() {
    await loadConfig();
    try {
      await finishHostedSignIn();
    } catch (error) {
      showError(error);
    }
    await start();
  }

  async function start() {
    showSignedIn();
    if (!token) return;
    try {
      const pending = readPending();
      const wanted = pending ? pending.conversation_id : store.getItem(KEY_OPEN);
      await loadPersonas();
      const items = await loadConversations();
      poll();
      // A chat the user started or opened while this loaded stays open (and its answer on the page).
      if (current || !wanted || !items.some((c) => c.id === wanted)) return;
      await openConversation(wanted);
      showTitle(items);
      if (pending && pending.conversation_id === current) await watchAnswer(current, pending);
    } catch (error) {
      showError(error);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("local-sign-in").addEventListener("submit", signInLocal);
    $("sign-out").addEventListener("click", signOutEverywhere);
    $("hosted-sign-in").addEventListener("click", () => signInHosted().catch(showError));
    $("new-chat").addEventListener("click", newChat);
    $("ask").addEventListener("submit", send);
    $("message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("ask").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stop);
    $("refresh-inventory").addEventListener("click", refreshInventory);
    boot();
  });
})();
