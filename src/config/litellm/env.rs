//! `os.environ/NAME` resolution, and the bookkeeping that keeps secret values out of
//! error messages: every secret met while reading the config is remembered, and every
//! error is scrubbed of them before it is returned.

use std::fmt;

use serde_json::Value;

use crate::{
    error::{ConfigError, ConfigErrorKind},
    secret::{Scrubber, Secret, looks_secret},
};

/// The prefix LiteLLM uses for values read from the environment.
pub(super) const ENV_PREFIX: &str = "os.environ/";

/// Resolves `os.environ/NAME` values and remembers every secret it meets (values under
/// secret-looking keys, values of secret-looking variables), so errors can be scrubbed.
pub(super) struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    secrets: Vec<Secret>,
    seen: std::collections::HashSet<String, foldhash::fast::RandomState>,
    /// [`is_secret_key`]'s answer per key name met: a config repeats a handful of names
    /// (`model`, `api_base`, ...) once per deployment.
    secret_keys: std::collections::HashMap<String, bool, foldhash::fast::RandomState>,
}

/// Whether a key's values are credentials. `redis_url` may embed a password.
pub(super) fn is_secret_key(key: &str) -> bool {
    looks_secret(key) || key == "redis_url"
}

/// `parent.key`, or `key` at the top.
pub(super) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'a> Resolver<'a> {
    pub(super) fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            secrets: Vec::new(),
            seen: Default::default(),
            secret_keys: Default::default(),
        }
    }

    fn is_secret_key(&mut self, key: &str) -> bool {
        if let Some(&s) = self.secret_keys.get(key) {
            return s;
        }
        let s = is_secret_key(key);
        self.secret_keys.insert(key.to_owned(), s);
        s
    }

    /// Looks up one variable.
    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Replaces every `os.environ/NAME` string in `v`, at any depth, by the variable's value.
    /// `path` names `v` in errors; `secret` says whether `v` sits under a secret-looking key.
    /// Returns whether some value came from a variable whose name looks secret.
    pub(super) fn resolve(
        &mut self,
        v: &mut Value,
        path: &str,
        secret: bool,
    ) -> Result<bool, ConfigError> {
        self.resolve_at(v, At::Base(path), secret)
    }

    /// [`Resolver::resolve`], with the path kept as a chain (spelled out only for an error).
    fn resolve_at(
        &mut self,
        v: &mut Value,
        path: At<'_>,
        secret: bool,
    ) -> Result<bool, ConfigError> {
        match v {
            Value::String(s) => {
                let mut from_secret_var = false;
                if let Some(name) = s.strip_prefix(ENV_PREFIX) {
                    if name.is_empty() {
                        return Err(ConfigError::invalid(
                            path.to_string(),
                            "`os.environ/` names no environment variable",
                        ));
                    }
                    let value = (self.env)(name).ok_or_else(|| {
                        ConfigError::new(
                            path.to_string(),
                            ConfigErrorKind::EnvVarUnset {
                                var: name.to_owned(),
                            },
                        )
                    })?;
                    from_secret_var = looks_secret(name);
                    *s = value;
                }
                // Remembered once per value (a key listed by thousands of deployments).
                if (secret || from_secret_var) && !self.seen.contains(s.as_str()) {
                    self.seen.insert(s.clone());
                    self.secrets.push(Secret::new(s.as_str()));
                }
                Ok(from_secret_var)
            }
            Value::Array(items) => {
                let mut any = false;
                for (i, item) in items.iter_mut().enumerate() {
                    any |= self.resolve_at(item, At::Index(&path, i), secret)?;
                }
                Ok(any)
            }
            Value::Object(map) => {
                let mut any = false;
                for (k, item) in map.iter_mut() {
                    let secret = secret || self.is_secret_key(k);
                    any |= self.resolve_at(item, At::Key(&path, k), secret)?;
                }
                Ok(any)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(false),
        }
    }

    /// Remembers `secrets` (another resolver's, in the order it met them) after the ones
    /// met so far, as if this resolver had met them itself.
    pub(super) fn absorb(&mut self, secrets: Vec<Secret>) {
        for s in secrets {
            if !self.seen.contains(s.expose()) {
                self.seen.insert(s.expose().to_owned());
                self.secrets.push(s);
            }
        }
    }

    /// Every secret met so far.
    pub(super) fn into_secrets(self) -> Vec<Secret> {
        self.secrets
    }
}

