-- A write an agent run wanted to make in a handler's `approve` mode, held until a person decides.
-- The run's record is stored only when the run ends, after its approvals exist, so an approval
-- names its job, attempt and tool call instead of a run id: (job_id, attempt) finds the run.
CREATE TABLE approvals (
    id              BIGSERIAL PRIMARY KEY,
    job_id          BIGINT  NOT NULL REFERENCES jobs (id),
    attempt         INTEGER NOT NULL, -- the job's attempt whose run asked for the write
    call_id         TEXT    NOT NULL, -- the model's tool call id in that run's transcript
    handler         TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    tool            TEXT    NOT NULL, -- dotted name, e.g. happyfox.add_private_note
    arguments       TEXT    NOT NULL, -- JSON text, exactly as the schema accepted it
    -- job-N/step-S/call-C, as the agent computed it: the write is sent under this key, so the
    -- upstream journal makes a repeated execution a no-op.
    idempotency_key TEXT    NOT NULL,
    -- pending → executing (one approver sending it) → approved (sent) or failed (the upstream
    -- refused it); pending → rejected. A transient upstream failure puts executing back to pending.
    state           TEXT    NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,           -- Unix ms: when it was claimed for sending, or rejected
    reason          TEXT,             -- why it was rejected, if the person said
    result          TEXT,             -- JSON text: what the tool returned (approved)
    error           TEXT,             -- why sending failed (failed), or the last transient failure (pending)
    created_at      BIGINT  NOT NULL, -- Unix ms
    updated_at      BIGINT  NOT NULL  -- Unix ms
);

-- One approval per write: a job re-run that asks for the same step's write finds the first one.
CREATE UNIQUE INDEX approvals_by_key ON approvals (idempotency_key);
-- Listed newest first by id; these serve the filters (`approvals list --state pending` most).
CREATE INDEX approvals_by_state ON approvals (state, id);
CREATE INDEX approvals_by_account ON approvals (account, id);
CREATE INDEX approvals_by_handler ON approvals (handler, id);
