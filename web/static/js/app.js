// The application shell: sign-in, the header (connection state, the user,
// Sign out), the sidebar (channels, devices, admin) and the routed main
// view. Views live in chat/, devices/ and admin/; they reach the session,
// the REST APIs and the connection through AppContext.
import { html, createContext, useContext, useEffect, useRef, useState, useRoute, useEvent, go } from "./lib.js";
import { States } from "./ws.js";
import { ChannelSidebar, ChannelView, ChatHome } from "./chat/index.js";
import { DevicesList, DevicePage } from "./devices/index.js";
import { AdminPage } from "./admin/index.js";

export const AppContext = createContext(null);
export const useApp = () => useContext(AppContext);

export function App({ api, conn, config }) {
  const [, setTick] = useState(0);
  useEvent(api, "session", () => setTick((n) => n + 1));
  useEffect(() => {
    if (api.signedIn) {
      conn.start();
      return;
    }
    // Signed out (here, in another tab, or the session ended): nothing of
    // the session stays in this browser: not the connection, its
    // subscriptions or the messages waiting to be sent.
    conn.stop();
    conn.reset();
  }, [api.signedIn]);
  const ctx = { api, conn, config };
  return html`<${AppContext.Provider} value=${ctx}>
    ${api.signedIn ? html`<${Shell} />` : html`<${SignIn} />`}
  <//>`;
}

// signInError is what the form says about a failed sign-in or
// registration.
function signInError(e, mode) {
  if (e.status === 0) return "The server cannot be reached. Check your connection and try again.";
  if (e.status === 401) return "Wrong username or password.";
  if (e.status === 403 && mode === "register") return "Registration is closed on this server; ask an admin for an account.";
  if (e.status === 403) return e.message || "This account cannot sign in (not verified yet, or disabled).";
  if (e.status === 409) return "That username is taken.";
  if (e.status === 429) return "Too many attempts; wait a minute and try again.";
  return e.message || "Something went wrong; try again.";
}

function SignIn() {
  const { api, config } = useApp();
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const [mode, setMode] = useState("signin");
  const user = useRef(null);
  // The Username field has the focus when the form appears (on load, after
  // a sign-out, when switching between signing in and registering).
  useEffect(() => {
    if (user.current) user.current.focus();
  }, [mode]);
  const submit = async (ev) => {
    ev.preventDefault();
    const formEl = ev.target;
    const form = new FormData(formEl);
    setError("");
    setNote("");
    setBusy(true);
    try {
      if (mode === "register") {
        const r = await api.register(form.get("username"), form.get("password"), form.get("display_name"));
        if (r && r.verified === false) {
          setNote("Account created. An admin must verify it before you can sign in.");
          setMode("signin");
          return;
        }
      }
      await api.signIn(form.get("username"), form.get("password"));
      formEl.reset();
    } catch (e) {
      setError(signInError(e, mode));
      if (user.current) (mode === "signin" && e.status === 401 ? formEl.elements.password : user.current).focus();
    } finally {
      setBusy(false);
    }
  };
  const canRegister = config.registration !== "closed";
  const toggle = () => {
    setError("");
    setNote("");
    setMode(mode === "signin" ? "register" : "signin");
  };
  return html`<main class="signin" id="main">
    <form onSubmit=${submit} aria-labelledby="signin-title" aria-describedby="signin-sub">
      <h1 id="signin-title">Unhidra</h1>
      <p class="muted" id="signin-sub">${mode === "signin" ? "Sign in to your workspace" : "Create an account"}</p>
      <label>Username <input ref=${user} name="username" autocomplete="username" required minlength="3" maxlength="32" autocapitalize="none" spellcheck="false" /></label>
      ${mode === "register" && html`<label>Display name <input name="display_name" autocomplete="name" maxlength="64" /></label>`}
      <label>Password <input name="password" type="password" autocomplete=${mode === "signin" ? "current-password" : "new-password"} required minlength=${mode === "register" ? 8 : 1} maxlength="1024" /></label>
      ${mode === "register" && config.registration === "approval" && html`<p class="muted">New accounts are verified by an admin before they can sign in.</p>`}
      <button type="submit" disabled=${busy}>${mode === "signin" ? "Sign in" : "Create account"}</button>
      <p role="alert" class="error">${error}</p>
      <p role="status" class="note">${note}</p>
      ${canRegister && html`<button type="button" class="link" onClick=${toggle}>
        ${mode === "signin" ? "Create an account" : "I have an account"}
      </button>`}
    </form>
  </main>`;
}

