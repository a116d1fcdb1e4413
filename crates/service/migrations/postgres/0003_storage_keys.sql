-- Task rows name their files by storage key (`UUID.ext`), not by a machine's path: any
-- machine can run any task. Rows written before keep their paths; their file names are the
-- keys.
ALTER TABLE tasks RENAME COLUMN input_path TO input_key;
ALTER TABLE tasks RENAME COLUMN output_path TO output_key;
