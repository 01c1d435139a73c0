//! Range checks for plugin configs, naming the dotted key at fault: a plugin's `validate()`
//! calls them (`positive("energy.k", self.k)`). The run config itself (`RunConfig`, its layers
//! and its sections) lives in the `hamos` crate (`hamos::config`).

use crate::error::{Error, Result};

/// Errors unless `value > 0`.
pub fn positive(field: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::invalid(field, "must be at least 1"));
    }
    Ok(())
}

/// Errors unless `value` is finite and within `[low, high]` (`low` excluded unless
/// `low_inclusive`).
pub fn finite_in(field: &str, value: f64, low: f64, high: f64, low_inclusive: bool) -> Result<()> {
    let above = if low_inclusive { value >= low } else { value > low };
    if !value.is_finite() || !above || value > high {
        let open = if low_inclusive { '[' } else { '(' };
        return Err(Error::invalid(field, format!("{value} is outside {open}{low}, {high}]")));
    }
    Ok(())
}
