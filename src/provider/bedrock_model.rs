//! LiteLLM's Bedrock model-id rule (which path segments of `bedrock/…` are regions),
//! here in the provider layer so both the catalog and the native Bedrock probe use it;
//! the probe module re-exports [`bedrock_probe_model`]; and which bare model ids are
//! Bedrock's ([`is_bedrock_model`]).

/// AWS regions, as they appear in `bedrock/<region>/<model>` routing prefixes.
pub(crate) const AWS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
];

/// The model id a probe sends for a `bedrock/…` model (LiteLLM issue #15807): the
/// `bedrock/` prefix and any path segment that is an AWS region are removed; route
/// prefixes (`converse/`, `invoke/`), handlers (`llama/`) and cross-region inference
/// profile ids (`us.`, `eu.`, `apac.`) are kept. Other models come back unchanged.
///
/// ```
/// use tower_health_routing::probe::bedrock_probe_model;
/// assert_eq!(bedrock_probe_model("bedrock/us-west-2/mistral.mistral-7b-instruct-v0:2"), "mistral.mistral-7b-instruct-v0:2");
/// assert_eq!(bedrock_probe_model("bedrock/converse/eu-west-1/us.anthropic.claude-3-haiku"), "converse/us.anthropic.claude-3-haiku");
/// ```
pub fn bedrock_probe_model(model: &str) -> String {
    let Some(rest) = model.strip_prefix("bedrock/") else {
        return model.to_owned();
    };
    rest.split('/')
        .filter(|part| !AWS_REGIONS.contains(part))
        .collect::<Vec<_>>()
        .join("/")
}

/// Model vendors on Bedrock, as the first part of a bare model id (`anthropic.claude-v2`).
pub(crate) const VENDORS: &[&str] = &[
    "ai21",
    "amazon",
    "anthropic",
    "cohere",
    "deepseek",
    "google",
    "meta",
    "minimax",
    "mistral",
    "moonshot",
    "moonshotai",
    "nvidia",
    "openai",
    "qwen",
    "stability",
    "twelvelabs",
    "writer",
    "xai",
    "zai",
];

/// Cross-region inference profile prefixes (`us.anthropic.claude-…`).
pub(crate) const PROFILE_PREFIXES: &[&str] = &[
    "us", "us-gov", "eu", "apac", "global", "jp", "au", "ca", "in",
];

/// Whether a model id without a provider prefix is Bedrock's, as LiteLLM decides with its
/// `bedrock_models` / `bedrock_converse_models` / `bedrock_embedding_models` lists: every id
/// in those lists is `{vendor}.{model}` or `{profile}.{vendor}.{model}` with a vendor and
/// profile prefix from the lists above, and so is every future one.
///
/// `anthropic.claude-3-haiku-20240307-v1:0`, `amazon.titan-embed-text-v1`,
/// `us.anthropic.claude-3-5-sonnet-20240620-v1:0` and `meta.llama3-8b-instruct-v1:0` are;
/// `gpt-4o`, `claude-3-5-sonnet` and `openai/gpt-4o` are not.
pub(crate) fn is_bedrock_model(model: &str) -> bool {
    if model.contains('/') {
        return false;
    }
    let mut parts = model.splitn(3, '.');
    let (Some(first), Some(second)) = (parts.next(), parts.next()) else {
        return false;
    };
    let has_rest = parts.next().is_some_and(|r| !r.is_empty());
    if VENDORS.contains(&first) && !second.is_empty() {
        return true;
    }
    PROFILE_PREFIXES.contains(&first) && VENDORS.contains(&second) && has_rest
}
