//! Timestamps are kept as milliseconds since the Unix epoch (UTC) and rendered as
//! RFC 3339 with exactly three fractional digits, e.g. `2024-01-15T10:00:00.000Z`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is a broken host; clamp rather than panic.
        Err(_) => 0,
    }
}

/// `2024-01-15T10:00:00.000Z`. Out-of-range values are clamped to the epoch so a
/// corrupt timestamp can never panic a response.
pub fn format_millis(ms: Millis) -> String {
    let dt = ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Parses any RFC 3339 timestamp (DigitalOcean sends `2020-07-21T18:37:44Z`).
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let dt = ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
        .ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(format_millis(1_705_312_800_000), "2024-01-15T10:00:00.000Z");
        assert_eq!(format_millis(1_705_312_800_123), "2024-01-15T10:00:00.123Z");
    }

    #[test]
    fn parses_digitalocean_timestamps() {
        assert_eq!(
            parse_rfc3339("2024-01-15T10:00:00Z"),
            Some(1_705_312_800_000)
        );
        assert_eq!(parse_rfc3339("not a date"), None);
    }
}
