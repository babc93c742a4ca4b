-- The W3C traceparent of the webhook request that delivered the event, kept only when traces are
-- exported: a job's run continues the trace of the requests that created it, on any replica.
ALTER TABLE events ADD COLUMN trace_context TEXT;
