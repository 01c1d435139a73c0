//! Swapping a plugin from the shipped preset: every registered kind of every section, through
//! `--set` (the library call `hamos config`, `run`, `train` and `synth` make), gives a valid
//! config that starts the section from the new kind's defaults; fields are errors only when given
//! for a kind that lacks them, and the message names the kinds that own them.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::{Base, RunConfig};
use hamos_api::registry::{plugin_names, plugins};
use hamos_api::{Error, PluginKind};
use hamos_integration_tests::write_config;

fn load(base: Base, file: Option<std::path::PathBuf>, overrides: &[&str]) -> Result<RunConfig, Error> {
    let mut sources = hamos::config_sources(base, file, overrides.iter().map(|s| s.to_string()).collect());
    sources.env = false;
    sources.load()
}

fn preset(overrides: &[&str]) -> Result<RunConfig, Error> {
    load(Base::Preset, None, overrides)
}

fn section(config: &RunConfig, name: &str) -> toml::Table {
    let table: toml::Table = toml::from_str(&config.to_toml().unwrap()).unwrap();
    table[name].as_table().unwrap().clone()
}

fn error(result: Result<RunConfig, Error>) -> String {
    let message = result.expect_err("config should be rejected").to_string();
    assert!(!message.contains('\n'), "error spans lines: {message}");
    message
}

#[test]
fn every_registered_kind_swaps_in_from_the_preset() {
    let mut swapped = 0;
    for kind in PluginKind::ALL {
        let names = plugin_names(kind);
        assert!(!names.is_empty(), "no {} plugins linked", kind.section());
        for name in names {
            let set = format!("{}.kind={name}", kind.section());
            let config = preset(&[&set]).unwrap_or_else(|e| panic!("--set {set}: {e}"));
            let got = section(&config, kind.section());
            // The section is exactly the new kind's defaults (the preset sets only fields of the
            // kinds it names, so a swap keeps none of them)...
            let registration = plugins().into_iter().find(|p| p.kind == kind && p.name == name).unwrap();
            let defaults = (registration.default_config)().unwrap();
            let same_kind = hamos::load_config_from(Base::Preset, None, vec![])
                .map(|c| section(&c, kind.section())["kind"].as_str() == Some(name))
                .unwrap();
            if !same_kind {
                assert_eq!(got, defaults, "--set {set}");
            }
            // ... and the rest of the preset is untouched.
            assert_eq!(config.train.epochs, 3, "--set {set}");
            swapped += 1;
        }
    }
    // 5 samplers + midpoint_jitter + vos + npos, 9 scorers, 4 losses, 3 models, ...
    assert!(swapped >= 25, "only {swapped} plugins swapped");
}

#[test]
fn a_swap_keeps_fields_given_for_the_new_kind_in_any_order() {
    for overrides in [
        ["sampler.kind=random_walk", "sampler.step_size=0.3"],
        ["sampler.step_size=0.3", "sampler.kind=random_walk"],
    ] {
        let sampler = section(&preset(&overrides).unwrap(), "sampler");
        assert_eq!(sampler["kind"].as_str(), Some("random_walk"));
        assert_eq!(sampler["step_size"].as_float(), Some(0.3), "{overrides:?}");
        assert!(!sampler.contains_key("leapfrog_steps"), "{sampler}");
    }
    // Fields of the same kind keep the preset's values: the preset's energy k = 200 survives a
    // restated kind.
    let energy = section(&preset(&["energy.kind=knn"]).unwrap(), "energy");
    assert_eq!(energy["k"].as_integer(), Some(200));
}

#[test]
fn a_field_the_new_kind_lacks_names_the_kinds_that_own_it() {
    let message = error(preset(&["sampler.kind=random_walk", "sampler.leapfrog_steps=3"]));
    assert!(message.contains("sampler.leapfrog_steps") && message.contains("`random_walk`"), "{message}");
    assert!(message.contains("`hmc`"), "names the owner: {message}");
    assert!(message.contains("step_size") && message.contains("--set sampler.leapfrog_steps=3"), "{message}");
    let message = error(preset(&["barrier.kind=none", "barrier.delta=0.2"]));
    assert!(message.contains("barrier `none` has no field `delta`"), "{message}");
    assert!(message.contains("`vmf_kde`") && message.contains("has no fields"), "{message}");
    assert!(!message.contains("expected one of ,") && !message.ends_with("expected one of "), "{message}");
    // Without a swap, a field the kind lacks is still an error.
    let message = error(preset(&["sampler.friction=1"]));
    assert!(message.contains("sampler `hmc` has no field `friction`"), "{message}");
}

