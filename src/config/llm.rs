//! `[llm]`: which provider the agent talks to, with which key and model, and how patiently.
//!
//! Plain data, strict like the rest of the configuration: unknown keys are errors, and `check`
//! names the key that is wrong. The client itself is built by `crate::llm::build`. `${VAR}` references are already substituted when this is deserialized.

use crate::kernel::Secret;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions and the servers that speak it (Ollama, vLLM, llama.cpp, Azure).
    Openai,
    Anthropic,
}

impl ProviderKind {
    /// As written in the config, and as OpenTelemetry's `gen_ai.provider.name` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    /// Defaults to the provider's public API: `https://api.openai.com/v1` (the part before
    /// `/chat/completions`) or `https://api.anthropic.com` (before `/v1/messages`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Required for Anthropic; optional for OpenAI-compatible servers that need none.
    #[serde(default, deserialize_with = "secret")]
    pub api_key: Option<Secret>,
    /// The model for handlers that do not name one.
    pub model: String,
    /// Most tokens one reply may have (Anthropic requires a limit; OpenAI gets the same one).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Per request, connecting included.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Retries of one call after a rate limit, an outage or a dropped connection.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// openai only: replaces `/chat/completions` after `base_url`.
    #[serde(default)]
    pub path: Option<String>,
    /// openai only: talk to an Azure OpenAI resource (`base_url` = `https://NAME.openai.azure.com`)
    /// with this `api-version`.
    #[serde(default)]
    pub azure_api_version: Option<String>,
    /// openai with Azure only: the deployment; defaults to the model name.
    #[serde(default)]
    pub azure_deployment: Option<String>,
    /// openai only: send an assistant turn without text as `"content": ""` rather than `null`.
    /// llama-cpp-python's server needs it (it rejects `null` next to `tool_calls`).
    #[serde(default)]
    pub empty_content_as_string: bool,
    /// What each model's tokens cost, by model name as sent to the provider:
    /// `[llm.prices."gpt-4o-mini"]`. A run of a model without a price has no cost (null).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// `[llm.breaker]`: when to stop claiming jobs because the provider is down.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// `[llm.prices."MODEL"]`: USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Price {
    /// What `input` and `output` tokens cost, in USD.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_million + output as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// `[llm.breaker]`: the provider's circuit breaker, shared by every replica through the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive provider failures (5xx, 529, timeouts, no connection: each request counts,
    /// retries included) that open it; 0 turns the breaker off.
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// How long it stays open before one probe may go through.
    #[serde(default = "default_cool_down", deserialize_with = "duration")]
    pub cool_down: Duration,
    /// Each failed probe doubles the cool-down, up to this.
    #[serde(default = "default_max_cool_down", deserialize_with = "duration")]
    pub max_cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: default_breaker_failures(),
            cool_down: default_cool_down(),
            max_cool_down: default_max_cool_down(),
        }
    }
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_cool_down() -> Duration {
    Duration::from_secs(60)
}

fn default_max_cool_down() -> Duration {
    Duration::from_secs(600)
}

