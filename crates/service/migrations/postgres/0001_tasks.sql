-- Tasks: one row each, the queue included (status 'queued', claimed in the order they joined
-- it with FOR UPDATE SKIP LOCKED, so any number of workers claim each task once). The same
-- columns as the SQLite schema after its migrations, so one decoder reads both.
CREATE TABLE tasks (
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
    out_width BIGINT NOT NULL,
    out_height BIGINT NOT NULL,
    current_frame BIGINT NOT NULL DEFAULT 0,
    total_frames BIGINT NOT NULL DEFAULT 0,
    fps DOUBLE PRECISION NOT NULL DEFAULT 0,
    eta_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    expires_at BIGINT,
    worker_pid BIGINT,
    output_bytes BIGINT,
    queued_at BIGINT,
    -- Resumable tasks: see the SQLite migration 0003.
    resumed_frames BIGINT NOT NULL DEFAULT 0,
    upscaled_frames BIGINT NOT NULL DEFAULT 0,
    crashes BIGINT NOT NULL DEFAULT 0,
    crash_resumed BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_created ON tasks (created_at);
CREATE INDEX tasks_queued ON tasks (status, queued_at);
