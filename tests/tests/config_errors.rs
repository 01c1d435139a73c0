//! Bad config input gets a one-line error naming the field or plugin and the valid choices.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::ConfigSources;
use hamos_api::Error;
use hamos_integration_tests::write_config;

fn load(toml: &str, overrides: &[&str]) -> Result<hamos::RunConfig, Error> {
    let (_dir, path) = write_config("run.toml", toml).expect("temporary config");
    let overrides = overrides.iter().map(|s| s.to_string()).collect();
    ConfigSources { base: None, file: Some(path), env: false, overrides }.load()
}

fn one_line(result: Result<hamos::RunConfig, Error>) -> String {
    let message = result.expect_err("config should be rejected").to_string();
    assert!(!message.contains('\n'), "error spans lines: {message}");
    message
}

#[test]
fn unknown_plugin_lists_the_registered_names() {
    let message = one_line(load("[sampler]\nkind = \"hcm\"\n", &[]));
    assert!(message.contains("unknown sampler plugin `hcm`"), "{message}");
    assert!(message.contains("hmc") && message.contains("midpoint_jitter"), "{message}");
}

#[test]
fn unknown_field_is_named() {
    let message = one_line(load("[sampler]\nkind = \"hmc\"\nstep_sise = 0.1\n", &[]));
    assert!(message.contains("step_sise"), "{message}");
    assert!(message.contains("step_size"), "lists the valid fields: {message}");
    let message = one_line(load("seeed = 3\n", &[]));
    assert!(message.contains("seeed"), "{message}");
}

#[test]
fn wrong_type_names_the_field() {
    let message = one_line(load("[sampler]\nstep_size = \"fast\"\n", &[]));
    assert!(message.contains("sampler.step_size"), "{message}");
    let message = one_line(load("", &["train.epochs=-3"]));
    assert!(message.contains("train.epochs"), "{message}");
}

#[test]
fn invalid_value_names_the_field_and_range() {
    let message = one_line(load("[sampler]\nstep_size = -0.1\n", &[]));
    assert!(message.contains("sampler.step_size") && message.contains("outside"), "{message}");
}

#[test]
fn missing_file_is_named() {
    let sources =
        ConfigSources { base: None, file: Some("no/such/run.toml".into()), env: false, overrides: vec![] };
    let message = one_line(sources.load());
    assert!(message.contains("no/such/run.toml"), "{message}");
}

#[test]
fn malformed_override_is_explained() {
    let message = one_line(load("", &["sampler.step_size"]));
    assert!(message.contains("section.field=value"), "{message}");
}

#[test]
fn unavailable_backend_and_device_say_what_to_do() {
    let message = hamos_api::open_backend("jax", "cpu").unwrap_err().to_string();
    assert!(message.contains("`jax`") && message.contains("candle"), "{message}");
    assert!(message.contains("--features"), "{message}");
    let message = hamos_api::open_backend("candle", "tpu:0").unwrap_err().to_string();
    assert!(message.contains("device") && message.contains("cuda:N"), "{message}");
    let message = one_line(load("device = \"tpu\"\n", &[]));
    assert!(message.contains("tpu"), "{message}");
    if let Err(error) = hamos_api::open_backend("candle", "cuda:0") {
        let message = error.to_string();
        assert!(message.contains("cuda"), "{message}");
    }
}