const stateText = {
  [States.online]: "Connected",
  [States.connecting]: "Connecting…",
  [States.reconnecting]: "Reconnecting…",
  [States.offline]: "Offline",
};

export function ConnectionState() {
  const { conn } = useApp();
  const [state, setState] = useState(conn.state);
  const [queued, setQueued] = useState(conn.outbox.length);
  useEvent(conn, "state", (ev) => setState(ev.detail));
  useEvent(conn, "outbox", () => setQueued(conn.outbox.length));
  return html`<span class=${"conn conn-" + state} role="status" aria-live="polite" data-state=${state}>
    ${stateText[state] || state}${queued > 0 ? ` · ${queued} to send` : ""}
  </span>`;
}

function Shell() {
  const { api } = useApp();
  const route = useRoute();
  const [menu, setMenu] = useState(false);
  const mainRef = useRef(null);
  useEffect(() => setMenu(false), [route.join("/")]);
  // After signing in, the focus moves to the main content (the form that
  // had it is gone).
  useEffect(() => {
    if (mainRef.current && (!document.activeElement || document.activeElement === document.body)) mainRef.current.focus();
  }, []);
  useEvent(document, "keydown", (ev) => {
    if (ev.key === "Escape" && menu) {
      setMenu(false);
      const t = document.querySelector(".menu-toggle");
      if (t) t.focus();
    }
  });
  const skip = (ev) => {
    // Not a hash link: the hash is the route.
    ev.preventDefault();
    if (mainRef.current) mainRef.current.focus();
  };
  const user = api.user || {};
  let main;
  switch (route[0]) {
    case "channels":
      main = route[1] ? html`<${ChannelView} id=${route[1]} thread=${route[2] === "thread" ? route[3] : ""} />` : html`<${ChatHome} />`;
      break;
    case "devices":
      main = route[1] ? html`<${DevicePage} id=${route[1]} />` : html`<${DevicesList} />`;
      break;
    case "admin":
      main = api.isAdmin() ? html`<${AdminPage} tab=${route[1] || "users"} />` : html`<p>Admins only.</p>`;
      break;
    default:
      main = html`<${ChatHome} />`;
  }
  return html`<div class=${"shell" + (menu ? " menu-open" : "")}>
    <a class="skip" href="#main" onClick=${skip}>Skip to content</a>
    <header class="top">
      <button type="button" class="menu-toggle" aria-expanded=${menu} aria-controls="sidebar" onClick=${() => setMenu(!menu)}>Menu</button>
      <a class="brand" href="#/">Unhidra</a>
      <${ConnectionState} />
      <span class="me" title=${user.username}>${user.display_name || user.username}</span>
      <button type="button" onClick=${() => api.signOut()}>Sign out</button>
    </header>
    <aside id="sidebar" class="sidebar">
      <${ChannelSidebar} />
      <nav aria-label="Sections" class="sections">
        <a href="#/devices" aria-current=${route[0] === "devices" ? "page" : undefined}>Devices</a>
        ${api.isAdmin() && html`<a href="#/admin" aria-current=${route[0] === "admin" ? "page" : undefined}>Admin</a>`}
      </nav>
    </aside>
    <main class="content" id="main" tabindex="-1" ref=${mainRef}>${main}</main>
  </div>`;
}

export { go };
