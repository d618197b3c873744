-- Device ids are case-insensitive, like usernames: "GH-1" and "gh-1" name one
-- device. The registry stores new ids in lower case and finds every id in any
-- case (WHERE id = ? COLLATE NOCASE, on this index). Ids stored before this
-- migration keep their case, since channels, messages, telemetry and commands
-- refer to them as they are. Two of them that differ only in case (possible
-- before) are both kept, so this migration cannot fail on an existing
-- database; the trigger refuses any new id that matches an existing one in
-- another case, which a UNIQUE index on such a table could not be built to do.
CREATE INDEX devices_id_nocase ON devices (id COLLATE NOCASE);

CREATE TRIGGER devices_id_unique_nocase BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM devices WHERE id = NEW.id COLLATE NOCASE)
BEGIN
	SELECT RAISE(ABORT, 'UNIQUE constraint failed: devices.id (case-insensitive)');
END;
