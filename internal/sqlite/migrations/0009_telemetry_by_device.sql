-- Telemetry points stored in the order they are read: by device, then time.
-- The table was a rowid table with two indexes, (device_id, ts) for queries
-- and (ts) for pruning: three B-trees written for every point, on the path
-- every device reading takes. Keyed by (device_id, ts, id) WITHOUT ROWID,
-- the table is its own query index: one B-tree per point. Pruning walks it
-- device by device. id orders points of one ts in the order they were
-- stored; the store assigns it (ids of existing points are kept, new ones
-- are larger).
CREATE TABLE telemetry_by_device (
	device_id   TEXT NOT NULL,
	ts          TEXT NOT NULL,
	id          INTEGER NOT NULL,
	seq         INTEGER,
	data        TEXT NOT NULL,
	received_at TEXT NOT NULL,
	PRIMARY KEY (device_id, ts, id)
) WITHOUT ROWID;
INSERT INTO telemetry_by_device (device_id, ts, id, seq, data, received_at)
	SELECT device_id, ts, id, seq, data, received_at FROM telemetry;
DROP TABLE telemetry;
ALTER TABLE telemetry_by_device RENAME TO telemetry;
