// Message text as elements, never as HTML: links for http(s) and mailto
// addresses only (everything else, javascript: included, stays text), and
// search terms highlighted with <mark>.
import { html } from "../lib.js";

const LINK = /\b(?:https?:\/\/|mailto:)[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}]+$/;

// safeURL returns href when it parses as an http, https or mailto URL.
export function safeURL(href) {
  try {
    const u = new URL(href);
    if (u.protocol === "http:" || u.protocol === "https:" || u.protocol === "mailto:") return u.href;
  } catch {
    // Not a URL: text.
  }
  return "";
}

// linkify splits text into strings and link elements.
export function linkify(text) {
  const out = [];
  let last = 0;
  for (const m of String(text).matchAll(LINK)) {
    let url = m[0];
    const trail = url.match(TRAILING);
    if (trail && !(trail[0].includes(")") && url.includes("("))) url = url.slice(0, url.length - trail[0].length);
    const href = safeURL(url);
    if (!href) continue;
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(html`<a href=${href} rel="noopener noreferrer" target="_blank">${url}</a>`);
    last = m.index + url.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// terms returns the words of a search query, lower-cased, without the
// query syntax (quotes, operators, a trailing *).
export function terms(query) {
  return String(query)
    .split(/\s+/)
    .map((w) => w.replace(/^[-+"'(]+|["')*]+$/g, "").toLowerCase())
    .filter((w) => w && !["and", "or", "not", "near"].includes(w));
}

// highlight splits text into strings and <mark> elements around every
// occurrence of a term (case-insensitive).
export function highlight(text, words) {
  text = String(text);
  const lower = text.toLowerCase();
  const ranges = [];
  for (const w of words) {
    let i = 0;
    while ((i = lower.indexOf(w, i)) !== -1) {
      ranges.push([i, i + w.length]);
      i += w.length;
    }
  }
  ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const out = [];
  let pos = 0;
  for (const [s, e] of ranges) {
    if (s < pos) continue;
    if (s > pos) out.push(text.slice(pos, s));
    out.push(html`<mark>${text.slice(s, e)}</mark>`);
    pos = e;
  }
  if (pos < text.length) out.push(text.slice(pos));
  return out;
}

// bodyText is a message's body as one line of plain text (search results,
// thread roots in notices).
export function bodyText(m) {
  if (m.deleted) return "message deleted";
  if (typeof m.text === "string") return m.text;
  if (m.e2ee !== undefined && m.e2ee !== null) return "Encrypted message";
  if (m.data !== undefined) return compactJSON(m.data);
  return "";
}

export function compactJSON(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}
