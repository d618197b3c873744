// Unhidra's minimal browser client: sign in through the auth API, open the
// gateway WebSocket with the token in Sec-WebSocket-Protocol (never in the
// URL), subscribe to a channel, and send and show messages.
"use strict";

const state = { token: null, ws: null, channel: null, nextId: 1 };
const $ = (id) => document.getElementById(id);

function defaultAuthURL() {
  return location.protocol + "//" + location.hostname + ":9200";
}

function setStatus(text) { $("status").textContent = text; }

// connect opens the gateway socket with an access token and resolves with
// "open" once the welcome frame arrived, or "refused" when the handshake or
// connection fails.
function connect(token) {
  return new Promise((resolve) => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(scheme + "//" + location.host + "/ws", ["unhidra.v1", "bearer." + token]);
    } catch (e) {
      resolve("refused");
      return;
    }
    let settled = false;
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.type === "welcome" && !settled) {
        settled = true;
        state.ws = ws;
        setStatus("connected as " + f.principal.id);
        resolve("open");
      }
      onFrame(f);
    };
    ws.onerror = () => { if (!settled) { settled = true; resolve("refused"); } };
    ws.onclose = (ev) => {
      setStatus("disconnected (" + ev.code + ")");
      if (!settled) { settled = true; resolve("refused"); }
    };
  });
}

function send(frame) {
  frame.id = String(state.nextId++);
  state.ws.send(JSON.stringify(frame));
}

function onFrame(f) {
  if (f.type === "message" && f.channel === state.channel) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = f.message.sender.id;
    const body = document.createElement("span");
    body.textContent = f.message.text !== undefined ? f.message.text : JSON.stringify(f.message.data || f.message.e2ee);
    li.append(who, body);
    $("messages").append(li);
  } else if (f.type === "error") {
    setStatus("error: " + f.message);
  }
}

$("auth-url").value = defaultAuthURL();

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  $("login-error").textContent = "";
  try {
    const resp = await fetch(form.get("auth") + "/login", {
      method: "POST",
      credentials: "include", // keeps the device cookie (README, Limits)
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    const body = await resp.json();
    if (!resp.ok) {
      $("login-error").textContent = body.error ? body.error.message : "sign-in failed";
      return;
    }
    state.token = body.access_token;
    if ((await connect(state.token)) === "open") {
      $("login").hidden = true;
      $("chat").hidden = false;
    } else {
      $("login-error").textContent = "could not connect to the gateway";
    }
  } catch (e) {
    $("login-error").textContent = "auth API unreachable";
  }
});

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.channel = new FormData(ev.target).get("channel");
  $("messages").replaceChildren();
  send({ type: "subscribe", channel: state.channel });
});

$("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = ev.target.elements.text;
  send({ type: "publish", channel: state.channel, text: input.value, client_msg_id: crypto.randomUUID() });
  input.value = "";
});

window.unhidra = { connect };
