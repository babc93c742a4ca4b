//! `[llm]`: which provider the agent talks to, with which key and model, and how patiently.
//!
//! Strict like the rest of the configuration: unknown keys are errors, and `build` names the key
//! that is wrong. `${VAR}` references are already substituted when this is deserialized.

use super::llm::{
    AnthropicConfig, AnthropicProvider, LlmProvider, OpenAiConfig, OpenAiProvider, RetryPolicy,
};
use crate::ingress::verify::Secret;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions and the servers that speak it (Ollama, vLLM, llama.cpp, Azure).
    Openai,
    Anthropic,
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
    crate::handler::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl LlmConfig {
    /// The client this configuration describes; the error names the offending key.
    pub fn build(&self) -> Result<Arc<dyn LlmProvider>, String> {
        self.check()?;
        let base_url = self.base_url.clone().unwrap_or_else(|| {
            match self.provider {
                ProviderKind::Openai => "https://api.openai.com/v1",
                ProviderKind::Anthropic => "https://api.anthropic.com",
            }
            .to_owned()
        });
        Ok(match self.provider {
            ProviderKind::Openai => Arc::new(OpenAiProvider::new(OpenAiConfig {
                path: self.path.clone(),
                azure_api_version: self.azure_api_version.clone(),
                azure_deployment: self.azure_deployment.clone(),
                timeout: self.timeout,
                empty_content_as_string: self.empty_content_as_string,
                ..OpenAiConfig::new(base_url, self.api_key.clone())
            })?),
            ProviderKind::Anthropic => {
                let key = self
                    .api_key
                    .clone()
                    .ok_or("api_key: required for the anthropic provider")?;
                Arc::new(AnthropicProvider::new(AnthropicConfig {
                    timeout: self.timeout,
                    ..AnthropicConfig::new(base_url, key)
                })?)
            }
        })
    }

    /// How many times, and how patiently, one call is retried.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            ..RetryPolicy::default()
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.base_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("base_url: expected an http(s) URL, found {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("base_url: expected an http(s) URL, found {url:?}"));
            }
        }
        // An unset variable substituted as "" would otherwise send an empty key and earn a 401
        // at the first event instead of an error at start-up.
        if self.api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return Err("api_key: is empty".into());
        }
        if self.model.trim().is_empty() {
            return Err("model: is empty".into());
        }
        if self.max_tokens == 0 {
            return Err("max_tokens: must be greater than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout: must be greater than 0".into());
        }
        if self.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
            return Err("path: must start with '/'".into());
        }
        if self.provider == ProviderKind::Anthropic {
            for (key, set) in [
                ("path", self.path.is_some()),
                ("azure_api_version", self.azure_api_version.is_some()),
                ("azure_deployment", self.azure_deployment.is_some()),
                ("empty_content_as_string", self.empty_content_as_string),
            ] {
                if set {
                    return Err(format!("{key}: only for provider \"openai\""));
                }
            }
        }
        if self.azure_deployment.is_some() && self.azure_api_version.is_none() {
            return Err("azure_deployment: needs azure_api_version".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LlmConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn defaults_apply_and_the_key_stays_hidden() {
        let c =
            parse("provider = \"openai\"\nmodel = \"gpt-4.1-mini\"\napi_key = \"sk-1\"").unwrap();
        assert_eq!(c.max_tokens, 1024);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.max_retries, 4);
        assert_eq!(c.retry_policy().max_retries, 4);
        assert!(!format!("{c:?}").contains("sk-1"));
        assert!(c.build().is_ok());
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
    fn build_names_the_offending_key() {
        let cases = [
            ("provider = \"anthropic\"\nmodel = \"m\"", "api_key:"),
            (
                "provider = \"openai\"\nmodel = \"m\"\napi_key = \"\"",
                "api_key:",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"localhost:11434\"",
                "base_url:",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nmax_tokens = 0",
                "max_tokens:",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\ntimeout = \"0s\"",
                "timeout:",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\npath = \"v1/chat\"",
                "path:",
            ),
            (
                "provider = \"anthropic\"\nmodel = \"m\"\napi_key = \"k\"\nazure_api_version = \"x\"",
                "azure_api_version:",
            ),
            (
                "provider = \"openai\"\nmodel = \"m\"\nazure_deployment = \"d\"",
                "azure_deployment:",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap().build().err().expect(text);
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn local_openai_compatible_servers_need_no_key() {
        let c = parse(
            "provider = \"openai\"\nmodel = \"smollm2\"\nbase_url = \"http://127.0.0.1:11434/v1\"",
        )
        .unwrap();
        assert!(c.build().is_ok());
    }
}
