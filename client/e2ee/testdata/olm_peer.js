// olm_peer.js drives libolm (the npm package @matrix-org/olm) for
// interop_test.go: it reads one JSON command a line on stdin and answers one
// JSON line on stdout, {"id": n, ...} or {"id": n, "error": "..."}.
//
// Usage: node olm_peer.js /abs/path/to/node_modules/@matrix-org/olm
//
// Byte strings (messages to sign, plaintexts) travel as standard base64 so
// that JSON carries them exactly; libolm's JavaScript API takes and returns
// plaintexts as strings, which it encodes and decodes as UTF-8. Objects are
// kept by handle ("h1", "h2", ...).
"use strict";

const readline = require("readline");

const Olm = require(process.argv[2]);
const objects = new Map();
let nextHandle = 1;

function keep(obj) {
  const h = "h" + nextHandle++;
  objects.set(h, obj);
  return h;
}

function get(h) {
  const obj = objects.get(h);
  if (obj === undefined) throw new Error("no object " + h);
  return obj;
}

const fromB64 = (s) => Buffer.from(s, "base64");
const text = (b64) => fromB64(b64).toString("utf8");
const toB64 = (str) => Buffer.from(str, "utf8").toString("base64");

const ops = {
  version: () => ({ version: Olm.get_library_version() }),

  account: () => {
    const a = new Olm.Account();
    a.create();
    return { handle: keep(a), identity: JSON.parse(a.identity_keys()) };
  },
  generate_one_time_keys: (c) => {
    get(c.account).generate_one_time_keys(c.n);
    return {};
  },
  one_time_keys: (c) => ({ keys: JSON.parse(get(c.account).one_time_keys()).curve25519 }),
  generate_fallback_key: (c) => {
    get(c.account).generate_fallback_key();
    return {};
  },
  unpublished_fallback_key: (c) => ({
    keys: JSON.parse(get(c.account).unpublished_fallback_key()).curve25519,
  }),
  mark_keys_as_published: (c) => {
    get(c.account).mark_keys_as_published();
    return {};
  },
  sign: (c) => ({ signature: get(c.account).sign(new Uint8Array(fromB64(c.message))) }),
  ed25519_verify: (c) => {
    const u = new Olm.Utility();
    try {
      u.ed25519_verify(c.key, new Uint8Array(fromB64(c.message)), c.signature);
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: String(e.message || e) };
    } finally {
      u.free();
    }
  },

  outbound_session: (c) => {
    const s = new Olm.Session();
    s.create_outbound(get(c.account), c.identity_key, c.one_time_key);
    return { handle: keep(s), session_id: s.session_id() };
  },
  // inbound_session answers a prekey message as a libolm client does:
  // create_inbound_from, remove the one-time key it used, decrypt.
  inbound_session: (c) => {
    const a = get(c.account);
    const s = new Olm.Session();
    s.create_inbound_from(a, c.sender_key, c.body);
    a.remove_one_time_keys(s);
    const pt = s.decrypt(0, c.body);
    return { handle: keep(s), session_id: s.session_id(), plaintext: toB64(pt) };
  },
  encrypt: (c) => get(c.session).encrypt(text(c.plaintext)),
  decrypt: (c) => ({ plaintext: toB64(get(c.session).decrypt(c.type, c.body)) }),

  outbound_group: () => {
    const g = new Olm.OutboundGroupSession();
    g.create();
    return { handle: keep(g), session_id: g.session_id(), session_key: g.session_key() };
  },
  group_encrypt: (c) => {
    const g = get(c.group);
    const index = g.message_index();
    return { index, ciphertext: g.encrypt(text(c.plaintext)) };
  },
  inbound_group: (c) => {
    const g = new Olm.InboundGroupSession();
    g.create(c.session_key);
    return { handle: keep(g), session_id: g.session_id(), first_known_index: g.first_known_index() };
  },
  group_decrypt: (c) => {
    const r = get(c.group).decrypt(c.ciphertext);
    return { index: r.message_index, plaintext: toB64(r.plaintext) };
  },
};

function answer(line) {
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    return { id: -1, error: "bad request: " + e.message };
  }
  const op = ops[c.op];
  if (op === undefined) return { id: c.id, error: "unknown op " + c.op };
  try {
    return Object.assign({ id: c.id }, op(c));
  } catch (e) {
    return { id: c.id, error: String(e.message || e) };
  }
}

Olm.init().then(
  () => {
    process.stdout.write(JSON.stringify({ ready: true }) + "\n");
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    rl.on("line", (line) => process.stdout.write(JSON.stringify(answer(line)) + "\n"));
    rl.on("close", () => process.exit(0));
  },
  (e) => {
    process.stderr.write("Olm.init failed: " + e + "\n");
    process.exit(1);
  },
);
