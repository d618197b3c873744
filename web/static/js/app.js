// The application shell: sign-in, the header (connection state, the user,
// Sign out), the sidebar (channels, devices, admin) and the routed main
// view. Views live in chat/, devices/ and admin/; they reach the session,
// the REST APIs and the connection through AppContext.
import { html, createContext, useContext, useEffect, useState, useRoute, useEvent, go } from "./lib.js";
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
    if (api.signedIn) conn.start();
    else conn.stop();
  }, [api.signedIn]);
  const ctx = { api, conn, config };
  return html`<${AppContext.Provider} value=${ctx}>
    ${api.signedIn ? html`<${Shell} />` : html`<${SignIn} />`}
  <//>`;
}

function SignIn() {
  const { api, config } = useApp();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [mode, setMode] = useState("signin");
  const submit = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    setError("");
    setBusy(true);
    try {
      if (mode === "register") {
        const r = await api.register(form.get("username"), form.get("password"), form.get("display_name"));
        if (!r.verified) {
          setError("Account created; an admin must verify it before you can sign in.");
          setMode("signin");
          return;
        }
      }
      await api.signIn(form.get("username"), form.get("password"));
      ev.target.reset();
    } catch (e) {
      setError(e.status === 401 ? "Wrong username or password." : e.message);
    } finally {
      setBusy(false);
    }
  };
  const canRegister = config.registration !== "closed";
  return html`<main class="signin">
    <form onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title">Unhidra</h1>
      <p class="muted">${mode === "signin" ? "Sign in to your workspace" : "Create an account"}</p>
      <label>Username <input name="username" autocomplete="username" required minlength="3" maxlength="32" autofocus /></label>
      ${mode === "register" && html`<label>Display name <input name="display_name" autocomplete="name" maxlength="64" /></label>`}
      <label>Password <input name="password" type="password" autocomplete=${mode === "signin" ? "current-password" : "new-password"} required minlength=${mode === "register" ? 8 : 1} maxlength="1024" /></label>
      <button type="submit" disabled=${busy}>${mode === "signin" ? "Sign in" : "Create account"}</button>
      <p role="alert" class="error">${error}</p>
      ${canRegister && html`<button type="button" class="link" onClick=${() => { setError(""); setMode(mode === "signin" ? "register" : "signin"); }}>
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
  useEffect(() => setMenu(false), [route.join("/")]);
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
    <main class="content" id="main">${main}</main>
  </div>`;
}

export { go };
