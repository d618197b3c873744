-- Chat: channels, members, messages with gapless per-channel offsets, the
-- full-text index over message text, and users' and devices' last_seen.

CREATE TABLE channels (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	kind        TEXT NOT NULL CHECK (kind IN ('public', 'private', 'direct', 'device')),
	e2ee        INTEGER NOT NULL DEFAULT 0,
	topic       TEXT NOT NULL DEFAULT '',
	created_by  TEXT NOT NULL,
	created_at  TEXT NOT NULL,
	-- "a\nb" (sorted usernames) for direct channels: one per pair.
	direct_key  TEXT UNIQUE,
	-- Offset of the newest message; the next message gets last_offset + 1,
	-- assigned in the transaction that stores it.
	last_offset INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX channels_kind ON channels (kind, id);

CREATE TABLE channel_members (
	channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
	user_id    TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
	joined_at  TEXT NOT NULL,
	PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;
CREATE INDEX channel_members_user ON channel_members (user_id, channel_id);

CREATE TABLE messages (
	seq           INTEGER PRIMARY KEY,  -- rowid, also the FTS rowid
	id            TEXT NOT NULL UNIQUE,
	channel_id    TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
	off           INTEGER NOT NULL CHECK (off > 0),
	sender_kind   TEXT NOT NULL,
	sender_id     TEXT NOT NULL,
	created_at    TEXT NOT NULL,
	client_msg_id TEXT,
	thread_id     TEXT,
	text          TEXT,
	data          BLOB,
	e2ee          BLOB,
	edited_at     TEXT,
	deleted       INTEGER NOT NULL DEFAULT 0,
	UNIQUE (channel_id, off)
);
CREATE UNIQUE INDEX messages_client_msg_id
	ON messages (channel_id, sender_kind, sender_id, client_msg_id)
	WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_thread ON messages (thread_id, off) WHERE thread_id IS NOT NULL;

-- Contentless full-text index over the text of messages in channels that are
-- not e2ee; rowid = messages.seq. The store keeps it in sync (insert, edit,
-- tombstone, channel delete).
CREATE VIRTUAL TABLE messages_fts USING fts5 (
	text,
	content = '',
	contentless_delete = 1,
	tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE last_seen (
	kind      TEXT NOT NULL,
	id        TEXT NOT NULL,
	last_seen TEXT NOT NULL,
	PRIMARY KEY (kind, id)
) WITHOUT ROWID;
