-- The end-to-end encryption key directory (internal/keys): each user's
-- client devices with their public identity keys and signed fallback key,
-- and their signed one-time keys. The server holds public keys only.
CREATE TABLE e2ee_devices (
	user_id            TEXT NOT NULL,
	device_id          TEXT NOT NULL,
	curve25519         TEXT NOT NULL,
	ed25519            TEXT NOT NULL,
	identity_signature TEXT NOT NULL,
	-- The fallback key, served when no one-time key is left (NULL: none).
	fallback_id        TEXT,
	fallback_key       TEXT,
	fallback_signature TEXT,
	created_at         TEXT NOT NULL,
	updated_at         TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;

-- One-time keys, each handed out once (a claim deletes it) in upload order
-- (rowid).
CREATE TABLE e2ee_one_time_keys (
	user_id    TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	key        TEXT NOT NULL,
	signature  TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE (user_id, device_id, key_id),
	FOREIGN KEY (user_id, device_id) REFERENCES e2ee_devices (user_id, device_id) ON DELETE CASCADE
);
