//! Configs: defaults, round trips, unknown fields, validation and registration.

use hamos_api::registry::{find_plugin, plugin_names};
use hamos_api::{Error, PluginKind, Result, Scorer};
use hamos_scorers::{
    AshScorer, EnergyScorer, KnnScorer, MahalanobisScorer, MaxLogitScorer, MspScorer, RelationScorer,
    ScaleScorer,
};

#[test]
fn defaults_round_trip_and_reject_unknown_fields() {
    assert_eq!(KnnScorer::default(), KnnScorer { k: 50, chunk_rows: 1024 });
    assert_eq!(MahalanobisScorer::default().ridge, 1e-6);
    assert_eq!(EnergyScorer::default().temperature, 1.0);
    assert_eq!(AshScorer::default().percentile, 65.0);
    assert_eq!(ScaleScorer::default().percentile, 85.0);
    assert_eq!(RelationScorer::default(), RelationScorer { pow: 1, threshold: 0.03, chunk_rows: 256 });
    assert_eq!(toml::from_str::<AshScorer>("percentile = 70.0").expect("ash").percentile, 70.0);
    assert!(toml::from_str::<ScaleScorer>("prune = 1").is_err());
    assert!(toml::from_str::<RelationScorer>("power = 2").is_err());
    assert!(toml::from_str::<MaxLogitScorer>("t = 1").is_err());
    let text = toml::to_string(&KnnScorer::default()).expect("serialize");
    assert_eq!(toml::from_str::<KnnScorer>(&text).expect("deserialize"), KnnScorer::default());
    assert_eq!(
        toml::from_str::<KnnScorer>("k = 200").expect("partial"),
        KnnScorer { k: 200, chunk_rows: 1024 }
    );
    assert!(toml::from_str::<KnnScorer>("K = 200").is_err());
    assert!(toml::from_str::<MahalanobisScorer>("ridg = 0.1").is_err());
    assert!(toml::from_str::<EnergyScorer>("temp = 0.1").is_err());
    assert!(toml::from_str::<MspScorer>("t = 1").is_err());
    assert!(toml::from_str::<Box<dyn Scorer>>("kind = \"knn\"\nkk = 3").is_err());
}

#[test]
fn every_scorer_is_registered_and_its_default_loads() -> Result<()> {
    for name in ["knn", "mahalanobis", "msp", "energy", "maxlogit", "ash", "scale", "relation"] {
        assert!(plugin_names(PluginKind::Scorer).contains(&name), "{name} not registered");
        let table = (find_plugin(PluginKind::Scorer, name)?.default_config)()?;
        let loaded: Box<dyn Scorer> = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(e.to_string()))?;
        loaded.validate()?;
    }
    Ok(())
}

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other}"),
    }
}

#[test]
fn validate_names_the_field() {
    assert_eq!(field_of(KnnScorer { k: 0, ..KnnScorer::default() }.validate().expect_err("k")), "scorer.k");
    let err = KnnScorer { chunk_rows: 0, ..KnnScorer::default() }.validate().expect_err("chunk");
    assert_eq!(field_of(err), "scorer.chunk_rows");
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(field_of(MahalanobisScorer { ridge: bad }.validate().expect_err("ridge")), "scorer.ridge");
    }
    for bad in [0.0, -1.0, f64::NAN] {
        let err = EnergyScorer { temperature: bad }.validate().expect_err("temperature");
        assert_eq!(field_of(err), "scorer.temperature");
    }
}
