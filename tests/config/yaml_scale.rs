//! Big configs load; YAML built to blow up does not.

use tower_health_routing::{Config, ConfigError};

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str_with_env(yaml, &|_| None)
}

#[test]
fn a_config_past_the_parsers_default_node_budget_loads() {
    // 20,000 deployments of 13 YAML nodes each: 260,000, past serde-saphyr's default 250,000.
    let n = 20_000;
    let mut yaml = String::from("model_list:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{model_name: g{}, litellm_params: {{model: openai/m, api_base: 'http://127.0.0.1:9/v1'}}, model_info: {{id: d{i}}}}}\n",
            i / 100
        ));
    }
    let config = parse(&yaml).expect("a big config loads");
    assert_eq!(config.deployments.len(), n);
    // The same text with one anchor, which the two-halves read never takes: the whole
    // text goes through one parser, past its default budget.
    let anchored = yaml.replacen("model_info: {id: d0}", "model_info: {id: &first d0}", 1);
    assert_ne!(anchored, yaml);
    let config = parse(&anchored).expect("a big config loads on one thread");
    assert_eq!(config.deployments.len(), n);
}

#[test]
fn an_alias_bomb_is_refused_not_expanded() {
    // Nine levels of ten aliases each: 10^9 nodes if expanded.
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        yaml.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    yaml.push_str("model_list: *a8\n");
    let e = parse(&yaml).expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("budget"), "{text}");
}

/// `n` block-style entries (some 120 bytes each): past 2,200 the file is large enough for
/// the parser to run on its own thread.
fn big_list(n: usize) -> String {
    let mut yaml = String::from("model_list:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - model_name: g{}\n    litellm_params: {{ model: openai/m, api_base: 'http://127.0.0.1:9/v1' }}\n    model_info: {{ id: d{i} }}\n",
            i / 100
        ));
    }
    yaml
}

#[test]
fn a_big_config_keeps_every_entry_in_order() {
    let n = 5_000;
    let config = parse(&big_list(n)).expect("loads");
    assert_eq!(config.deployments.len(), n);
    for (i, d) in config.deployments.iter().enumerate() {
        assert_eq!(d.id().as_str(), format!("d{i}"));
    }
}

#[test]
fn a_bad_entry_deep_in_a_big_config_is_named_by_its_path() {
    let mut yaml = big_list(5_000);
    yaml.push_str("  - model_name: late\n    litellm_params: { model: openai/m, rpm: lots }\n");
    let e = parse(&yaml).expect_err("refused");
    assert_eq!(e.field(), "model_list[5000].litellm_params.rpm", "{e}");
}

#[test]
fn broken_yaml_at_the_end_of_a_big_config_is_reported_with_its_line() {
    let mut yaml = big_list(5_000);
    yaml.push_str("  - model_name: [unclosed\n");
    let e = parse(&yaml).expect_err("refused");
    // 1 header line + 3 per entry: the broken entry starts on line 15,002.
    let text = e.to_string();
    assert!(text.contains("15002") || text.contains("15003"), "{text}");
}
