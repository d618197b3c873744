-- The audit log (internal/audit): records, the Merkle tree's completed
-- nodes and the signed heads. All three are append-only: the triggers
-- refuse every UPDATE and DELETE, so no statement of the server (or of an
-- operator's mistake) can change history; what someone with the file can
-- still do is found by `unhidra audit verify`. INSERT OR REPLACE deletes
-- without firing DELETE triggers (recursive_triggers is off), so an insert
-- over an existing key is refused too.
CREATE TABLE audit_records (
    seq        INTEGER PRIMARY KEY,   -- leaf index, from 0
    ts         INTEGER NOT NULL,      -- Unix nanoseconds
    actor_kind TEXT    NOT NULL,
    actor_id   TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    entry      BLOB    NOT NULL,      -- the canonical record: the leaf
    leaf       BLOB    NOT NULL       -- SHA-256(0x00 || entry)
);
CREATE INDEX audit_records_actor ON audit_records(actor_id, seq);
CREATE INDEX audit_records_action ON audit_records(action, seq);
CREATE INDEX audit_records_target ON audit_records(target, seq);
CREATE INDEX audit_records_ts ON audit_records(ts);

-- A perfect subtree's hash, keyed by the tree size that completed it and
-- its level (index = size >> level - 1): completion order is key order.
CREATE TABLE audit_nodes (
    size  INTEGER NOT NULL,
    level INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (size, level)
) WITHOUT ROWID;

-- A signed tree head per group commit.
CREATE TABLE audit_heads (
    size INTEGER PRIMARY KEY,
    ts   INTEGER NOT NULL,
    root BLOB    NOT NULL,
    note TEXT    NOT NULL            -- the signed checkpoint
);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_replace BEFORE INSERT ON audit_records
WHEN EXISTS (SELECT 1 FROM audit_records WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_nodes_no_replace BEFORE INSERT ON audit_nodes
WHEN EXISTS (SELECT 1 FROM audit_nodes WHERE size = NEW.size AND level = NEW.level)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_heads_no_replace BEFORE INSERT ON audit_heads
WHEN EXISTS (SELECT 1 FROM audit_heads WHERE size = NEW.size)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
