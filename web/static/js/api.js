// The session and the HTTP APIs: sign in and out through the auth API (its
// address comes from the gateway's /config.json, never from a fixed port),
// silent token refresh, and the gateway's REST API. The access token lives
// in memory only; the refresh token in localStorage, so a reload keeps the
// session. Tabs of one browser share the refresh token and rotate it one at
// a time (Web Locks), since presenting a rotated token ends the session.

const SESSION_KEY = "unhidra.session";
const CONFIG_KEY = "unhidra.config";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || "HTTP " + status);
    this.status = status;
    this.code = code || "";
  }
}

// loadConfig reads the server's /config.json (the auth API's address, the
// registration mode). The last one read is kept in localStorage, so the
// shell served by the service worker starts while the server is away (its
// answer is never in the service worker's cache).
export async function loadConfig() {
  try {
    const res = await fetch("/config.json", { cache: "no-store" });
    if (!res.ok) throw new ApiError(res.status, "unavailable", "the server did not answer its configuration");
    const cfg = await res.json();
    try {
      localStorage.setItem(CONFIG_KEY, JSON.stringify(cfg));
    } catch {
      // Storage full or disabled: only the offline start is lost.
    }
    return cfg;
  } catch (e) {
    try {
      const kept = JSON.parse(localStorage.getItem(CONFIG_KEY) || "null");
      if (kept && kept.auth_url) return { ...kept, offline: true };
    } catch {
      // fall through
    }
    throw e instanceof ApiError ? e : new ApiError(0, "unavailable", "the server cannot be reached");
  }
}

async function readJSON(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { text };
  }
}

async function check(res) {
  const body = await readJSON(res);
  if (!res.ok) {
    const e = (body && body.error) || {};
    throw new ApiError(res.status, e.code, e.message || res.statusText);
  }
  return body;
}

// Api is the signed-in state. It dispatches "session" (signed in, out or
// refreshed) events.
export class Api extends EventTarget {
  constructor(config) {
    super();
    this.authURL = (config.auth_url || "").replace(/\/$/, "");
    this.config = config;
    this.access = null; // {token, expiresAt}
    this.stored = readStored(); // {refresh, user}
    this.refreshing = null;
    window.addEventListener("storage", (ev) => {
      if (ev.key !== SESSION_KEY) return;
      const s = readStored();
      if (!s && this.stored) {
        this.stored = null;
        this.access = null;
        this.dispatchEvent(new Event("session"));
      } else if (s) {
        this.stored = s;
      }
    });
  }

  get user() {
    return this.stored ? this.stored.user : null;
  }

  get signedIn() {
    return !!this.stored;
  }

  isAdmin() {
    return !!(this.user && (this.user.roles || []).includes("admin"));
  }

  async signIn(username, password) {
    const res = await fetch(this.authURL + "/login", {
      method: "POST",
      credentials: "include", // the device cookie (README, Limits)
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await check(res);
    this.accept(body);
    return body.user;
  }

  async register(username, password, displayName) {
    const res = await fetch(this.authURL + "/register", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password, display_name: displayName || undefined }),
    });
    return check(res);
  }

  accept(body) {
    this.access = { token: body.access_token, expiresAt: Date.now() + (body.expires_in || 60) * 1000 };
    this.stored = { refresh: body.refresh_token, user: body.user || (this.stored && this.stored.user) };
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.stored));
    this.dispatchEvent(new Event("session"));
  }

  // signOut ends the session on the server (its refresh tokens, access
  // tokens and connections) and forgets it here, with everything this
  // client kept in localStorage for it (other tabs follow: the storage
  // event).
  async signOut() {
    let token = this.access && this.access.expiresAt > Date.now() ? this.access.token : null;
    if (!token && this.stored) {
      try {
        token = await this.refresh();
      } catch {
        token = null; // offline, or the session is already over
      }
    }
    this.clear();
    forgetLocal();
    if (token) {
      try {
        await fetch(this.authURL + "/logout", { method: "POST", headers: { Authorization: "Bearer " + token } });
      } catch {
        // Signed out here whatever the server said.
      }
    }
  }

  clear() {
    this.access = null;
    this.stored = null;
    localStorage.removeItem(SESSION_KEY);
    this.dispatchEvent(new Event("session"));
  }

  // token returns a valid access token, refreshing it first when it ends
  // within 30 s; it signs out when the session is over.
  async token() {
    if (this.access && this.access.expiresAt - Date.now() > 30000) return this.access.token;
    return this.refresh();
  }

  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async doRefresh() {
    const run = async () => {
      // Another tab may have rotated the token meanwhile: take its one.
      const latest = readStored();
      if (!latest) {
        this.clear();
        throw new ApiError(401, "unauthenticated", "signed out");
      }
      if (this.stored && latest.refresh !== this.stored.refresh && this.access && this.access.expiresAt - Date.now() > 30000) {
        this.stored = latest;
        return this.access.token;
      }
      this.stored = latest;
      let res;
      try {
        res = await fetch(this.authURL + "/token/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: latest.refresh }),
        });
      } catch (e) {
        throw new ApiError(0, "unavailable", "the server cannot be reached");
      }
      if (res.status === 401) {
        this.clear();
        throw new ApiError(401, "unauthenticated", "the session has ended; sign in again");
      }
      const body = await check(res);
      this.accept(body);
      return this.access.token;
    };
    if (navigator.locks) return navigator.locks.request("unhidra.refresh", run);
    return run();
  }

  // auth calls the auth API with the access token.
  auth(method, path, body) {
    return this.call(this.authURL + path, method, body);
  }

  // rest calls the gateway's REST API (/api/v1 + path).
  rest(method, path, body) {
    return this.call("/api/v1" + path, method, body);
  }

  async call(url, method, body, retried) {
    const token = await this.token();
    const opts = { method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, opts);
    } catch {
      throw new ApiError(0, "unavailable", "the server cannot be reached");
    }
    if (res.status === 401 && !retried) {
      this.access = null;
      return this.call(url, method, body, true);
    }
    return check(res);
  }

  // text fetches a plain-text answer of the REST API.
  async text(path) {
    const token = await this.token();
    const res = await fetch("/api/v1" + path, { headers: { Authorization: "Bearer " + token } });
    if (!res.ok) await check(res);
    return res.text();
  }
}

// forgetLocal removes what the client keeps in localStorage for a session
// (the outbox, read marks, …), all under "unhidra.", but the server's
// configuration.
function forgetLocal() {
  try {
    for (const k of Object.keys(localStorage)) {
      if (k.startsWith("unhidra.") && k !== CONFIG_KEY) localStorage.removeItem(k);
    }
  } catch {
    // nothing kept
  }
}

function readStored() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    return s && s.refresh ? s : null;
  } catch {
    return null;
  }
}
