-- Tasks: one row each, the queue included (status 'queued', claimed in creation order).
-- IF NOT EXISTS: databases made before versioned migrations already have this table.
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    owner TEXT,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    settings TEXT NOT NULL,
    models TEXT NOT NULL,
    notes TEXT NOT NULL,
    input_name TEXT NOT NULL,
    input_path TEXT NOT NULL,
    output_path TEXT NOT NULL,
    input TEXT NOT NULL,
    out_width INTEGER NOT NULL,
    out_height INTEGER NOT NULL,
    current_frame INTEGER NOT NULL DEFAULT 0,
    total_frames INTEGER NOT NULL DEFAULT 0,
    fps REAL NOT NULL DEFAULT 0,
    eta_seconds REAL NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    expires_at INTEGER,
    worker_pid INTEGER,
    output_bytes INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency ON tasks (owner, idempotency_key);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
