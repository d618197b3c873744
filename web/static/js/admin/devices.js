// Every device: register one (for any owner) with its key shown once and
// copyable, rotate a key, revoke a device.
import { html, useEffect } from "../lib.js";
import { useFleet } from "../devices/fleet.js";
import { useKeyFlow } from "../devices/ui.js";
import { DevicesTable, useWatchAll } from "../devices/list.js";

export function AdminDevices() {
  const fleet = useFleet();
  const flow = useKeyFlow(fleet);
  useEffect(() => {
    fleet.load(false);
  }, []);
  const devices = fleet.list();
  useWatchAll(fleet, devices);
  const actions = (d) =>
    d.revoked
      ? html`<span class="muted">revoked</span>`
      : html`<button type="button" aria-label=${"Rotate key of " + d.name} onClick=${() => flow.rotate(d)}>Rotate key</button>
          <button type="button" class="danger" aria-label=${"Revoke " + d.name} onClick=${() => flow.revoke(d)}>Revoke</button>`;
  return html`<div class="admin-panel">
    <div class="dev-head">
      <h3>All devices</h3>
      <button type="button" class="primary" onClick=${flow.register}>Register device</button>
    </div>
    ${fleet.error && html`<p role="alert" class="error">${fleet.error.message}</p>`}
    ${!fleet.loaded && !fleet.error && html`<p class="loading">Loading devices…</p>`}
    ${fleet.loaded && devices.length === 0 && html`<p class="muted">No devices.</p>`}
    ${devices.length > 0 && html`<${DevicesTable} devices=${devices} owner=${true} actions=${actions} caption="All devices" />`}
    ${flow.view}
  </div>`;
}
