// The devices list (#/devices): my devices (all of them for admins) by
// name, with their state as text, when they were last seen and their
// latest values, kept live from the device channels.
import { html, useEffect } from "../lib.js";
import { useApp } from "../app.js";
import { useFleet, numericFields, formatValue } from "./fleet.js";
import { State, LastSeen, useKeyFlow } from "./ui.js";

// useWatchAll follows every listed device's channel while mounted.
export function useWatchAll(fleet, devices) {
  const ids = devices.filter((d) => !d.revoked).map((d) => d.device_id);
  const key = ids.join("\n");
  useEffect(() => {
    const stops = ids.map((id) => fleet.watch(id));
    return () => stops.forEach((s) => s());
  }, [key]);
}

export function DevicesList() {
  const { api } = useApp();
  const fleet = useFleet();
  const flow = useKeyFlow(fleet);
  useEffect(() => {
    fleet.load(true);
  }, []);
  const devices = fleet.list();
  useWatchAll(fleet, devices);
  const admin = api.isAdmin();
  return html`<section class="devices" aria-labelledby="devices-title">
    <div class="dev-head">
      <h2 id="devices-title">Devices</h2>
      <button type="button" class="primary" onClick=${flow.register}>Register device</button>
    </div>
    ${fleet.error && html`<p role="alert" class="error">Devices could not be loaded: ${fleet.error.message}</p>`}
    ${!fleet.loaded && !fleet.error && html`<p class="loading">Loading devices…</p>`}
    ${fleet.loaded && devices.length === 0 && html`<p class="muted">No devices yet. Register one to get its API key, then connect it with the SDK, MQTT or <code>unhidra agent</code>.</p>`}
    ${devices.length > 0 && html`<${DevicesTable} devices=${devices} owner=${admin} latest=${true} />`}
    ${flow.view}
  </section>`;
}

// DevicesTable lists devices; actions (admin: rotate and revoke) add a
// column of buttons named after each device.
export function DevicesTable({ devices, owner, latest, actions, caption }) {
  return html`<div class="table-wrap"><table class="dev-table">
    ${caption && html`<caption class="visually-hidden">${caption}</caption>`}
    <thead><tr>
      <th scope="col">Name</th>
      ${owner && html`<th scope="col">Owner</th>`}
      <th scope="col">State</th>
      <th scope="col">Last seen</th>
      ${latest && html`<th scope="col">Latest values</th>`}
      ${actions && html`<th scope="col"><span class="visually-hidden">Actions</span></th>`}
    </tr></thead>
    <tbody aria-live="polite">
      ${devices.map((d) => html`<tr key=${d.device_id} data-device=${d.device_id}>
        <td data-label="Name"><a href=${"#/devices/" + encodeURIComponent(d.device_id)}>${d.name || d.device_id}</a>
          ${d.name !== d.device_id && html`<div class="muted dev-id">${d.device_id}</div>`}</td>
        ${owner && html`<td data-label="Owner">${d.owner}</td>`}
        <td data-label="State"><${State} device=${d} /></td>
        <td data-label="Last seen"><${LastSeen} ts=${d.last_seen} /></td>
        ${latest && html`<td data-label="Latest values"><${LatestValues} latest=${d.latest} /></td>`}
        ${actions && html`<td class="row-actions">${actions(d)}</td>`}
      </tr>`)}
    </tbody>
  </table></div>`;
}

export function LatestValues({ latest }) {
  if (!latest) return html`<span class="muted">no data</span>`;
  const fields = numericFields(latest.data);
  if (!fields.length) return html`<span class="muted">no numeric values</span>`;
  return html`<ul class="latest" aria-label="Latest values">
    ${fields.slice(0, 8).map(([k, v]) => html`<li key=${k}><span class="metric-name">${k}</span> <span class="value">${formatValue(v)}</span></li>`)}
    ${fields.length > 8 && html`<li class="muted">+${fields.length - 8} more</li>`}
  </ul>`;
}
