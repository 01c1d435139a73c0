//! `hamos plugins`: what is registered.

use std::fmt::Write;

use hamos_api::registry::{plugins, PluginKind};
use hamos_api::Result;

/// Every compiled backend and registered plugin, grouped by kind, with defaults.
pub fn listing() -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(out, "backends:");
    for registration in inventory_backends() {
        let _ = writeln!(out, "  {:<14} {}", registration.0, registration.1);
    }
    for kind in PluginKind::ALL {
        let _ = writeln!(out, "\n{} (config section [{}]):", kind.section(), kind.section());
        for plugin in plugins().into_iter().filter(|p| p.kind == kind) {
            let _ = writeln!(out, "  {:<14} {}", plugin.name, plugin.description);
            let defaults = (plugin.default_config)()?;
            let fields: Vec<String> = defaults
                .iter()
                .filter(|(key, _)| key.as_str() != "kind")
                .map(|(key, value)| format!("{key} = {value}"))
                .collect();
            if !fields.is_empty() {
                let _ = writeln!(out, "  {:<14} defaults: {}", "", fields.join(", "));
            }
        }
    }
    Ok(out)
}

fn inventory_backends() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<_> = hamos_api::inventory::iter::<hamos_api::BackendRegistration>
        .into_iter()
        .map(|r| (r.name, r.description))
        .collect();
    all.sort_unstable();
    all
}
