-- Every webhook that was acknowledged, once per (source, sender's event id).
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    source       TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    account      TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    occurred_at  BIGINT  NOT NULL, -- Unix milliseconds
    received_at  BIGINT  NOT NULL, -- Unix milliseconds
    actor_kind   TEXT,
    actor_id     TEXT,
    -- routed: started or joined jobs; unrouted: no handler matched; ignored: kept, never routed (status_reason says why).
    status       TEXT    NOT NULL DEFAULT 'routed',
    status_reason TEXT,
    payload      TEXT    NOT NULL,
    UNIQUE (source, event_id)
);

CREATE INDEX events_by_account_subject ON events (account, subject, seq);
