-- Devices and their API keys (SPEC §4). A key is stored only as a keyed
-- HMAC-SHA256 hash; online/last_seen are kept by the transports.
CREATE TABLE devices (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	owner      TEXT NOT NULL REFERENCES users(username),
	key_hash   BLOB NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	revoked_at TEXT,
	online     INTEGER NOT NULL DEFAULT 0,
	last_seen  TEXT
);
CREATE INDEX devices_owner ON devices(owner);
