// Verifying the audit log in the browser (docs/audit.md), with WebCrypto
// only: the checkpoint's Ed25519 signature (a signed note of
// golang.org/x/mod/sumdb/note) under the verifier key, then each record's
// RFC 6962 inclusion proof against the checkpoint's root.
//
// The leaf of a record is SHA-256(0x00 ‖ its canonical entry). The REST
// answer gives the record's fields, not its entry bytes: canonicalEntry
// re-encodes them exactly as audit.Record.Encode does (fields in declared
// order, empty optional ones omitted, details sorted by their UTF-8 bytes,
// no HTML escaping, control characters escaped, U+2028 and U+2029 escaped
// as encoding/json does). A mismatch cannot pass unnoticed: the leaf would
// not verify.

const te = new TextEncoder();

export function b64decode(s) {
  const bin = atob(s.trim());
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export function available() {
  return !!(window.crypto && crypto.subtle);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// parseVerifierKey reads "name+hash+base64(0x01 ‖ pubkey)" and checks the
// key hash (the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ pubkey)).
export async function parseVerifierKey(vkey) {
  // The base64 key may itself hold "+": cut at the first two only.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(vkey.trim());
  if (!m) throw new Error("the verifier key is malformed");
  const [, name, hashHex, b64] = m;
  const key = b64decode(b64);
  if (key.length !== 33 || key[0] !== 1) throw new Error("the verifier key is not an Ed25519 key");
  const sum = await sha256(concat(te.encode(name + "\n"), key));
  const hash = (((sum[0] << 24) | (sum[1] << 16) | (sum[2] << 8) | sum[3]) >>> 0).toString(16).padStart(8, "0");
  if (hash !== hashHex) throw new Error("the verifier key's hash does not match its key");
  return { name, hash: parseInt(hashHex, 16) >>> 0, pub: key.slice(1) };
}

// openCheckpoint verifies a checkpoint note's signature by the key and
// returns {origin, size, root, time}.
export async function openCheckpoint(note, vkey) {
  if (!note.endsWith("\n")) throw new Error("the checkpoint is not a signed note");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint has no signature");
  const text = note.slice(0, split + 1);
  const sigLines = note.slice(split + 2).split("\n").filter(Boolean);
  const k = await parseVerifierKey(vkey);
  let signed = false;
  let sawName = false;
  const pub = await crypto.subtle.importKey("raw", k.pub, { name: "Ed25519" }, false, ["verify"]);
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("the checkpoint has a malformed signature line");
    if (m[1] !== k.name) continue;
    sawName = true;
    const sig = b64decode(m[2]);
    if (sig.length !== 68) continue;
    const hash = ((sig[0] << 24) | (sig[1] << 16) | (sig[2] << 8) | sig[3]) >>> 0;
    if (hash !== k.hash) continue;
    if (await crypto.subtle.verify({ name: "Ed25519" }, pub, sig.slice(4), te.encode(text))) signed = true;
  }
  if (!signed) throw new Error(sawName ? "the checkpoint's signature is not valid" : "the checkpoint is not signed by " + k.name);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines[0] !== k.name || !/^[0-9]+$/.test(lines[1])) throw new Error("the checkpoint's body is malformed");
  const root = b64decode(lines[2]);
  if (root.length !== 32) throw new Error("the checkpoint's root is not a SHA-256 hash");
  const t = lines.slice(3).find((l) => l.startsWith("time "));
  return { origin: lines[0], size: Number(lines[1]), root, time: t ? t.slice(5) : "" };
}

// escapeGo is what encoding/json adds to JSON.stringify's string escaping:
// U+2028 and U+2029 (both escape everything else alike: '"', '\\',
// controls as \b \t \n \f \r or \u00xx; no HTML escaping here).
function escapeGo(s) {
  return s.replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

function byteCompare(a, b) {
  const x = te.encode(a);
  const y = te.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// canonicalEntry is audit.Record.Encode of a record read from GET /audit.
export function canonicalEntry(r) {
  const o = { seq: r.seq, ts: r.ts, actor: { kind: (r.actor && r.actor.kind) || "", id: (r.actor && r.actor.id) || "" }, action: r.action || "" };
  if (r.target) o.target = r.target;
  o.outcome = r.outcome || "";
  for (const f of ["reason", "ip", "transport", "request_id"]) if (r[f]) o[f] = r[f];
  const keys = Object.keys(r.details || {});
  if (keys.length) {
    o.details = {};
    for (const k of keys.sort(byteCompare)) o.details[k] = r.details[k];
  }
  return escapeGo(JSON.stringify(o));
}

export async function leafHash(entry) {
  return sha256(concat(new Uint8Array([0]), te.encode(entry)));
}

async function nodeHash(l, r) {
  return sha256(concat(new Uint8Array([1]), l, r));
}

// verifyInclusion checks an RFC 6962 audit path (as transparency-dev/
// merkle's proof.VerifyInclusion): leaf at index in the tree of size has
// the root.
export async function verifyInclusion(index, size, leaf, proof, root) {
  if (index >= size) throw new Error("index beyond the tree");
  const inner = bitLen(xorBig(index, size - 1));
  const border = popCount(Math.floor(index / 2 ** inner));
  if (proof.length !== inner + border) throw new Error("wrong proof size");
  let h = leaf;
  for (let i = 0; i < inner; i++) {
    h = Math.floor(index / 2 ** i) % 2 === 0 ? await nodeHash(h, proof[i]) : await nodeHash(proof[i], h);
  }
  for (let i = inner; i < proof.length; i++) h = await nodeHash(proof[i], h);
  if (!equal(h, root)) throw new Error("the proof does not lead to the checkpoint's root");
}

// Indexes stay below 2^53: BigInt for the xor only.
function xorBig(a, b) {
  return Number(BigInt(a) ^ BigInt(b));
}

function bitLen(n) {
  let k = 0;
  while (n > 0) {
    n = Math.floor(n / 2);
    k++;
  }
  return k;
}

function popCount(n) {
  let k = 0;
  while (n > 0) {
    k += n % 2;
    n = Math.floor(n / 2);
  }
  return k;
}

export { equal };
