-- Telemetry in two stages. Keyed by (device_id, ts, id), every point lands
-- in its device's own leaf of the B-tree: a group commit of readings from N
-- devices dirties N leaves (and their parents), each written to the WAL,
-- which was half of the cost of a stored reading. Points are now appended
-- to telemetry_recent, in the order they are stored (one leaf at the right
-- edge is shared by the whole commit), and a folder moves them into
-- telemetry_points in the background, sorted, many points of a device per
-- leaf (fold.go). The view telemetry is both: a point moved but not yet
-- deleted from telemetry_recent (the folder inserts and deletes in separate
-- transactions) is seen once.
ALTER TABLE telemetry RENAME TO telemetry_points;

CREATE TABLE telemetry_recent (
	pid         INTEGER PRIMARY KEY,
	device_id   TEXT NOT NULL,
	ts          TEXT NOT NULL,
	id          INTEGER NOT NULL,
	seq         INTEGER,
	data        TEXT NOT NULL,
	received_at TEXT NOT NULL
);

CREATE VIEW telemetry (device_id, ts, id, seq, data, received_at) AS
	SELECT device_id, ts, id, seq, data, received_at FROM telemetry_points
	UNION ALL
	SELECT r.device_id, r.ts, r.id, r.seq, r.data, r.received_at FROM telemetry_recent r
	WHERE NOT EXISTS (SELECT 1 FROM telemetry_points p WHERE p.device_id = r.device_id AND p.ts = r.ts AND p.id = r.id);
