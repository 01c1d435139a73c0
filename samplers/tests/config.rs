//! The MCMC samplers' configs: the shared fields flatten into each, unknown fields and bad
//! values are named, and registered names match the `typetag` names.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

use hamos_api::Sampler;
use hamos_samplers as _;

const MCMC: [&str; 5] = ["hmc", "mala", "rmhmc", "mmala", "random_walk"];

fn parse(text: &str) -> Result<Box<dyn Sampler>, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

#[test]
fn shared_fields_read_and_write_flat() {
    for kind in MCMC {
        let sampler =
            parse(&format!("kind = \"{kind}\"\nrounds = 7\nstep_size = 0.25\nn_adj = 2\n")).unwrap();
        sampler.validate().unwrap();
        let written = toml::to_string(&sampler).unwrap();
        for line in ["rounds = 7", "step_size = 0.25", "n_adj = 2", &format!("kind = \"{kind}\"")] {
            assert!(written.contains(line), "{kind}: {written}");
        }
        let defaults = toml::to_string(&parse(&format!("kind = \"{kind}\"")).unwrap()).unwrap();
        assert!(defaults.contains("rounds = 5") && defaults.contains("step_size = 0.1"), "{defaults}");
    }
}

#[test]
fn unknown_fields_and_bad_values_are_named() {
    for kind in MCMC {
        let error = parse(&format!("kind = \"{kind}\"\nbogus_field = 1\n")).unwrap_err();
        assert!(error.contains("bogus_field"), "{kind}: {error}");
        for (field, value) in [("rounds", "0"), ("n_adj", "0"), ("step_size", "0.0"), ("step_size", "1e9")] {
            let sampler = parse(&format!("kind = \"{kind}\"\n{field} = {value}\n")).unwrap();
            let error = sampler.validate().unwrap_err().to_string();
            assert!(error.contains(&format!("sampler.{field}")), "{kind} {field} = {value}: {error}");
        }
    }
    let error = parse("kind = \"mala\"\nleapfrog_steps = 3\n").unwrap_err();
    assert!(error.contains("leapfrog_steps"), "{error}");
    for (kind, field, value) in
        [("hmc", "leapfrog_steps", "0"), ("rmhmc", "shrinkage", "1.5"), ("mmala", "history", "0")]
    {
        let sampler = parse(&format!("kind = \"{kind}\"\n{field} = {value}\n")).unwrap();
        let error = sampler.validate().unwrap_err().to_string();
        assert!(error.contains(&format!("sampler.{field}")), "{kind}: {error}");
    }
}

#[test]
fn registered_names_are_the_typetag_names() {
    hamos_api::registry::check_typetag_names().unwrap();
}
