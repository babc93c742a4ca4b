//! Schema migrations: numbered SQL files compiled into the binary, applied in order, recorded in
//! `schema_migrations`. Applied migrations are never edited; a change is a new file.

/// One migration file.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("migrations/sqlite/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "jobs",
        sql: include_str!("migrations/sqlite/0002_jobs.sql"),
    },
    Migration {
        version: 3,
        name: "runs",
        sql: include_str!("migrations/sqlite/0003_runs.sql"),
    },
    Migration {
        version: 4,
        name: "approvals",
        sql: include_str!("migrations/sqlite/0004_approvals.sql"),
    },
    Migration {
        version: 5,
        name: "upstream",
        sql: include_str!("migrations/sqlite/0005_upstream.sql"),
    },
    Migration {
        version: 6,
        name: "retention",
        sql: include_str!("migrations/sqlite/0006_retention.sql"),
    },
    Migration {
        version: 7,
        name: "job_folds",
        sql: include_str!("migrations/sqlite/0007_job_folds.sql"),
    },
    Migration {
        version: 8,
        name: "trace_context",
        sql: include_str!("migrations/sqlite/0008_trace_context.sql"),
    },
    Migration {
        version: 9,
        name: "budgets",
        sql: include_str!("migrations/sqlite/0009_budgets.sql"),
    },
    Migration {
        version: 10,
        name: "llm_breakers",
        sql: include_str!("migrations/sqlite/0010_llm_breakers.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("migrations/postgres/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "jobs",
        sql: include_str!("migrations/postgres/0002_jobs.sql"),
    },
    Migration {
        version: 3,
        name: "runs",
        sql: include_str!("migrations/postgres/0003_runs.sql"),
    },
    Migration {
        version: 4,
        name: "approvals",
        sql: include_str!("migrations/postgres/0004_approvals.sql"),
    },
    Migration {
        version: 5,
        name: "upstream",
        sql: include_str!("migrations/postgres/0005_upstream.sql"),
    },
    Migration {
        version: 6,
        name: "retention",
        sql: include_str!("migrations/postgres/0006_retention.sql"),
    },
    Migration {
        version: 7,
        name: "job_folds",
        sql: include_str!("migrations/postgres/0007_job_folds.sql"),
    },
    Migration {
        version: 8,
        name: "trace_context",
        sql: include_str!("migrations/postgres/0008_trace_context.sql"),
    },
    Migration {
        version: 9,
        name: "budgets",
        sql: include_str!("migrations/postgres/0009_budgets.sql"),
    },
    Migration {
        version: 10,
        name: "llm_breakers",
        sql: include_str!("migrations/postgres/0010_llm_breakers.sql"),
    },
];
