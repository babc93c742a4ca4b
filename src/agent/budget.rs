//! Token and cost budgets: what a run's model steps cost by `[llm.prices]`, and whether the
//! day's usage of the run's account or handler has reached a `[budgets]` limit.
//!
//! Windows are UTC days on the App's clock. Usage lives in the store (`Store::add_usage`), so
//! every replica counts against the same budget. A run is checked before it starts and after
//! each of its model steps (with the step's tool calls carried out): a job over budget goes back
//! to pending until the next day starts, its attempt not counted.

use crate::config::BudgetsConfig;
use crate::config::llm::Price;
use crate::store::{DayUsage, Usage};
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;

/// The limits and the price table, as configured.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    pub limits: BudgetsConfig,
    /// USD per million tokens, by model name.
    pub prices: BTreeMap<String, Price>,
}

/// A limit the day's usage has reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// `account` or `handler`.
    pub scope: &'static str,
    /// Names the budget and the figures, for `last_error`, the transcript and the log.
    pub reason: String,
}

impl Budgets {
    /// What `input` and `output` tokens of `model` cost in USD; None when it has no price.
    pub fn cost(&self, model: &str, input: u64, output: u64) -> Option<f64> {
        self.prices.get(model).map(|p| p.cost(input, output))
    }

    /// The first limit `usage` (of `account` and `handler` on `day`) has reached, account limits
    /// first. Reaching a limit exactly counts: a run then has nothing left to spend.
    pub fn exceeded(
        &self,
        day: &str,
        account: &str,
        handler: &str,
        usage: &DayUsage,
    ) -> Option<Exceeded> {
        let l = &self.limits;
        let scopes = [
            (
                "account",
                account,
                &usage.account,
                l.account_tokens_per_day,
                l.account_cost_per_day,
            ),
            (
                "handler",
                handler,
                &usage.handler,
                l.handler_tokens_per_day,
                l.handler_cost_per_day,
            ),
        ];
        for (scope, name, used, tokens, cost) in scopes {
            if let Some(limit) = tokens.filter(|limit| used.tokens >= *limit) {
                return Some(Exceeded {
                    scope,
                    reason: format!(
                        "budget: {scope} {name} used {} of {} tokens on {day} (budgets.{scope}_tokens_per_day); it runs again on the next UTC day",
                        grouped(used.tokens),
                        grouped(limit)
                    ),
                });
            }
            if let Some(limit) = cost.filter(|limit| used.cost_usd >= *limit) {
                return Some(Exceeded {
                    scope,
                    reason: format!(
                        "budget: {scope} {name} spent {} of {} on {day} (budgets.{scope}_cost_per_day); it runs again on the next UTC day",
                        dollars(used.cost_usd),
                        dollars(limit)
                    ),
                });
            }
        }
        None
    }

    /// What one step of `model` with these tokens adds to the day's usage (no price: no cost).
    pub fn step(&self, model: &str, input: u64, output: u64) -> Usage {
        Usage {
            tokens: input.saturating_add(output),
            cost_usd: self.cost(model, input, output).unwrap_or(0.0),
        }
    }
}

/// The budget window of `now_ms`: its UTC date, `YYYY-MM-DD`.
pub fn day(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid-date".into())
}

/// When the window after the one of `now_ms` starts: the next UTC midnight.
pub fn next_day_ms(now_ms: i64) -> i64 {
    (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS
}

/// `10412` → `10,412`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// USD as people read it: `$1.25`, and small amounts with the digits that matter (`$0.0042`).
pub fn dollars(usd: f64) -> String {
    if usd.abs() >= 1.0 || usd == 0.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(limits: BudgetsConfig) -> Budgets {
        Budgets {
            limits,
            prices: BTreeMap::from([(
                "m".to_string(),
                Price {
                    input_per_million: 0.15,
                    output_per_million: 0.60,
                },
            )]),
        }
    }

    fn used(account: (u64, f64), handler: (u64, f64)) -> DayUsage {
        DayUsage {
            account: Usage {
                tokens: account.0,
                cost_usd: account.1,
            },
            handler: Usage {
                tokens: handler.0,
                cost_usd: handler.1,
            },
        }
    }

    #[test]
    fn cost_follows_the_price_table_and_is_unknown_without_a_price() {
        let b = budgets(BudgetsConfig::default());
        let cost = b.cost("m", 1_000_000, 500_000).unwrap();
        assert!((cost - 0.45).abs() < 1e-12, "{cost}");
        assert_eq!(b.cost("other", 10, 10), None);
        assert_eq!(
            b.step("other", 10, 5),
            Usage {
                tokens: 15,
                cost_usd: 0.0
            }
        );
    }

    #[test]
    fn a_limit_reached_names_the_budget_and_the_figures() {
        let b = budgets(BudgetsConfig {
            account_tokens_per_day: Some(10_000),
            handler_cost_per_day: Some(1.0),
            ..Default::default()
        });
        assert_eq!(
            b.exceeded(
                "2026-12-03",
                "acme",
                "triage",
                &used((9_999, 5.0), (0, 0.99))
            ),
            None
        );
        let e = b
            .exceeded(
                "2026-12-03",
                "acme",
                "triage",
                &used((10_412, 0.0), (0, 0.0)),
            )
            .unwrap();
        assert_eq!(e.scope, "account");
        assert!(
            e.reason
                .contains("account acme used 10,412 of 10,000 tokens on 2026-12-03"),
            "{}",
            e.reason
        );
        let e = b
            .exceeded("2026-12-03", "acme", "triage", &used((0, 0.0), (0, 1.0)))
            .unwrap();
        assert_eq!(e.scope, "handler");
        assert!(
            e.reason
                .contains("handler triage spent $1.00 of $1.00 on 2026-12-03"),
            "{}",
            e.reason
        );
        // No limits: nothing is ever exceeded.
        assert_eq!(
            budgets(BudgetsConfig::default()).exceeded(
                "d",
                "a",
                "h",
                &used((u64::MAX, 1e9), (u64::MAX, 1e9))
            ),
            None
        );
    }

    #[test]
    fn windows_are_utc_days() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-03T23:59:59.999Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(day(t), "2026-12-03");
        assert_eq!(day(t + 1), "2026-12-04");
        assert_eq!(next_day_ms(t), t + 1);
        assert_eq!(next_day_ms(t + 1), t + 1 + DAY_MS);
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(123_456_789), "123,456,789");
        assert_eq!(dollars(0.0042), "$0.0042");
        assert_eq!(dollars(12.5), "$12.50");
    }
}