/// A value's place in the tree, as a chain up to a base path; [`fmt::Display`] spells it
/// as [`child_path`] and `path[i]` would.
#[derive(Clone, Copy)]
enum At<'p> {
    Base(&'p str),
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            At::Base(p) => f.write_str(p),
            At::Key(At::Base(""), key) => f.write_str(key),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Literal values of secret-looking keys in raw YAML text (`api_key: sk-...`), found line
/// by line. Used only to scrub parser messages for text that is not valid YAML, where no
/// tree exists to walk. Deliberately simple; YAML scalars that are plainly not credentials
/// (booleans, numbers, null) are left out so they do not blank out ordinary words.
pub(super) fn secrets_in_text(text: &str) -> Vec<Secret> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        if !is_secret_key(key) {
            continue;
        }
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        let literal = matches!(
            value.to_ascii_lowercase().as_str(),
            "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "|" | ">"
        ) || value.parse::<f64>().is_ok();
        if !literal && !value.starts_with(ENV_PREFIX) {
            out.push(Secret::new(value));
        }
    }
    out
}

/// The same error with every secret removed from its text.
pub(super) fn scrub_error(e: ConfigError, scrubber: &Scrubber) -> ConfigError {
    if scrubber.is_empty() {
        return e;
    }
    let s = |t: &str| scrubber.scrub(t).into_owned();
    let kind = match e.kind() {
        ConfigErrorKind::Invalid(t) => ConfigErrorKind::Invalid(s(t)),
        ConfigErrorKind::Syntax(t) => ConfigErrorKind::Syntax(s(t)),
        ConfigErrorKind::Io(t) => ConfigErrorKind::Io(s(t)),
        ConfigErrorKind::UnknownStrategy { value } => {
            ConfigErrorKind::UnknownStrategy { value: s(value) }
        }
        ConfigErrorKind::UnknownMode { value } => ConfigErrorKind::UnknownMode { value: s(value) },
        ConfigErrorKind::DuplicateId { id } => ConfigErrorKind::DuplicateId { id: s(id) },
        other => other.clone(),
    };
    e.with_kind(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "API_KEY" => Some("sk-env-1".into()),
            "BASE" => Some("http://127.0.0.1:9/v1".into()),
            _ => None,
        }
    }

    #[test]
    fn env_values_resolve_at_any_depth_and_secrets_are_remembered() {
        let mut v = json!({
            "a": {"api_key": "os.environ/API_KEY", "api_base": "os.environ/BASE", "n": 1},
            "list": ["os.environ/BASE", "plain"],
            "master_key": "sk-literal",
        });
        let mut r = Resolver::new(&env);
        let from_secret_var = r.resolve(&mut v, "", false).unwrap();
        assert!(from_secret_var, "API_KEY looks secret");
        assert_eq!(v["a"]["api_key"], "sk-env-1");
        assert_eq!(v["a"]["api_base"], "http://127.0.0.1:9/v1");
        assert_eq!(v["list"][0], "http://127.0.0.1:9/v1");
        assert_eq!(v["list"][1], "plain");
        let secrets: Vec<String> = r
            .into_secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(secrets, ["sk-env-1", "sk-literal"]);
    }

    #[test]
    fn unset_env_var_names_the_path_and_the_variable() {
        let mut v = json!({"model_list": [{"litellm_params": {"api_key": "os.environ/NOPE"}}]});
        let e = Resolver::new(&env).resolve(&mut v, "", false).unwrap_err();
        assert_eq!(e.field(), "model_list[0].litellm_params.api_key");
        assert_eq!(
            e.kind(),
            &ConfigErrorKind::EnvVarUnset { var: "NOPE".into() }
        );
        let e = Resolver::new(&env)
            .resolve(&mut json!({"x": "os.environ/"}), "", false)
            .unwrap_err();
        assert_eq!(e.field(), "x");
        assert!(matches!(e.kind(), ConfigErrorKind::Invalid(_)));
    }

    #[test]
    fn secrets_in_broken_text_are_found_but_plain_scalars_are_not() {
        let text = "a:\n  - api_key: \"sk-quoted\"  # note\n    master_key: sk-bare\n    \
                    use_auth: true\n    redis_password: 12345\n    api_base: http://x\n    \
                    aws_secret_access_key: os.environ/AWS\n";
        let got: Vec<String> = secrets_in_text(text)
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(got, ["sk-quoted", "sk-bare"]);
    }

    #[test]
    fn scrub_error_removes_secrets_from_every_text() {
        let sc = Scrubber::new([Secret::new("sk-9")]);
        let e = scrub_error(
            ConfigError::new("f", ConfigErrorKind::Syntax("got \"sk-9\"".into())),
            &sc,
        );
        assert_eq!(e.field(), "f");
        assert_eq!(
            e.kind(),
            &ConfigErrorKind::Syntax("got \"[redacted]\"".into())
        );
        let e = scrub_error(
            ConfigError::new(
                "m",
                ConfigErrorKind::UnknownMode {
                    value: "sk-9".into(),
                },
            ),
            &sc,
        );
        assert!(!e.to_string().contains("sk-9"));
    }
}
