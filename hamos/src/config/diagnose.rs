//! One-line errors for bad configs, naming the field, where it was set and the valid choices.

use hamos_api::registry::{find_plugin, plugins, PluginKind};
use hamos_api::{Backbone, ContrastiveLoss, Error, IdBarrier, OodnessEnergy, Result, Sampler, Scorer};
use toml::{Table, Value};

use super::sources::{code_defaults, one_line, plugin_defaults, Merged};
use super::RunConfig;

/// The top-level keys of a run config.
const TOP_LEVEL: [&str; 12] = [
    "seed", "backend", "device", "threads", "model", "sampler", "energy", "barrier", "loss", "scorer",
    "train", "data",
];

/// ` (set by ...)` for `path`, when a source other than the code defaults set it.
fn origin(merged: &Merged, path: &str) -> String {
    let prefix = format!("{path}.");
    let found = merged.origins.iter().find(|(p, _)| *p == path || p.starts_with(&prefix)).map(|(_, o)| o);
    // A leaf inside a list is recorded as the list (`data.ood` for `data.ood.0.group`).
    let found = found.or_else(|| {
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('.') {
            if let Some(origin) = merged.origins.get(parent) {
                return Some(origin);
            }
            at = parent;
        }
        None
    });
    found.map_or_else(String::new, |origin| format!(" (set by {origin})"))
}

