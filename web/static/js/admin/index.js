// Admin views (placeholder until the admin views land).
import { html } from "../lib.js";

export function AdminPage({ tab }) {
  return html`<section><h2>Admin</h2><p>${tab}</p></section>`;
}
