// Small pieces the chat views share: the modal dialog and error line of
// ../ui.js, and presence in words.
export { Modal, ErrorLine } from "../ui.js";

// presenceText is the words for a presence status.
export function presenceText(status) {
  switch (status) {
    case "online":
      return "online";
    case "away":
      return "away";
    case "dnd":
      return "do not disturb";
    default:
      return "offline";
  }
}
