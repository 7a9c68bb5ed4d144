//! Timestamps are kept as milliseconds since the Unix epoch (UTC) and rendered as
//! RFC 3339 with exactly three fractional digits, e.g. `2024-01-15T10:00:00.000Z`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the instants the
/// SPEC's four-digit-year format can write. A timestamp vpsd stores from
/// input or arithmetic stays inside them (SPEC §12 "Time stays in range").
pub const EARLIEST: Millis = -62_167_219_200_000;
pub const LATEST: Millis = 253_402_300_799_999;
/// [`LATEST`] as written, for error messages.
pub const LATEST_TEXT: &str = "9999-12-31T23:59:59.999Z";

/// Whether `ms` can be stored and rendered as a four-digit-year timestamp.
pub fn in_range(ms: Millis) -> bool {
    (EARLIEST..=LATEST).contains(&ms)
}

pub fn now_millis() -> Millis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        // A clock before 1970 is a broken host; clamp rather than panic.
        Err(_) => 0,
    }
}

/// `2024-01-15T10:00:00.000Z`. Out-of-range values (only a record written
/// before the range was enforced can hold one) are clamped to the nearest end
/// of [`EARLIEST`]..=[`LATEST`]: a far-future expiry must never read as 1970.
pub fn format_millis(ms: Millis) -> String {
    let ms = ms.clamp(EARLIEST, LATEST);
    let dt = ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
    let year = dt.year();
    let Ok(year) = u16::try_from(year).map(u32::from) else {
        return format_slow(dt);
    };
    if year > 9999 {
        return format_slow(dt);
    }
    // Written digit by digit: an order renders several timestamps and
    // `format!` with padding was most of a GET's rendering cost.
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, u32::from(u8::from(dt.month())), 2);
    out.push('-');
    push_digits(&mut out, u32::from(dt.day()), 2);
    out.push('T');
    push_digits(&mut out, u32::from(dt.hour()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(dt.minute()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(dt.second()), 2);
    out.push('.');
    push_digits(&mut out, u32::from(dt.millisecond()), 3);
    out.push('Z');
    out
}

/// `value` zero-padded to exactly `width` digits (`value < 10^width`).
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + ((value / div) % 10) as u8));
        div /= 10;
    }
}

/// Years outside 0000-9999, which `{:04}` renders with a sign or more digits.
fn format_slow(dt: ::time::OffsetDateTime) -> String {
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
    fn digit_writer_matches_format_everywhere() {
        let samples = [
            i64::MIN,
            -62_167_219_200_001, // 0000-12-31T23:59:59.999 of year -1
            -62_167_219_200_000, // 0000-01-01
            -1,
            0,
            1,
            999,
            86_399_999,
            951_782_400_000, // 2000-02-29
            1_705_312_800_123,
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000,
            i64::MAX,
        ];
        let mut ms = -70_000_000_000_000i64;
        let mut all: Vec<i64> = samples.to_vec();
        while ms < 260_000_000_000_000 {
            all.push(ms);
            ms += 123_456_789_013;
        }
        for ms in all {
            let clamped = ms.clamp(EARLIEST, LATEST);
            let dt =
                ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(clamped) * 1_000_000)
                    .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
            assert_eq!(format_millis(ms), format_slow(dt), "{ms}");
        }
    }

    #[test]
    fn nothing_out_of_range_reads_as_1970() {
        assert_eq!(format_millis(LATEST), LATEST_TEXT);
        assert_eq!(format_millis(LATEST + 1), LATEST_TEXT);
        assert_eq!(format_millis(i64::MAX), LATEST_TEXT);
        assert_eq!(format_millis(EARLIEST), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_millis(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert!(in_range(LATEST) && !in_range(LATEST + 1));
        assert!(in_range(EARLIEST) && !in_range(EARLIEST - 1));
        assert_eq!(parse_rfc3339(LATEST_TEXT), Some(LATEST));
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
