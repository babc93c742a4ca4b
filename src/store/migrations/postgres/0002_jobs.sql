-- One handler to run for one (account, debounce subject).
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    handler      TEXT    NOT NULL,
    account      TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    -- pending: waiting for run_at; running: leased to lease_owner; done; dead: gave up (see last_error).
    state        TEXT    NOT NULL,
    run_at       BIGINT  NOT NULL, -- Unix ms: not before
    first_seen   BIGINT  NOT NULL, -- Unix ms: the first event folded in
    deadline_at  BIGINT  NOT NULL, -- Unix ms: first_seen + max_wait; debounce never moves run_at past it
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);

-- Debounce: later events fold into the one pending job of their key.
CREATE UNIQUE INDEX jobs_one_pending_per_key ON jobs (handler, account, subject) WHERE state = 'pending';
-- Serialization: at most one running job per account, enforced by the database.
CREATE UNIQUE INDEX jobs_one_running_per_account ON jobs (account) WHERE state = 'running';
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';

-- Every event a job has coalesced, in arrival order.
CREATE TABLE job_events (
    job_id    BIGINT NOT NULL REFERENCES jobs (id),
    event_seq BIGINT NOT NULL REFERENCES events (seq),
    PRIMARY KEY (job_id, event_seq)
);
