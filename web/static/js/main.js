// Entry point: the server's client configuration, the session, the
// connection, then the app. The service worker makes the app installable;
// it never caches an API answer (sw.js).
import { html, render } from "./lib.js";
import { Api, loadConfig } from "./api.js";
import { Connection } from "./ws.js";
import { App } from "./app.js";

async function start() {
  const root = document.getElementById("app");
  let config;
  try {
    config = await loadConfig();
  } catch (e) {
    // Never reached the server from this browser yet: say so, and try
    // again shortly.
    root.textContent = "Unhidra cannot reach its server (" + e.message + "); trying again…";
    setTimeout(start, 3000);
    return;
  }
  const api = new Api(config);
  const conn = new Connection(api);
  window.unhidra = { api, conn }; // for the console and the browser tests
  root.textContent = "";
  render(html`<${App} api=${api} conn=${conn} config=${config} />`, root);
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  }
}

start();
