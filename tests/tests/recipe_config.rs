//! The fine-tuning recipe's options: defaults from the authors' trainer, every OOD-term variant
//! and the paper's and OpenOOD's CIDER weights expressible, bad values refused naming the field.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::{ConfigSources, OodLossForm, RunConfig};
use hamos_api::Error;
use hamos_integration_tests::write_config;

fn load(toml: &str) -> Result<RunConfig, Error> {
    let (_dir, path) = write_config("run.toml", toml).expect("temporary config");
    ConfigSources { base: None, file: Some(path), env: false, overrides: vec![] }.load()
}

/// CIDER's `(w_comp, w_dis)` as the resolved config writes them.
fn cider_weights(config: &RunConfig) -> (f64, f64) {
    let table: toml::Table = toml::from_str(&config.to_toml().unwrap()).unwrap();
    let loss = table["loss"].as_table().unwrap();
    assert_eq!(loss["kind"].as_str(), Some("cider"));
    (loss["w_comp"].as_float().unwrap(), loss["w_dis"].as_float().unwrap())
}

#[test]
fn defaults_follow_the_authors_trainer() {
    let config = load("").unwrap();
    assert_eq!(config.train.ood_temperature, 0.1, "tau of Eqn 7 is the class concentration, CIDER's 0.1");
    assert!(config.train.nesterov, "the authors' SGD is Nesterov");
    assert_eq!(config.train.ood_loss, OodLossForm::Uniform);
    let (w_comp, w_dis) = cider_weights(&config);
    assert!((w_comp - 0.1 / 0.07).abs() < 1e-15 && w_dis == 0.5, "{w_comp} {w_dis}");
}

#[test]
fn every_ood_term_and_cider_weighting_is_expressible_and_round_trips() {
    for (name, form) in [
        ("uniform", OodLossForm::Uniform),
        ("as_printed", OodLossForm::AsPrinted),
        ("released", OodLossForm::Released),
        ("outlier_negatives", OodLossForm::OutlierNegatives),
    ] {
        let config = load(&format!("[train]\nood_loss = \"{name}\"\nnesterov = false\n")).unwrap();
        assert_eq!(config.train.ood_loss, form);
        assert!(!config.train.nesterov);
        let again = load(&config.to_toml().unwrap()).unwrap();
        assert_eq!(again.train, config.train, "{name} does not round-trip");
    }
    // The paper's prose (Appendix E.2) and OpenOOD's CIDER trainer.
    for (w_comp, w_dis) in [(0.5, 1.0), (2.0, 1.0)] {
        let config =
            load(&format!("[loss]\nkind = \"cider\"\nw_comp = {w_comp}\nw_dis = {w_dis}\n")).unwrap();
        assert_eq!(cider_weights(&config), (w_comp, w_dis));
    }
}

#[test]
fn bad_recipe_values_name_the_field() {
    let message = load("[train]\nood_loss = \"sideways\"\n").unwrap_err().to_string();
    assert!(message.contains("sideways") && message.contains("outlier_negatives"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let message = load("[train]\nnesterov = true\nmomentum = 0.0\n").unwrap_err().to_string();
    assert!(message.contains("train.nesterov") && message.contains("momentum"), "{message}");
    let message = load("[train]\nood_temperature = 0.0\n").unwrap_err().to_string();
    assert!(message.contains("train.ood_temperature"), "{message}");
}
