-- Segments of one task shared by workers on machines that share no folder: a row holds a
-- segment for a worker until lease_until (renewed while it works); done once the segment's
-- files are in object storage.
CREATE TABLE segment_claims (
    task_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    worker BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, idx)
);
