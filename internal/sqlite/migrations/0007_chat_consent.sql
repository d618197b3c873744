-- Chat consent, blocks and the channel-creation quota.
--
-- accepted_at: when a member accepted the channel (joined it themselves,
-- created or opened it, posted in it, or POST /channels/{id}/accept). A
-- member added by someone else stays pending (NULL) until then, and a
-- pending member's presence is shared through no channel; a direct channel
-- shares presence only once both members accepted.
ALTER TABLE channel_members ADD COLUMN accepted_at TEXT;

-- Existing memberships: public and device channels, the channel's creator
-- and anyone who has posted there count as accepted; other members of
-- private and direct channels (added by someone else, never posted) are
-- pending.
UPDATE channel_members SET accepted_at = joined_at
WHERE (SELECT c.kind FROM channels c WHERE c.id = channel_members.channel_id) IN ('public', 'device')
   OR user_id = (SELECT c.created_by FROM channels c WHERE c.id = channel_members.channel_id)
   OR EXISTS (SELECT 1 FROM messages m
              WHERE m.channel_id = channel_members.channel_id AND m.sender_kind = 'user' AND m.sender_id = channel_members.user_id);

-- blocker blocks blocked: no direct channel between them, no messages in
-- their direct channel, no presence between them, no invitations from
-- blocked to blocker.
CREATE TABLE user_blocks (
	blocker    TEXT NOT NULL,
	blocked    TEXT NOT NULL,
	created_at TEXT NOT NULL,
	PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;
CREATE INDEX user_blocks_blocked ON user_blocks (blocked, blocker);

-- Every channel a user creates (not device channels), for the daily quota;
-- rows older than the quota window are pruned as new ones are written.
CREATE TABLE channel_creations (
	user_id    TEXT NOT NULL,
	created_at TEXT NOT NULL
);
CREATE INDEX channel_creations_user ON channel_creations (user_id, created_at);
CREATE INDEX channels_created_by ON channels (created_by, kind);
