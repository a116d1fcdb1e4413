-- Workers, wherever they run: each writes its row every few seconds (its heartbeat), so the
-- API lists who is alive, on which machine and device, doing what.
CREATE TABLE workers (
    id BIGINT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    device TEXT NOT NULL,
    standalone BIGINT NOT NULL,
    task_id TEXT,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
