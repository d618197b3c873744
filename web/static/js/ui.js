// Pieces every view shares: a modal dialog (native <dialog>, so focus is
// trapped and Escape closes it) and an error line.
import { html, useEffect, useRef } from "./lib.js";

let seq = 0;

export function Modal({ title, onClose, children, className }) {
  const ref = useRef(null);
  const idRef = useRef("dlg-" + ++seq);
  const close = useRef(onClose);
  close.current = onClose;
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) {
      try {
        d.showModal();
      } catch {
        d.setAttribute("open", "");
      }
    }
    const l = () => close.current && close.current();
    d.addEventListener("close", l);
    return () => {
      d.removeEventListener("close", l);
      if (d.open) d.close();
    };
  }, []);
  return html`<dialog ref=${ref} class=${"modal " + (className || "")} aria-labelledby=${idRef.current}>
    <div class="modal-head">
      <h2 id=${idRef.current}>${title}</h2>
      <button type="button" class="close" aria-label="Close" onClick=${() => ref.current.close()}>×</button>
    </div>
    ${children}
  </dialog>`;
}

export function ErrorLine({ error }) {
  return html`<p role="alert" class="error">${error ? error.message || String(error) : ""}</p>`;
}
