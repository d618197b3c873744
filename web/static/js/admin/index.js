// Admin views (#/admin/<tab>): users (verify, disable), every device
// (register with the key shown once, rotate, revoke), live connections and
// the audit log with its verification state. The shell routes here only
// for admins; the server refuses everyone else anyway.
import { html } from "../lib.js";
import { AdminUsers } from "./users.js";
import { AdminDevices } from "./devices.js";
import { AdminConnections } from "./connections.js";
import { AdminAudit } from "./audit.js";

const TABS = [
  { key: "users", label: "Users", view: AdminUsers },
  { key: "devices", label: "Devices", view: AdminDevices },
  { key: "connections", label: "Connections", view: AdminConnections },
  { key: "audit", label: "Audit log", view: AdminAudit },
];

export function AdminPage({ tab }) {
  const current = TABS.find((t) => t.key === tab) || TABS[0];
  const View = current.view;
  return html`<section class="admin" aria-labelledby="admin-title">
    <h2 id="admin-title">Admin</h2>
    <nav aria-label="Admin sections" class="admin-tabs">
      ${TABS.map((t) => html`<a href=${"#/admin/" + t.key} aria-current=${t === current ? "page" : undefined}>${t.label}</a>`)}
    </nav>
    <${View} key=${current.key} />
  </section>`;
}
