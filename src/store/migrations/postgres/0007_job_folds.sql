-- How many events joined a job after the one that created it (debounce folds): the ingest path
-- learns from the same upsert whether it created the job or folded the event into it.
ALTER TABLE jobs ADD COLUMN folded_events BIGINT NOT NULL DEFAULT 0;
