// Chat: the channel sidebar, a channel view (with its thread panel) and
// the home view. State shared between them lives in store.js.
import { html } from "../lib.js";
import { useApp } from "../app.js";
import { useChat } from "./store.js";
import { SearchBox } from "./search.js";

export { ChannelSidebar } from "./sidebar.js";
export { ChannelView } from "./channel.js";

export function ChatHome() {
  const { api } = useApp();
  const store = useChat();
  const user = api.user || {};
  const list = store.sorted();
  const unread = list.filter((c) => store.unread(c.id) > 0);
  const rest = list.filter((c) => store.unread(c.id) === 0);
  const link = (c) => html`<li key=${c.id}>
    <a href=${"#/channels/" + encodeURIComponent(c.id)}>${store.channelName(c)}</a>
    ${store.unread(c.id) > 0 && html` <span class="unread" aria-label=${store.unread(c.id) + " unread"}>${store.unread(c.id)}</span>`}
    ${c.topic && html` <span class="muted"> — ${c.topic}</span>`}
  </li>`;
  return html`<section class="chat-home" aria-labelledby="home-title">
    <h2 id="home-title">Welcome, ${user.display_name || user.username}</h2>
    <${SearchBox} />
    <div class="home-actions">
      <button type="button" class="primary" onClick=${() => store.openDialog("new-channel")}>New channel</button>
      <button type="button" onClick=${() => store.openDialog("browse")}>Browse channels</button>
      <button type="button" onClick=${() => store.openDialog("direct")}>New direct message</button>
    </div>
    ${unread.length > 0 && html`<h3>Unread</h3><ul class="home-list">${unread.map(link)}</ul>`}
    <h3>Your channels</h3>
    ${store.loaded && list.length === 0 ? html`<p class="muted">You are in no channel yet: create one or browse the public ones.</p>` : html`<ul class="home-list">${rest.map(link)}</ul>`}
  </section>`;
}
