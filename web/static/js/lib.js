// The client's few dependencies, in one place: Preact with hooks and htm
// (vendored, see ../vendor/LICENSES.txt). htm templates set every
// interpolated value as text or as a property, never as HTML; the client
// never parses strings as HTML (web_test.go greps every script for the
// ways to do so).
import { h, render, Fragment, createContext } from "../vendor/preact.mjs";
import { useState, useEffect, useRef, useMemo, useCallback, useContext, useReducer, useLayoutEffect } from "../vendor/hooks.mjs";
import htm from "../vendor/htm.mjs";

export const html = htm.bind(h);
export { h, render, Fragment, createContext, useState, useEffect, useRef, useMemo, useCallback, useContext, useReducer, useLayoutEffect };

// useEvent subscribes to an EventTarget's events of type for the life of
// the component (fn may change between renders).
export function useEvent(target, type, fn) {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    if (!target) return undefined;
    const l = (ev) => ref.current(ev);
    target.addEventListener(type, l);
    return () => target.removeEventListener(type, l);
  }, [target, type]);
}

// useRoute returns the current hash route as path segments: "#/channels/X"
// → ["channels", "X"].
export function useRoute() {
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const l = () => setRoute(parseRoute());
    window.addEventListener("hashchange", l);
    return () => window.removeEventListener("hashchange", l);
  }, []);
  return route;
}

export function parseRoute() {
  return location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

export function go(...segments) {
  location.hash = "#/" + segments.map(encodeURIComponent).join("/");
}

// formatTime renders an RFC 3339 time as the local time of day (today) or
// date and time.
export function formatTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return "";
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// newID returns a random id (client_msg_id), from crypto.getRandomValues.
export function newID() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
