-- Device telemetry points and device commands (SPEC §5.5, §6).
-- Telemetry is kept for TELEMETRY_RETENTION and pruned by ts; queries run by
-- (device_id, ts). Commands move pending → delivered → ok|error|timeout.
CREATE TABLE telemetry (
	id          INTEGER PRIMARY KEY,
	device_id   TEXT NOT NULL,
	ts          TEXT NOT NULL,
	seq         INTEGER,
	data        TEXT NOT NULL,
	received_at TEXT NOT NULL
);
CREATE INDEX telemetry_device_ts ON telemetry (device_id, ts);
CREATE INDEX telemetry_ts ON telemetry (ts);

CREATE TABLE commands (
	id           TEXT PRIMARY KEY,
	device_id    TEXT NOT NULL,
	name         TEXT NOT NULL,
	params       TEXT,
	status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'ok', 'error', 'timeout')),
	result       TEXT,
	created_by   TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	deadline     TEXT NOT NULL,
	delivered_at TEXT,
	completed_at TEXT
) WITHOUT ROWID;
CREATE INDEX commands_device_status ON commands (device_id, status, created_at);
CREATE INDEX commands_open_deadline ON commands (deadline) WHERE status IN ('pending', 'delivered');
