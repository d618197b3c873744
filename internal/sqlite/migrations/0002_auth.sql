-- Accounts, login sessions and their refresh tokens (SPEC §4).
-- Usernames are stored lower-case and compared case-insensitively.
CREATE TABLE users (
	username      TEXT PRIMARY KEY COLLATE NOCASE,
	display_name  TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	roles         TEXT NOT NULL DEFAULT '',  -- comma-separated
	verified      INTEGER NOT NULL DEFAULT 0,
	disabled      INTEGER NOT NULL DEFAULT 0,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);

-- A session is one login: the family of refresh tokens rotated from it and
-- the access tokens whose `sid` names it.
CREATE TABLE sessions (
	id            TEXT PRIMARY KEY,
	username      TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	created_at    TEXT NOT NULL,
	expires_at    TEXT NOT NULL,
	revoked_at    TEXT,
	revoke_reason TEXT
);
CREATE INDEX sessions_username ON sessions(username);
CREATE INDEX sessions_active ON sessions(expires_at) WHERE revoked_at IS NULL;

-- Refresh tokens are stored only as SHA-256 hashes. used_at is set when a
-- token is rotated; presenting it again revokes its session.
CREATE TABLE refresh_tokens (
	hash       BLOB PRIMARY KEY,
	session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	used_at    TEXT
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
