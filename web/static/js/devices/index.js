// Device views: the devices list (list.js) and a device's page (page.js),
// on the fleet store (fleet.js); ui.js holds the dialogs the admin views
// share (register, the key shown once, confirmations).
export { DevicesList } from "./list.js";
export { DevicePage } from "./page.js";
