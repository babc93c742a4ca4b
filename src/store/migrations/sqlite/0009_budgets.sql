-- What each run cost by the configured price table (USD); NULL when its model has no price, and
-- for runs recorded before prices existed.
ALTER TABLE runs ADD COLUMN cost_usd REAL;

-- Tokens and cost spent per UTC day, per account and per handler: what `[budgets]` holds them to.
-- Every replica adds to and reads the same rows, after each model step.
CREATE TABLE usage_days (
    day      TEXT    NOT NULL, -- the UTC date, YYYY-MM-DD
    scope    TEXT    NOT NULL, -- account or handler
    name     TEXT    NOT NULL, -- the account's or the handler's name
    tokens   INTEGER NOT NULL, -- input and output tokens
    cost_usd REAL    NOT NULL, -- of the steps whose model has a price
    PRIMARY KEY (day, scope, name)
);
