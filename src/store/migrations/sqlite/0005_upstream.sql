-- The action journal: one row per write a tool sent upstream, under the call's idempotency key
-- (job, step, call). A re-run of the job finds its earlier writes here and does not send them
-- again. `state` is 'sent' from just before the request leaves until its answer is recorded
-- ('done'); a row still 'sent' after a crash is in doubt and is never sent again.
CREATE TABLE actions (
    key         TEXT    PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    account     TEXT    NOT NULL,
    -- method, path, query and body as sent: a re-run that diverged is visible in the log
    request     TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    status      INTEGER,          -- the upstream's HTTP status, once answered
    response    TEXT,             -- the upstream's body, once answered
    created_at  INTEGER NOT NULL, -- Unix ms
    finished_at INTEGER
);
CREATE INDEX actions_by_job ON actions (job_id);

-- The rate governor's call slots are kept in memory by the SQLite store (one process; a durable
-- commit per upstream call would cost more than the call). PostgreSQL shares them in a table.

-- An account the upstream told to wait (429, or an exhausted budget): no call of it is sent, and
-- no job of it is claimed, before paused_until.
CREATE TABLE account_pauses (
    account      TEXT    PRIMARY KEY,
    paused_until INTEGER NOT NULL, -- Unix ms
    reason       TEXT    NOT NULL
);
