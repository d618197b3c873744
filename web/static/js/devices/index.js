// Device views (placeholder until the device views land).
import { html } from "../lib.js";

export function DevicesList() {
  return html`<section><h2>Devices</h2></section>`;
}

export function DevicePage({ id }) {
  return html`<section><h2>${id}</h2></section>`;
}
