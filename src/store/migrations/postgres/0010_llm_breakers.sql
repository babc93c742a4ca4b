-- The circuit breaker of each LLM provider (`store::breaker`), shared by every process using the
-- store. `provider` is the provider's kind and base URL, so replicas with one configuration share
-- one row. While `open_until` is set and in the future no job is claimed; after it, one process
-- holds the probe (`probe_owner` until `probe_until`) and claims one job to try the provider.
CREATE TABLE llm_breakers (
    provider    TEXT    PRIMARY KEY,
    failures    INTEGER NOT NULL, -- consecutive provider failures since the last success
    trips       INTEGER NOT NULL, -- openings since it last closed: the cool-down doubles with each
    open_until  BIGINT,           -- Unix ms; NULL while closed
    probe_owner TEXT,
    probe_until BIGINT,           -- Unix ms
    last_error  TEXT,
    updated_at  BIGINT  NOT NULL  -- Unix ms
);
