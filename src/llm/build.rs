//! Turning the `[llm]` table into a client: the one place a provider is constructed.

use super::{
    AnthropicConfig, AnthropicProvider, LlmProvider, OpenAiConfig, OpenAiProvider, RetryPolicy,
};
use crate::config::llm::{LlmConfig, ProviderKind};
use std::sync::Arc;

/// Why `[llm]` could not become a client: the key at fault (relative to `[llm]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BuildError {
    /// Empty when no one key is at fault (the HTTP client could not be built).
    pub key: &'static str,
    pub message: String,
}

/// The client `config` describes.
pub fn build(config: &LlmConfig) -> Result<Arc<dyn LlmProvider>, BuildError> {
    config
        .check()
        .map_err(|(key, message)| BuildError { key, message })?;
    let base_url = config.base_url_or_default();
    let client = |message: String| BuildError { key: "", message };
    Ok(match config.provider {
        ProviderKind::Openai => Arc::new(
            OpenAiProvider::new(OpenAiConfig {
                path: config.path.clone(),
                azure_api_version: config.azure_api_version.clone(),
                azure_deployment: config.azure_deployment.clone(),
                timeout: config.timeout,
                empty_content_as_string: config.empty_content_as_string,
                ..OpenAiConfig::new(base_url, config.api_key.clone())
            })
            .map_err(client)?,
        ),
        ProviderKind::Anthropic => {
            let key = config.api_key.clone().ok_or_else(|| BuildError {
                key: "api_key",
                message: "required for the anthropic provider".into(),
            })?;
            Arc::new(
                AnthropicProvider::new(AnthropicConfig {
                    timeout: config.timeout,
                    ..AnthropicConfig::new(base_url, key)
                })
                .map_err(client)?,
            )
        }
    })
}

/// How many times, and how patiently, one call is retried.
pub fn retry_policy(config: &LlmConfig) -> RetryPolicy {
    RetryPolicy {
        max_retries: config.max_retries,
        ..RetryPolicy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::llm::LlmConfig;
    use std::time::Duration;

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
        assert_eq!(retry_policy(&c).max_retries, 4);
        assert!(!format!("{c:?}").contains("sk-1"));
        assert!(build(&c).is_ok());
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
            let err = build(&parse(text).unwrap()).err().expect(text).to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn local_openai_compatible_servers_need_no_key() {
        let c = parse(
            "provider = \"openai\"\nmodel = \"smollm2\"\nbase_url = \"http://127.0.0.1:11434/v1\"",
        )
        .unwrap();
        assert!(build(&c).is_ok());
    }
}
