//! The LLM provider breakers for the SQLite store: read the row, run `breaker::step`, write the
//! result, in one immediate transaction (the store's one connection serialises them anyway).

use crate::store::StoreError;
use crate::store::breaker::{self, BreakerChange, BreakerEvent, BreakerRow};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub fn read(conn: &Connection, provider: &str) -> Result<Option<BreakerRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT failures, trips, open_until, probe_owner, probe_until, last_error
             FROM llm_breakers WHERE provider = ?1",
        )?
        .query_row([provider], |r| {
            Ok(BreakerRow {
                failures: r.get(0)?,
                trips: r.get(1)?,
                open_until_ms: r.get(2)?,
                probe_owner: r.get(3)?,
                probe_until_ms: r.get(4)?,
                last_error: r.get(5)?,
            })
        })
        .optional()?)
}

pub fn step(
    conn: &mut Connection,
    provider: &str,
    event: &BreakerEvent,
    now: i64,
) -> Result<(BreakerRow, BreakerChange), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = read(&tx, provider)?;
    let (write, change) = breaker::step(row.as_ref(), event, now);
    let Some(new) = write else {
        tx.commit()?;
        return Ok((row.unwrap_or_default(), change));
    };
    tx.prepare_cached(
        "INSERT INTO llm_breakers
             (provider, failures, trips, open_until, probe_owner, probe_until, last_error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (provider) DO UPDATE SET failures = excluded.failures,
             trips = excluded.trips, open_until = excluded.open_until,
             probe_owner = excluded.probe_owner, probe_until = excluded.probe_until,
             last_error = excluded.last_error, updated_at = excluded.updated_at",
    )?
    .execute(params![
        provider,
        new.failures,
        new.trips,
        new.open_until_ms,
        new.probe_owner,
        new.probe_until_ms,
        new.last_error,
        now
    ])?;
    tx.commit()?;
    Ok((new, change))
}
