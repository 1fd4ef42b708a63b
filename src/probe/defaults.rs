//! [`ProbeDefaults`]: the process-wide probe settings LiteLLM takes from environment
//! variables, read once (so nothing else reads the environment, and tests construct the
//! struct instead of mutating the process environment, which is `unsafe` in edition 2024).

use std::sync::Arc;

use crate::error::ConfigError;

/// LiteLLM's default health-check prompt.
pub const DEFAULT_PROMPT: &str = "test from litellm";

/// `max_tokens` for a normal (non-wildcard) route when nothing else says.
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// Process-wide probe defaults, LiteLLM's environment variables.
///
/// | field | variable | default |
/// |---|---|---|
/// | [`prompt`](Self::prompt) | `DEFAULT_HEALTH_CHECK_PROMPT` | `test from litellm` |
/// | [`max_tokens`](Self::max_tokens) | `BACKGROUND_HEALTH_CHECK_MAX_TOKENS` | unset |
/// | [`max_tokens_reasoning`](Self::max_tokens_reasoning) | `BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING` | unset |
///
/// ```
/// use tower_health_routing::probe::ProbeDefaults;
/// let d = ProbeDefaults::default().with_prompt("ping").with_max_tokens(Some(5));
/// assert_eq!((&*d.prompt, d.max_tokens), ("ping", Some(5)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeDefaults {
    /// The prompt of the prompt-taking modes.
    pub prompt: Arc<str>,
    /// `max_tokens` for any route (wildcards included) when `model_info` sets none.
    pub max_tokens: Option<u32>,
    /// `max_tokens` for a reasoning model of a normal route when `model_info` sets none.
    pub max_tokens_reasoning: Option<u32>,
}

impl Default for ProbeDefaults {
    fn default() -> Self {
        Self {
            prompt: Arc::from(DEFAULT_PROMPT),
            max_tokens: None,
            max_tokens_reasoning: None,
        }
    }
}

impl ProbeDefaults {
    /// Reads the variables from the process environment (empty values count as unset).
    /// A number that does not parse is an error naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with the variables looked up by `env`.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let num = |name: &str| -> Result<Option<u32>, ConfigError> {
            get(name)
                .map(|v| {
                    v.trim().parse::<u32>().map_err(|_| {
                        ConfigError::invalid(
                            format!("env.{name}"),
                            format!("must be a whole number of tokens, got `{v}`"),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            prompt: get("DEFAULT_HEALTH_CHECK_PROMPT")
                .map_or_else(|| Arc::from(DEFAULT_PROMPT), Arc::from),
            max_tokens: num("BACKGROUND_HEALTH_CHECK_MAX_TOKENS")?,
            max_tokens_reasoning: num("BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING")?,
        })
    }

    /// Sets the prompt.
    pub fn with_prompt(mut self, prompt: impl Into<Arc<str>>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// Sets the global `max_tokens`.
    pub fn with_max_tokens(mut self, n: Option<u32>) -> Self {
        self.max_tokens = n;
        self
    }

    /// Sets the reasoning-model `max_tokens`.
    pub fn with_max_tokens_reasoning(mut self, n: Option<u32>) -> Self {
        self.max_tokens_reasoning = n;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_a_lookup() {
        let d = ProbeDefaults::from_lookup(|n| match n {
            "DEFAULT_HEALTH_CHECK_PROMPT" => Some("hello probe".into()),
            "BACKGROUND_HEALTH_CHECK_MAX_TOKENS" => Some(" 7 ".into()),
            "BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (&*d.prompt, d.max_tokens, d.max_tokens_reasoning),
            ("hello probe", Some(7), None)
        );
        assert_eq!(
            ProbeDefaults::from_lookup(|_| None).unwrap(),
            ProbeDefaults::default()
        );
        let e = ProbeDefaults::from_lookup(|n| {
            (n == "BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING").then(|| "lots".into())
        })
        .unwrap_err();
        assert_eq!(
            e.field(),
            "env.BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING"
        );
        assert!(e.to_string().contains("`lots`"));
    }
}