fn default_max_tokens() -> u32 {
    1024
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_retries() -> u32 {
    4
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::kernel::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl LlmConfig {
    /// `base_url`, or the provider's public API when it is not set.
    pub fn base_url_or_default(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| {
            match self.provider {
                ProviderKind::Openai => "https://api.openai.com/v1",
                ProviderKind::Anthropic => "https://api.anthropic.com",
            }
            .to_owned()
        })
    }

    /// Every combination serde cannot refuse; the error is (key, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.base_url {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                (
                    "base_url",
                    format!("expected an http(s) URL, found {url:?}: {e}"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err((
                    "base_url",
                    format!("expected an http(s) URL, found {url:?}"),
                ));
            }
        }
        // An unset variable substituted as "" would otherwise send an empty key and earn a 401
        // at the first event instead of an error at start-up.
        if self.api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return Err(("api_key", "is empty".into()));
        }
        if self.model.trim().is_empty() {
            return Err(("model", "is empty".into()));
        }
        if self.max_tokens == 0 {
            return Err(("max_tokens", "must be greater than 0".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be greater than 0".into()));
        }
        if self.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
            return Err(("path", "must start with '/'".into()));
        }
        if self.provider == ProviderKind::Anthropic {
            for (key, set) in [
                ("path", self.path.is_some()),
                ("azure_api_version", self.azure_api_version.is_some()),
                ("azure_deployment", self.azure_deployment.is_some()),
                ("empty_content_as_string", self.empty_content_as_string),
            ] {
                if set {
                    return Err((key, "only for provider \"openai\"".into()));
                }
            }
        }
        if self.provider == ProviderKind::Anthropic && self.api_key.is_none() {
            return Err(("api_key", "required for the anthropic provider".into()));
        }
        if self.azure_deployment.is_some() && self.azure_api_version.is_none() {
            return Err(("azure_deployment", "needs azure_api_version".into()));
        }
        let breaker = &self.breaker;
        if breaker.failures > 0 {
            if breaker.cool_down.is_zero() {
                return Err((
                    "breaker.cool_down",
                    "must be greater than 0 (set breaker.failures = 0 to turn the breaker off)"
                        .into(),
                ));
            }
            if breaker.max_cool_down < breaker.cool_down {
                return Err((
                    "breaker.max_cool_down",
                    format!(
                        "must be at least breaker.cool_down ({:?}), found {:?}",
                        breaker.cool_down, breaker.max_cool_down
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every price that is not a number of USD of at least 0: (key under `llm`, message).
    pub fn price_problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (model, price) in &self.prices {
            for (key, value) in [
                ("input_per_million", price.input_per_million),
                ("output_per_million", price.output_per_million),
            ] {
                if !(value.is_finite() && value >= 0.0) {
                    problems.push((
                        format!("prices.{model:?}.{key}"),
                        format!("must be a number of USD of at least 0, found {value}"),
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LlmConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e = parse("provider = \"openai\"\nmodel = \"m\"\ntemperature = 0").unwrap_err();
        assert!(e.contains("temperature"), "{e}");
        let e = parse("provider = \"gemini\"\nmodel = \"m\"").unwrap_err();
        assert!(e.contains("gemini"), "{e}");
        let e = parse("provider = \"openai\"\nmodel = \"m\"\ntimeout = \"1 minute\"").unwrap_err();
        assert!(e.contains("expected a duration"), "{e}");
    }

    #[test]
    fn the_breaker_has_defaults_and_strict_keys() {
        let c = parse("provider = \"openai\"\nmodel = \"m\"").unwrap();
        assert_eq!(c.breaker, BreakerConfig::default());
        assert_eq!(c.breaker.failures, 5);
        assert_eq!(c.breaker.cool_down, Duration::from_secs(60));
        assert_eq!(c.breaker.max_cool_down, Duration::from_secs(600));
        let c = parse(
            "provider = \"openai\"\nmodel = \"m\"\n[breaker]\nfailures = 3\ncool_down = \"30s\"",
        )
        .unwrap();
        assert_eq!(
            (c.breaker.failures, c.breaker.cool_down),
            (3, Duration::from_secs(30))
        );
        let e =
            parse("provider = \"openai\"\nmodel = \"m\"\n[breaker]\nthreshold = 3").unwrap_err();
        assert!(e.contains("threshold"), "{e}");
    }

    #[test]
    fn a_breaker_that_could_never_close_is_refused_naming_the_key() {
        let check = |table: &str| {
            parse(&format!(
                "provider = \"openai\"\nmodel = \"m\"\n[breaker]\n{table}"
            ))
            .unwrap()
            .check()
            .err()
            .map(|(key, _)| key)
        };
        assert_eq!(check("cool_down = \"0s\""), Some("breaker.cool_down"));
        assert_eq!(
            check("cool_down = \"5m\"\nmax_cool_down = \"1m\""),
            Some("breaker.max_cool_down")
        );
        // Turned off, its other keys do not matter.
        assert_eq!(check("failures = 0\ncool_down = \"0s\""), None);
    }
}
