// Chat views (placeholder until the chat views land): the channel sidebar,
// a channel view and the home view.
import { html, useEffect, useState } from "../lib.js";
import { useApp } from "../app.js";

export function ChannelSidebar() {
  const { api } = useApp();
  const [channels, setChannels] = useState([]);
  useEffect(() => {
    api.rest("GET", "/channels").then((r) => setChannels(r.channels || r || [])).catch(() => {});
  }, []);
  return html`<nav aria-label="Channels" class="channels">
    <ul>${channels.map((c) => html`<li key=${c.id}><a href=${"#/channels/" + encodeURIComponent(c.id)}>${c.name}</a></li>`)}</ul>
  </nav>`;
}

export function ChannelView({ id }) {
  return html`<section><h2>${id}</h2><ol role="log"></ol></section>`;
}

export function ChatHome() {
  return html`<section><h2>Welcome</h2><p>Pick a channel.</p></section>`;
}
