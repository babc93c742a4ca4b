//! `[budgets]`: how many tokens, and how many dollars by `[llm.prices]`, the agent may spend per
//! UTC day, per account and per handler. Plain data; the agent holds runs to it
//! (`crate::agent::budget`) with the usage the store keeps.

use crate::kernel::ConfigError;
use serde::Deserialize;
use std::path::Path;

/// Every limit is optional; none set means no limit at all.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Input and output tokens one account's runs may use per UTC day, all handlers together.
    pub account_tokens_per_day: Option<u64>,
    /// Input and output tokens one handler's runs may use per UTC day, all accounts together.
    pub handler_tokens_per_day: Option<u64>,
    /// USD one account's runs may cost per UTC day, by `[llm.prices]`.
    pub account_cost_per_day: Option<f64>,
    /// USD one handler's runs may cost per UTC day, by `[llm.prices]`.
    pub handler_cost_per_day: Option<f64>,
}

impl BudgetsConfig {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.account_tokens_per_day.is_some()
            || self.handler_tokens_per_day.is_some()
            || self.cost_limited()
    }

    /// Whether a cost limit is set (which needs a price for every model in use).
    pub fn cost_limited(&self) -> bool {
        self.account_cost_per_day.is_some() || self.handler_cost_per_day.is_some()
    }

    pub(super) fn validate(&self, file: &Path, errors: &mut Vec<ConfigError>) {
        for (key, limit) in [
            (
                "budgets.account_tokens_per_day",
                self.account_tokens_per_day,
            ),
            (
                "budgets.handler_tokens_per_day",
                self.handler_tokens_per_day,
            ),
        ] {
            if limit == Some(0) {
                errors.push(ConfigError::new(
                    file,
                    key,
                    "must be greater than 0 (leave the key out for no limit)",
                ));
            }
        }
        for (key, limit) in [
            ("budgets.account_cost_per_day", self.account_cost_per_day),
            ("budgets.handler_cost_per_day", self.handler_cost_per_day),
        ] {
            if let Some(limit) = limit
                && !(limit.is_finite() && limit > 0.0)
            {
                errors.push(ConfigError::new(
                    file,
                    key,
                    format!(
                        "must be a number of USD greater than 0, found {limit} (leave the key out for no limit)"
                    ),
                ));
            }
        }
    }
}
