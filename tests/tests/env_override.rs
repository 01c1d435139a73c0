//! Environment overrides (`HAMOS_SECTION__FIELD`) select plugins and set fields. Kept in its
//! own test binary because it changes the process environment.

use hamos::ConfigSources;
use hamos_integration_tests::write_config;

#[test]
fn environment_selects_the_custom_sampler_over_the_file() {
    let (_dir, path) = write_config("run.toml", "[sampler]\nkind = \"hmc\"\nstep_size = 0.2\n").unwrap();
    std::env::set_var("HAMOS_SAMPLER__KIND", "midpoint_jitter");
    std::env::set_var("HAMOS_SAMPLER__STEP_SIZE", "0.05");
    let loaded = ConfigSources { base: None, file: Some(path.clone()), env: true, overrides: vec![] }.load();
    let with_set =
        ConfigSources { base: None, file: Some(path), env: true, overrides: vec!["sampler.rounds=7".into()] }
            .load();
    std::env::remove_var("HAMOS_SAMPLER__KIND");
    std::env::remove_var("HAMOS_SAMPLER__STEP_SIZE");
    let resolved = loaded.unwrap().to_toml().unwrap();
    assert!(resolved.contains("kind = \"midpoint_jitter\""), "{resolved}");
    assert!(resolved.contains("step_size = 0.05"), "{resolved}");
    let resolved = with_set.unwrap().to_toml().unwrap();
    assert!(resolved.contains("rounds = 7"), "--set wins over the environment: {resolved}");

    // A swap by environment from the shipped preset starts the sections afresh (the preset's
    // `leapfrog_steps` and `delta` belong to the kinds it names).
    std::env::set_var("HAMOS_SAMPLER__KIND", "random_walk");
    std::env::set_var("HAMOS_BARRIER__KIND", "none");
    let swapped = hamos::load_config(None, vec![]);
    let with_field = hamos::load_config(None, vec!["barrier.delta=0.2".into()]);
    std::env::remove_var("HAMOS_SAMPLER__KIND");
    std::env::remove_var("HAMOS_BARRIER__KIND");
    let resolved = swapped.unwrap().to_toml().unwrap();
    assert!(
        resolved.contains("kind = \"random_walk\"") && !resolved.contains("leapfrog_steps"),
        "{resolved}"
    );
    assert!(resolved.contains("kind = \"none\"") && !resolved.contains("delta"), "{resolved}");
    let message = with_field.unwrap_err().to_string();
    assert!(
        message.contains("barrier `none` has no field `delta`") && message.contains("vmf_kde"),
        "{message}"
    );

    // The scripts' own variables (scripts/install-libtorch.sh, ...) are not config fields.
    for name in hamos::config::NON_CONFIG_ENV {
        std::env::set_var(format!("HAMOS_{}", name.to_uppercase()), "/some/where");
    }
    let with_script_variables = hamos::load_config(None, vec![]);
    for name in hamos::config::NON_CONFIG_ENV {
        std::env::remove_var(format!("HAMOS_{}", name.to_uppercase()));
    }
    with_script_variables.expect("HAMOS_TORCH_VENV and the other script variables are ignored");
}
