-- Retention (`store::retention`): the pruner walks old rows in time order and deletes a job's
-- children by job id, so each of its statements needs an index.

-- Events older than the cutoff, oldest first.
CREATE INDEX events_by_received ON events (received_at);
-- Finished jobs (done, merged, dead) by when they finished; pending and running jobs have none.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Whether any job still refers to an event; also what the foreign-key check reads when an event
-- is deleted (without it, a scan of job_events per event).
CREATE INDEX job_events_by_event ON job_events (event_seq);
-- A job's approvals: whether one is still undecided, and deleting them with the job.
CREATE INDEX approvals_by_job ON approvals (job_id);
