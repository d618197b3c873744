-- Encrypted files (internal/files): one row per upload of an opaque,
-- client-encrypted blob. The blob itself lives in the data dir under its
-- SHA-256 (files/<hex[:2]>/<hex>), so rows may share one blob.
CREATE TABLE files (
	id            TEXT PRIMARY KEY,
	channel_id    TEXT NOT NULL,
	uploader_kind TEXT NOT NULL,
	uploader_id   TEXT NOT NULL,
	sha256        TEXT NOT NULL,
	size          INTEGER NOT NULL,
	created_at    TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX files_by_sha256 ON files (sha256);
