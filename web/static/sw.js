// The service worker: it makes the client installable and lets its shell
// (the page, scripts, styles) load offline. It caches only those static
// files; API answers, the WebSocket, /config.json and every other request
// go to the network untouched, never cached.
//
// The server puts two lines before this file (web.go): SHELL_VERSION, a
// digest of the embedded files (a new build is a new worker and a new
// cache), and SHELL_FILES, every file of the shell.
/* global SHELL_VERSION, SHELL_FILES */
const CACHE = "unhidra-shell-" + SHELL_VERSION;
const SHELL = SHELL_FILES;

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k)))).then(() => self.clients.claim()));
});

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  const p = url.pathname;
  if (p.startsWith("/api/") || p.startsWith("/ws") || p === "/config.json" || p === "/metrics" || p.startsWith("/health") || p.startsWith("/ready")) return false;
  return p === "/" || /\.(html|css|js|mjs|svg|webmanifest)$/.test(p);
}

self.addEventListener("fetch", (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== "GET" || !isShell(url)) return; // the network, as is
  // Network first, so a new version shows at once; the cache when offline.
  ev.respondWith(
    fetch(ev.request)
      .then((res) => {
        if (res.ok && res.type === "basic" && !/no-store/.test(res.headers.get("Cache-Control") || "")) {
          const copy = res.clone();
          caches.open(CACHE).then((c) => c.put(ev.request, copy));
        }
        return res;
      })
      .catch(() => caches.match(ev.request).then((r) => r || caches.match("/"))),
  );
});
