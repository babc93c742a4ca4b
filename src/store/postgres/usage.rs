//! Budget usage statements for the PostgreSQL store: the SQLite store's `usage.rs`, statement for
//! statement. Every replica adds to the same rows, so a budget holds across them.

use crate::store::{DayUsage, StoreError, Usage, usage_of};
use sqlx::postgres::PgConnection;

/// Adds `spent` to the day's rows of the account and the handler in one statement, and returns
/// both totals after it. The account's row comes first in every statement, so two replicas
/// adding at once lock in the same order.
pub async fn add(
    conn: &mut PgConnection,
    day: &str,
    account: &str,
    handler: &str,
    spent: Usage,
) -> Result<DayUsage, StoreError> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "INSERT INTO usage_days (day, scope, name, tokens, cost_usd)
         VALUES ($1, 'account', $2, $4, $5), ($1, 'handler', $3, $4, $5)
         ON CONFLICT (day, scope, name) DO UPDATE SET
            tokens = usage_days.tokens + excluded.tokens,
            cost_usd = usage_days.cost_usd + excluded.cost_usd
         RETURNING scope, tokens, cost_usd",
    )
    .bind(day)
    .bind(account)
    .bind(handler)
    .bind(crate::store::tokens_column(spent.tokens))
    .bind(spent.cost_usd)
    .fetch_all(&mut *conn)
    .await?;
    Ok(usage_of(rows))
}

/// The day's totals of the account and the handler (zero where nothing was spent).
pub async fn get(
    conn: &mut PgConnection,
    day: &str,
    account: &str,
    handler: &str,
) -> Result<DayUsage, StoreError> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT scope, tokens, cost_usd FROM usage_days
         WHERE day = $1 AND ((scope = 'account' AND name = $2) OR (scope = 'handler' AND name = $3))",
    )
    .bind(day)
    .bind(account)
    .bind(handler)
    .fetch_all(&mut *conn)
    .await?;
    Ok(usage_of(rows))
}