#[test]
fn a_file_swap_starts_from_the_new_kind_and_the_file_layers_over_the_preset() {
    let table9 = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/configs/table9-random-walk.toml");
    let config = load(Base::Preset, Some(table9.into()), &[]).unwrap();
    assert_eq!(section(&config, "sampler")["kind"].as_str(), Some("random_walk"));
    let main_job = preset(&[]).unwrap();
    assert_eq!(config.train, main_job.train, "the Table 9 row keeps the main job's schedule");
    assert_eq!(config.data, main_job.data);
    // The paper's Table 4 on request.
    let table4 = load(Base::Table4, Some(table9.into()), &[]).unwrap();
    assert_eq!(table4.train.epochs, 20);
    // A file that swaps and then an override of the new kind.
    let (_dir, path) = write_config("run.toml", "[sampler]\nkind = \"mala\"\nstep_size = 0.2\n").unwrap();
    let config = load(Base::Preset, Some(path.clone()), &["sampler.rounds=2"]).unwrap();
    let sampler = section(&config, "sampler");
    assert_eq!((sampler["step_size"].as_float(), sampler["rounds"].as_integer()), (Some(0.2), Some(2)));
    // The file's mala fields do not survive a later swap back to hmc.
    let config = load(Base::Preset, Some(path), &["sampler.kind=hmc"]).unwrap();
    assert_eq!(section(&config, "sampler")["step_size"].as_float(), Some(0.1));
}

#[test]
fn nested_data_tables_merge_and_change_format_afresh() {
    let config = preset(&["data.train.name=mnist"]).unwrap();
    assert_eq!(config.data.train, hamos::DatasetSpec::Shipped { name: "mnist".into() });
    assert_eq!(config.data.validation_fraction, 0.1);
    let config = preset(&["data.test.format=idx", "data.test.images=x.gz"]).unwrap();
    assert_eq!(config.data.test, hamos::DatasetSpec::Idx { images: "x.gz".into(), labels: None });
    let message = error(preset(&["data.test.format=idx"]));
    assert!(message.contains("data.test") && message.contains("images"), "{message}");
    let config = preset(&["data.augment.crop_padding=0"]).unwrap();
    assert!(config.data.augment.horizontal_flip, "the other augment fields keep their values");
}

#[test]
fn core_fields_get_one_line_errors_without_internals() {
    for (set, field, hint) in [
        ("samplr.step_size=0.05", "samplr", "did you mean `sampler`"),
        ("seed=x", "seed", "expected u64"),
        ("train.epochs=-3", "train.epochs", "usize"),
        ("train.epoch=3", "train.epoch", "epochs"),
        ("data.mean=0.3", "data.mean", "sequence"),
        ("data.augment.flip=1", "data.augment.flip", "horizontal_flip"),
        ("backend=tcj", "backend", "candle"),
        ("sampler.step_size=fast", "sampler.step_size", "f64"),
    ] {
        let message = error(preset(&[set]));
        assert!(message.contains(field) && message.contains(hint), "--set {set}: {message}");
        for leak in [".rs:", "toml::value", "Value"] {
            assert!(!message.contains(leak), "--set {set} leaks {leak}: {message}");
        }
    }
}

#[test]
fn floats_print_as_written() {
    let text = preset(&[]).unwrap().to_toml().unwrap();
    assert!(text.contains("mean = [0.286]") && text.contains("std = [0.353]"), "{text}");
    assert!(!text.contains("0.28600001"), "{text}");
    // What is printed reads back to the same config.
    let (_dir, path) = write_config("config.toml", &text).unwrap();
    let again = load(Base::Table4, Some(path), &[]).unwrap().to_toml().unwrap();
    assert_eq!(again, text);
}
