-- One agent run of a job: who ran, how it ended, what it cost, and the transcript a person reads
-- to see why the agent did what it did. Kept after the job finishes; a job has a run per attempt.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    handler       TEXT    NOT NULL,
    account       TEXT    NOT NULL,
    attempt       INTEGER NOT NULL, -- the job's attempt number this run was
    mode          TEXT    NOT NULL, -- live, dry-run or approve
    model         TEXT    NOT NULL,
    started_at    INTEGER NOT NULL, -- Unix ms
    finished_at   INTEGER NOT NULL, -- Unix ms
    -- done, failed, max_steps or deadline
    outcome       TEXT    NOT NULL,
    error         TEXT,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    -- The JSON array of steps, as text in both backends: it reads back byte for byte as written
    -- (PostgreSQL's JSONB would reorder keys and drop duplicates).
    steps         TEXT    NOT NULL
);

-- A job's runs, newest first (`runs list --job`).
CREATE INDEX runs_by_job ON runs (job_id, id);
-- Every run is listed newest first by id, the primary key; these serve the other two filters.
CREATE INDEX runs_by_handler ON runs (handler, id);
CREATE INDEX runs_by_account ON runs (account, id);
