//! Budget usage statements for the SQLite store: tokens and cost per UTC day, per account and per
//! handler (`usage_days`).

use crate::store::{DayUsage, StoreError, Usage, usage_of};
use rusqlite::{Connection, params};

/// Adds `spent` to the day's rows of the account and the handler in one statement, and returns
/// both totals after it.
pub fn add(
    conn: &Connection,
    day: &str,
    account: &str,
    handler: &str,
    spent: Usage,
) -> Result<DayUsage, StoreError> {
    let rows = conn
        .prepare_cached(
            "INSERT INTO usage_days (day, scope, name, tokens, cost_usd)
             VALUES (?1, 'account', ?2, ?4, ?5), (?1, 'handler', ?3, ?4, ?5)
             ON CONFLICT (day, scope, name) DO UPDATE SET
                tokens = usage_days.tokens + excluded.tokens,
                cost_usd = usage_days.cost_usd + excluded.cost_usd
             RETURNING scope, tokens, cost_usd",
        )?
        .query_map(
            params![
                day,
                account,
                handler,
                crate::store::tokens_column(spent.tokens),
                spent.cost_usd
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<Vec<(String, i64, f64)>, _>>()?;
    Ok(usage_of(rows))
}

/// The day's totals of the account and the handler (zero where nothing was spent).
pub fn get(
    conn: &Connection,
    day: &str,
    account: &str,
    handler: &str,
) -> Result<DayUsage, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT scope, tokens, cost_usd FROM usage_days
             WHERE day = ?1 AND ((scope = 'account' AND name = ?2) OR (scope = 'handler' AND name = ?3))",
        )?
        .query_map(params![day, account, handler], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<(String, i64, f64)>, _>>()?;
    Ok(usage_of(rows))
}
