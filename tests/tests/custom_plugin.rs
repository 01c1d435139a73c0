//! A plugin from a separate crate (examples/custom-plugin) is listed and selected by name.

use hamos::ConfigSources;
use hamos_api::registry::{plugin_names, PluginKind};
use hamos_integration_tests::write_config;

#[test]
fn custom_sampler_is_registered() {
    assert!(plugin_names(PluginKind::Sampler).contains(&"midpoint_jitter"));
    assert!(hamos::plugins::listing().unwrap().contains("midpoint_jitter"));
}

#[test]
fn custom_sampler_is_selected_from_a_toml_file() {
    let (_dir, path) =
        write_config("run.toml", "[sampler]\nkind = \"midpoint_jitter\"\nstep_size = 0.3\n").unwrap();
    let config =
        ConfigSources { base: None, file: Some(path), env: false, overrides: vec![] }.load().unwrap();
    let resolved = config.to_toml().unwrap();
    assert!(resolved.contains("kind = \"midpoint_jitter\""), "{resolved}");
    assert!(resolved.contains("step_size = 0.3"), "{resolved}");
    assert!(resolved.contains("rounds = 5"), "defaults fill the rest: {resolved}");
}

#[test]
fn custom_sampler_fields_are_checked() {
    let (_dir, path) =
        write_config("run.toml", "[sampler]\nkind = \"midpoint_jitter\"\nleapfrog_steps = 3\n").unwrap();
    let error = ConfigSources { base: None, file: Some(path), env: false, overrides: vec![] }
        .load()
        .unwrap_err()
        .to_string();
    assert!(error.contains("leapfrog_steps"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
}

#[test]
fn every_registered_plugin_has_its_typetag_name() {
    hamos_api::registry::check_typetag_names().unwrap();
}