/// Unknown top-level keys, with the closest valid name.
pub(super) fn check_top_level(merged: &Merged) -> Result<()> {
    for key in merged.table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            let hint = closest(key, TOP_LEVEL.iter().copied())
                .map_or_else(String::new, |name| format!("did you mean `{name}`? "));
            return Err(Error::Config(format!(
                "`{key}`{}: no such section or field; {hint}valid: {}",
                origin(merged, key),
                TOP_LEVEL.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks the plugin name and fields of one plugin section.
pub(super) fn check_plugin_section(kind: PluginKind, merged: &Merged) -> Result<()> {
    let section_name = kind.section();
    let section = match merged.table.get(section_name) {
        Some(Value::Table(section)) => section,
        other => {
            return Err(Error::Config(format!(
                "{section_name}{}: expected a section with `kind = \"...\"`, got {}",
                origin(merged, section_name),
                other.map_or("nothing", Value::type_str)
            )))
        }
    };
    let name = match section.get("kind") {
        Some(Value::String(name)) => name.as_str(),
        other => {
            return Err(Error::Config(format!(
                "{section_name}.kind{}: expected a plugin name, got {}",
                origin(merged, &format!("{section_name}.kind")),
                other.map_or("nothing", Value::type_str)
            )))
        }
    };
    find_plugin(kind, name)?;
    let Err(whole) = deserialize_plugin(kind, section.clone()) else { return Ok(()) };
    let defaults = plugin_defaults(kind, name).unwrap_or_default();
    for (key, value) in section.iter().filter(|(key, _)| key.as_str() != "kind") {
        let path = format!("{section_name}.{key}");
        if !defaults.contains_key(key) {
            // Not a field of this plugin (or an optional one: then it reads alone).
            let mut single = Table::new();
            single.insert("kind".into(), Value::String(name.into()));
            single.insert(key.clone(), value.clone());
            if deserialize_plugin(kind, single).is_ok() {
                continue;
            }
            return Err(Error::Config(format!(
                "{path}{}: {}",
                origin(merged, &path),
                not_a_field(kind, name, key)
            )));
        }
        let mut single = Table::new();
        single.insert("kind".into(), Value::String(name.into()));
        single.insert(key.clone(), value.clone());
        if let Err(error) = deserialize_plugin(kind, single) {
            return Err(Error::Config(format!("{path}{}: {error}", origin(merged, &path))));
        }
    }
    Err(Error::Config(format!("{section_name}: {whole}")))
}

/// `sampler `random_walk` has no field `leapfrog_steps` (a field of `hmc`, ...); its fields: ...`.
fn not_a_field(kind: PluginKind, name: &str, key: &str) -> String {
    let owners: Vec<String> = plugins()
        .into_iter()
        .filter(|p| p.kind == kind && p.name != name)
        .filter(|p| plugin_defaults(kind, p.name).is_some_and(|d| d.contains_key(key)))
        .map(|p| format!("`{}`", p.name))
        .collect();
    let owned = match owners.len() {
        0 => String::new(),
        1 => format!(" (it is a field of {})", owners[0]),
        _ => format!(" (it is a field of {})", owners.join(", ")),
    };
    let fields: Vec<String> =
        plugin_defaults(kind, name).unwrap_or_default().keys().map(|k| format!("`{k}`")).collect();
    let valid = match fields.is_empty() {
        true => format!("`{name}` has no fields"),
        false => format!("fields of `{name}`: {}", fields.join(", ")),
    };
    format!("{} `{name}` has no field `{key}`{owned}; {valid}", kind.section())
}

fn deserialize_plugin(kind: PluginKind, section: Table) -> std::result::Result<(), String> {
    let value = Value::Table(section);
    let result = match kind {
        PluginKind::Model => value.try_into::<Box<dyn Backbone>>().map(drop),
        PluginKind::Sampler => value.try_into::<Box<dyn Sampler>>().map(drop),
        PluginKind::Energy => value.try_into::<Box<dyn OodnessEnergy>>().map(drop),
        PluginKind::Barrier => value.try_into::<Box<dyn IdBarrier>>().map(drop),
        PluginKind::Loss => value.try_into::<Box<dyn ContrastiveLoss>>().map(drop),
        PluginKind::Scorer => value.try_into::<Box<dyn Scorer>>().map(drop),
    };
    result.map_err(|e| one_line(&e))
}

/// The first error of a figment extraction, as `path (set by ...): message`, when it has a path.
pub(super) fn figment_fault(merged: &Merged, error: &figment::Error) -> Option<Error> {
    let first = error.clone().into_iter().next()?;
    if first.path.is_empty() {
        return None;
    }
    let path = first.path.join(".");
    let message = match &first.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            let valid: Vec<String> = expected.iter().map(|f| format!("`{f}`")).collect();
            let hint = closest(field, expected.iter().copied())
                .map_or_else(String::new, |name| format!("did you mean `{name}`? "));
            format!("unknown field `{field}`; {hint}valid: {}", valid.join(", "))
        }
        kind => one_line(kind),
    };
    Some(Error::Config(format!("{path}{}: {message}", origin(merged, &path))))
}

/// Finds the field whose value makes the config unreadable: each value set in turn into the
/// code defaults (which read), descending into sections, so the message names the field.
pub(super) fn locate_fault(merged: &Merged, whole: &str) -> Result<Error> {
    let mut base = code_defaults()?;
    for kind in PluginKind::ALL {
        if let Some(section) = merged.table.get(kind.section()) {
            base.insert(kind.section().into(), section.clone());
        }
    }
    let reads =
        |table: &Table| Value::Table(table.clone()).try_into::<RunConfig>().err().map(|e| one_line(&e));
    if reads(&base).is_some() {
        return Ok(Error::Config(whole.to_string()));
    }
    Ok(match fault_at(&base, &merged.table, &[], &reads) {
        Some((path, message)) => {
            // The deserializer ends its message with ` in `path``: drop it, keeping its path when
            // it is more precise (an element of a list, `data.ood.0.group`).
            let (message, precise) = match message.rsplit_once(" in `") {
                Some((head, tail)) if tail.ends_with('`') && !tail[..tail.len() - 1].contains('`') => {
                    let inner = &tail[..tail.len() - 1];
                    // Its path has no list indices (`data.ood.group`); ours may (`data.ood.0`).
                    let unindexed: Vec<&str> =
                        path.split('.').filter(|p| p.parse::<usize>().is_err()).collect();
                    let unindexed = unindexed.join(".");
                    let precise =
                        inner.strip_prefix(&format!("{unindexed}.")).map(|rest| format!("{path}.{rest}"));
                    (head.to_string(), precise)
                }
                _ => (message, None),
            };
            let shown = precise.unwrap_or_else(|| path.clone());
            Error::Config(format!("{shown}{}: {message}", origin(merged, &path)))
        }
        None => Error::Config(whole.to_string()),
    })
}

type Reads<'a> = dyn Fn(&Table) -> Option<String> + 'a;

fn fault_at(base: &Table, merged: &Table, prefix: &[String], reads: &Reads<'_>) -> Option<(String, String)> {
    let here = match prefix.is_empty() {
        true => merged,
        false => get_path(merged, prefix)?.as_table()?,
    };
    for (key, value) in here {
        let mut path = prefix.to_vec();
        path.push(key.clone());
        if prefix.is_empty() && PluginKind::ALL.iter().any(|k| k.section() == key) {
            continue;
        }
        let mut candidate = base.clone();
        set_path(&mut candidate, &path, value.clone());
        let Some(message) = reads(&candidate) else { continue };
        let dotted = path.join(".");
        if let (Value::Array(items), Some(Value::Array(_))) = (value, get_path(base, &path)) {
            // A list of tables (`data.ood`): the first element that does not read alone.
            for (i, item) in items.iter().enumerate() {
                let mut single = base.clone();
                set_path(&mut single, &path, Value::Array(vec![item.clone()]));
                if let Some(message) = reads(&single) {
                    return Some((format!("{dotted}.{i}"), message));
                }
            }
        }
        let tagged = dotted == "data.train" || dotted == "data.test";
        if !tagged && value.is_table() && matches!(get_path(base, &path), Some(Value::Table(_))) {
            if let Some(found) = fault_at(base, merged, &path, reads) {
                return Some(found);
            }
        }
        return Some((dotted, message));
    }
    None
}

fn get_path<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut at = table.get(first)?;
    for part in rest {
        at = at.as_table()?.get(part)?;
    }
    Some(at)
}

fn set_path(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut at = table;
    for part in parents {
        let entry = at.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        at = next;
    }
    at.insert(last.clone(), value);
}

/// The candidate closest to `word` by edit distance, when close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
