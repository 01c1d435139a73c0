//! Time stamps of run directories: `runs/<UTC time stamp>-<name>` unless the user names one.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYYmmdd-HHMMSS` in UTC for `secs` since the Unix epoch.
pub fn utc_stamp(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// [`utc_stamp`] of the current time.
pub fn now_stamp() -> String {
    utc_stamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_known_instants() {
        assert_eq!(super::utc_stamp(0), "19700101-000000");
        // 2026-12-06 00:56:20 UTC.
        assert_eq!(super::utc_stamp(1_796_518_580), "20261206-005620");
        // 2000-02-29 12:00:00 UTC (a leap day).
        assert_eq!(super::utc_stamp(951_825_600), "20000229-120000");
    }
}
