-- Resumable tasks: frames taken from segments an interrupted attempt finished, frames
-- upscaled over all attempts, and worker deaths with no segment finished in between (a file
-- that keeps killing workers fails instead of running forever).
ALTER TABLE tasks ADD COLUMN resumed_frames INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN upscaled_frames INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN crash_resumed INTEGER NOT NULL DEFAULT 0;
