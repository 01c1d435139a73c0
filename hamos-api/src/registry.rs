//! The plugin registry: every plugin submits a [`PluginRegistration`] with
//! [`register_plugin!`](crate::register_plugin), and configs pick plugins by name.
//!
//! A crate's registrations exist only in binaries and tests that link it: name the crate
//! somewhere (`use hamos_samplers as _;`) or its plugins are invisible.

use serde::Serialize;

use crate::error::{Error, Result};

/// The kinds of plugin; each is a section of the run config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// [`Backbone`](crate::Backbone), config section `model`.
    Model,
    /// [`Sampler`](crate::Sampler), config section `sampler`.
    Sampler,
    /// [`OodnessEnergy`](crate::OodnessEnergy), config section `energy`.
    Energy,
    /// [`IdBarrier`](crate::IdBarrier), config section `barrier`.
    Barrier,
    /// [`ContrastiveLoss`](crate::ContrastiveLoss), config section `loss`.
    Loss,
    /// [`Scorer`](crate::Scorer), config section `scorer`.
    Scorer,
}

impl PluginKind {
    /// Every kind, in config order.
    pub const ALL: [PluginKind; 6] = [
        PluginKind::Model,
        PluginKind::Sampler,
        PluginKind::Energy,
        PluginKind::Barrier,
        PluginKind::Loss,
        PluginKind::Scorer,
    ];

    /// The config section of this kind.
    pub fn section(self) -> &'static str {
        match self {
            PluginKind::Model => "model",
            PluginKind::Sampler => "sampler",
            PluginKind::Energy => "energy",
            PluginKind::Barrier => "barrier",
            PluginKind::Loss => "loss",
            PluginKind::Scorer => "scorer",
        }
    }
}

/// One registered plugin.
pub struct PluginRegistration {
    /// Its kind.
    pub kind: PluginKind,
    /// The name configs use (`kind = "hmc"`); must equal its `typetag` name.
    pub name: &'static str,
    /// One line for `hamos plugins`.
    pub description: &'static str,
    /// Its default config, `kind` included.
    pub default_config: fn() -> Result<toml::Table>,
    /// The `kind` its `typetag` impl writes, found by reading the default config back as the
    /// plugin trait object and writing it again (an error when `typetag` does not know `name`).
    pub typetag_name: fn() -> Result<String>,
}

inventory::collect!(PluginRegistration);

/// Every registered plugin, sorted by kind then name.
pub fn plugins() -> Vec<&'static PluginRegistration> {
    let mut all: Vec<_> = inventory::iter::<PluginRegistration>.into_iter().collect();
    all.sort_by_key(|r| (r.kind, r.name));
    all
}

/// Registered names of one kind, sorted.
pub fn plugin_names(kind: PluginKind) -> Vec<&'static str> {
    plugins().into_iter().filter(|r| r.kind == kind).map(|r| r.name).collect()
}

/// The registration of `name`, or an error listing the valid names.
pub fn find_plugin(kind: PluginKind, name: &str) -> Result<&'static PluginRegistration> {
    plugins().into_iter().find(|r| r.kind == kind && r.name == name).ok_or_else(|| Error::UnknownPlugin {
        kind: kind.section().to_string(),
        name: name.to_string(),
        valid: match plugin_names(kind).join(", ") {
            names if names.is_empty() => "none (is the plugin crate linked?)".to_string(),
            names => names,
        },
    })
}

/// `T::default()` as a TOML table with `kind = name` first; used by [`register_plugin!`](crate::register_plugin).
pub fn default_table<T: Serialize + Default>(name: &str) -> Result<toml::Table> {
    let fields = toml::Table::try_from(T::default())
        .map_err(|e| Error::Config(format!("default config of plugin `{name}`: {e}")))?;
    let mut table = toml::Table::new();
    table.insert("kind".into(), toml::Value::String(name.into()));
    table.extend(fields);
    Ok(table)
}

/// Reads `table` (a config with `kind = name`) as the trait object `T` and writes it back: the
/// `kind` the `typetag` impl writes. Fails when no `typetag` impl is named `name`.
pub fn typetag_name<T: serde::de::DeserializeOwned + Serialize>(
    name: &str,
    table: toml::Table,
) -> Result<String> {
    let object: T = table.try_into().map_err(|e| {
        let e = e.to_string().replace('\n', " ");
        Error::Config(format!("plugin `{name}`: its default config does not read back: {e}"))
    })?;
    let written = toml::Table::try_from(&object)
        .map_err(|e| Error::Config(format!("plugin `{name}`: its config does not write: {e}")))?;
    match written.get("kind") {
        Some(toml::Value::String(kind)) => Ok(kind.clone()),
        other => Err(Error::Config(format!("plugin `{name}`: written config has kind {other:?}"))),
    }
}

/// Checks that every registered plugin's `typetag` name equals its registered name (they are
/// written in two places unless the plugin uses a macro that writes both from one name, like
/// `hamos_samplers::register_kernel!`). Run by the workspace tests.
pub fn check_typetag_names() -> Result<()> {
    let mismatched: Vec<String> = plugins()
        .into_iter()
        .filter_map(|r| match (r.typetag_name)() {
            Ok(kind) if kind == r.name => None,
            Ok(kind) => Some(format!("{} `{}` has typetag name `{kind}`", r.kind.section(), r.name)),
            Err(e) => Some(format!("{} `{}`: {e}", r.kind.section(), r.name)),
        })
        .collect();
    match mismatched.is_empty() {
        true => Ok(()),
        false => {
            Err(Error::Config(format!("registered and typetag names differ: {}", mismatched.join("; "))))
        }
    }
}

/// The trait object of a plugin kind (used by [`register_plugin!`](crate::register_plugin)).
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_object {
    (Model) => { dyn $crate::Backbone };
    (Sampler) => { dyn $crate::Sampler };
    (Energy) => { dyn $crate::OodnessEnergy };
    (Barrier) => { dyn $crate::IdBarrier };
    (Loss) => { dyn $crate::ContrastiveLoss };
    (Scorer) => { dyn $crate::Scorer };
}

/// Registers a plugin struct under a kind and name. The struct must also carry
/// `#[typetag::serde(name = "...")]` on its trait impl with the same name;
/// [`check_typetag_names`] (run by the workspace tests) fails when they differ.
///
/// ```ignore
/// hamos_api::register_plugin!(Sampler, MySampler, "my_sampler", "what it does, in one line");
/// ```
#[macro_export]
macro_rules! register_plugin {
    ($kind:ident, $ty:ty, $name:literal, $description:literal) => {
        $crate::inventory::submit! {
            $crate::registry::PluginRegistration {
                kind: $crate::registry::PluginKind::$kind,
                name: $name,
                description: $description,
                default_config: || $crate::registry::default_table::<$ty>($name),
                typetag_name: || {
                    $crate::registry::typetag_name::<Box<$crate::__plugin_object!($kind)>>(
                        $name,
                        $crate::registry::default_table::<$ty>($name)?,
                    )
                },
            }
        }
    };
}
