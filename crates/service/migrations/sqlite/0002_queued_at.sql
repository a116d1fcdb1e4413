-- When a task joined the queue: workers take tasks in this order, so a draft started late
-- waits behind tasks queued before it (creation time alone would let it jump ahead).
ALTER TABLE tasks ADD COLUMN queued_at INTEGER;
UPDATE tasks SET queued_at = created_at WHERE queued_at IS NULL AND status = 'queued';
CREATE INDEX IF NOT EXISTS tasks_queued ON tasks (status, queued_at);
