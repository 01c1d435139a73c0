//! Configs: defaults, round trips, unknown fields, validation and registration.

use hamos_api::registry::{find_plugin, plugin_names};
use hamos_api::{ContrastiveLoss, Error, PluginKind, Result};
use hamos_losses::{CeOnly, Cider, SimClr, SupCon};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let text = toml::to_string(value).expect("serialize");
    toml::from_str(&text).expect("deserialize")
}

#[test]
fn defaults_are_the_documented_values_and_round_trip() {
    let cider = Cider::default();
    assert_eq!(
        (cider.temperature, cider.prototype_momentum, cider.w_comp, cider.w_dis),
        (0.1, 0.95, 0.1 / 0.07, 0.5),
        "the authors' trainer: 1 x (0.1 / 0.07) compactness, 0.5 dispersion"
    );
    let supcon = SupCon::default();
    assert_eq!((supcon.temperature, supcon.base_temperature), (0.1, 0.1));
    assert_eq!(SimClr::default().temperature, 0.5);
    assert_eq!(round_trip(&cider), cider);
    assert_eq!(round_trip(&supcon), supcon);
    assert_eq!(round_trip(&SimClr::default()), SimClr::default());
    assert_eq!(round_trip(&CeOnly {}), CeOnly {});
    // Missing fields take their defaults.
    let partial: Cider = toml::from_str("temperature = 0.2").expect("partial");
    assert_eq!(partial, Cider { temperature: 0.2, ..Cider::default() });
}

#[test]
fn unknown_fields_are_rejected() {
    assert!(toml::from_str::<Cider>("temprature = 0.2").is_err());
    assert!(toml::from_str::<SupCon>("temperature = 0.2\nbase_temp = 0.1").is_err());
    assert!(toml::from_str::<SimClr>("tau = 0.2").is_err());
    assert!(toml::from_str::<CeOnly>("weight = 1.0").is_err());
    let boxed = toml::from_str::<Box<dyn ContrastiveLoss>>("kind = \"cider\"\nw_disp = 0.5");
    assert!(boxed.is_err(), "typo inside a tagged plugin section");
}

#[test]
fn plugins_load_by_name_with_overrides() -> Result<()> {
    let boxed: Box<dyn ContrastiveLoss> =
        toml::from_str("kind = \"supcon\"\ntemperature = 0.2").map_err(|e| Error::Config(e.to_string()))?;
    boxed.validate()?;
    assert_eq!(format!("{boxed:?}"), format!("{:?}", SupCon { temperature: 0.2, ..SupCon::default() }));
    for name in ["cider", "supcon", "simclr", "ce_only"] {
        assert!(plugin_names(PluginKind::Loss).contains(&name), "{name} not registered");
        let table = (find_plugin(PluginKind::Loss, name)?.default_config)()?;
        let loaded: Box<dyn ContrastiveLoss> = toml::Value::Table(table)
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
fn validate_rejects_out_of_range_values() {
    for t in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        let err = Cider { temperature: t, ..Cider::default() }.validate().expect_err("cider temperature");
        assert_eq!(field_of(err), "loss.temperature");
        let err = SupCon { temperature: t, ..SupCon::default() }.validate().expect_err("supcon temperature");
        assert_eq!(field_of(err), "loss.temperature");
        let err = SimClr { temperature: t }.validate().expect_err("simclr temperature");
        assert_eq!(field_of(err), "loss.temperature");
    }
    let err = SupCon { base_temperature: 0.0, ..SupCon::default() }.validate().expect_err("base");
    assert_eq!(field_of(err), "loss.base_temperature");
    let err = Cider { prototype_momentum: 1.5, ..Cider::default() }.validate().expect_err("momentum");
    assert_eq!(field_of(err), "loss.prototype_momentum");
    let err = Cider { w_comp: -1.0, ..Cider::default() }.validate().expect_err("w_comp");
    assert_eq!(field_of(err), "loss.w_comp");
    let err = Cider { w_dis: f64::NAN, ..Cider::default() }.validate().expect_err("w_dis");
    assert_eq!(field_of(err), "loss.w_dis");
    assert!(Cider::default().validate().is_ok() && CeOnly {}.validate().is_ok());
}
