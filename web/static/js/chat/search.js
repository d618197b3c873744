// Message search: a search landmark with a searchbox "Search messages";
// the results (newest first) open in a panel below it, each with its
// channel as a link (a thread reply links to its thread) and the matched
// terms highlighted with <mark>. Escape or "Close search results" closes
// the panel.
import { html, useEffect, useRef, useState, formatTime } from "../lib.js";
import { useApp } from "../app.js";
import { useChat } from "./store.js";
import { authorOf } from "./message.js";
import { highlight, terms, bodyText } from "./text.js";

export function SearchBox({ compact }) {
  const { api } = useApp();
  const store = useChat();
  const [q, setQ] = useState("");
  const [results, setResults] = useState(null); // {q, messages}
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const wrap = useRef(null);
  const submit = async (ev) => {
    ev.preventDefault();
    const query = q.trim();
    if (!query) {
      setResults(null);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await api.rest("GET", "/search?q=" + encodeURIComponent(query) + "&limit=50");
      setResults({ q: query, messages: Array.isArray(r) ? r : (r && r.messages) || [] });
    } catch (e) {
      setError(e);
      setResults(null);
    } finally {
      setBusy(false);
    }
  };
  const close = () => {
    setResults(null);
    setError(null);
  };
  useEffect(() => {
    if (!results && !error) return undefined;
    const key = (ev) => {
      if (ev.key === "Escape" && !document.querySelector("dialog[open]")) close();
    };
    const hash = () => close();
    document.addEventListener("keydown", key);
    window.addEventListener("hashchange", hash);
    return () => {
      document.removeEventListener("keydown", key);
      window.removeEventListener("hashchange", hash);
    };
  }, [results, error]);
  const words = results ? terms(results.q) : [];
  const channelName = (id) => {
    const c = store.channels.get(id) || store.publicOthers.find((x) => x.id === id);
    return c ? store.channelName(c) : id;
  };
  return html`<div class=${"search" + (compact ? " compact" : "")} ref=${wrap}>
    <form role="search" aria-label="Message search" onSubmit=${submit}>
      <input type="search" aria-label="Search messages" placeholder="Search messages" value=${q} maxlength="256"
        onInput=${(e) => setQ(e.target.value)} />
      <button type="submit" disabled=${busy}>Search</button>
    </form>
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    ${results && html`<section class="search-results" aria-label="Search results">
      <div class="search-head">
        <h3 role="status">${results.messages.length === 0 ? "No messages match " : results.messages.length + (results.messages.length === 1 ? " message matches " : " messages match ")}“${results.q}”</h3>
        <button type="button" onClick=${close}>Close search results</button>
      </div>
      <ol>
        ${results.messages.map((m) => {
          const href = "#/channels/" + encodeURIComponent(m.channel) + (m.thread_id ? "/thread/" + encodeURIComponent(m.thread_id) : "");
          return html`<li key=${m.channel + "/" + m.id} class="result">
            <div class="result-head">
              <a href=${href}>${channelName(m.channel)}</a>
              <span class="author">${authorOf(store, m)}</span>
              <time datetime=${m.created_at}>${formatTime(m.created_at)}</time>
              ${m.thread_id && html`<span class="muted">in a thread</span>`}
            </div>
            <p class="result-text">${highlight(bodyText(m), words)}</p>
          </li>`;
        })}
      </ol>
    </section>`}
  </div>`;
}
