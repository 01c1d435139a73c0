//! A plugin whose `typetag` name differs from its registered name is caught.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

use hamos_api::registry::{check_typetag_names, find_plugin, PluginKind};
use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput};
use serde::{Deserialize, Serialize};

/// Registered as `registered_name`, typetag-named `other_name`: the mistake to catch.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Mismatched {}

hamos_api::register_plugin!(Sampler, Mismatched, "registered_name", "a mismatched test plugin");

#[typetag::serde(name = "other_name")]
impl Sampler for Mismatched {
    fn synthesize(
        &self,
        _input: &SynthesisInput<'_>,
        _energy: &dyn OodnessEnergy,
        _barrier: &dyn IdBarrier,
        _rng: &mut dyn rand::RngCore,
    ) -> Result<Synthesis> {
        Err(hamos_api::Error::Data("not used".into()))
    }
}

/// Registered and typetag-named alike.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Matched {}

hamos_api::register_plugin!(Sampler, Matched, "matched_name", "a matched test plugin");

#[typetag::serde(name = "matched_name")]
impl Sampler for Matched {
    fn synthesize(
        &self,
        _input: &SynthesisInput<'_>,
        _energy: &dyn OodnessEnergy,
        _barrier: &dyn IdBarrier,
        _rng: &mut dyn rand::RngCore,
    ) -> Result<Synthesis> {
        Err(hamos_api::Error::Data("not used".into()))
    }
}

#[test]
fn a_name_mismatch_is_an_error_naming_the_plugin() {
    let matched = find_plugin(PluginKind::Sampler, "matched_name").unwrap();
    assert_eq!((matched.typetag_name)().unwrap(), "matched_name");
    let mismatched = find_plugin(PluginKind::Sampler, "registered_name").unwrap();
    let error = (mismatched.typetag_name)().unwrap_err().to_string();
    assert!(error.contains("registered_name") && error.contains("does not read back"), "{error}");
    let error = check_typetag_names().unwrap_err().to_string();
    assert!(error.contains("sampler `registered_name`"), "{error}");
    assert!(!error.contains("sampler `matched_name`"), "only the mismatch is named: {error}");
    assert!(!error.contains('\n'), "one line: {error}");
}
