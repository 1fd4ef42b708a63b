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
