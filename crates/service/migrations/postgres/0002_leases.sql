-- Leases: a claim holds until lease_until (ms), which every progress report pushes on; a task
-- whose worker vanished (on any machine) goes back to the queue once its lease lapses.
ALTER TABLE tasks ADD COLUMN lease_until BIGINT;
