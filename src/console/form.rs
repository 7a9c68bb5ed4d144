//! `application/x-www-form-urlencoded` bodies, and turning a form into the
//! JSON object the API's validators read, so a console form is checked by
//! exactly the code that checks the same API call.

use serde_json::{Map, Value};

/// A parsed form body. Repeated names keep the first value.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// A body that is not a form parses as an empty form (and then fails the
    /// CSRF check, or the field checks, like a form with nothing filled in).
    pub fn parse(body: &[u8]) -> Form {
        Form {
            pairs: serde_urlencoded::from_bytes(body).unwrap_or_default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field with surrounding blanks removed; empty counts as absent, as an
    /// untouched optional field is sent empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The JSON object the API would receive: `texts` as strings, `numbers`
    /// as integers when they are whole numbers (anything else stays text, so
    /// the validator names the field), each under its API name.
    pub fn to_json(&self, texts: &[(&str, &str)], numbers: &[(&str, &str)]) -> Map<String, Value> {
        let mut map = Map::new();
        for (field, api) in texts {
            if let Some(v) = self.text(field) {
                map.insert((*api).into(), Value::String(v.into()));
            }
        }
        for (field, api) in numbers {
            if let Some(v) = self.text(field) {
                let value = v
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(v.into()));
                map.insert((*api).into(), value);
            }
        }
        map
    }
}

/// A `datetime-local` value (`2026-12-30T04:20`, UTC by the form's label) or
/// any RFC 3339 text, as RFC 3339.
pub fn datetime_to_rfc3339(value: &str) -> String {
    let v = value.trim();
    let looks_local = v.len() >= 16
        && v.as_bytes().get(10) == Some(&b'T')
        && !v.ends_with('Z')
        && v.get(10..).is_some_and(|t| !t.contains(['+', '-']));
    match (looks_local, v.len()) {
        (true, 16) => format!("{v}:00Z"),
        (true, _) => format!("{v}Z"),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_integers_and_blanks_vanish() {
        let form = Form::parse(b"amount=150000&periods=x&notes=+&csrf=t");
        let map = form.to_json(
            &[("notes", "notes")],
            &[("amount", "amount"), ("periods", "periods")],
        );
        assert_eq!(map.get("amount"), Some(&Value::from(150000u64)));
        assert_eq!(map.get("periods"), Some(&Value::String("x".into())));
        assert!(!map.contains_key("notes"));
    }

    #[test]
    fn local_times_are_read_as_utc() {
        assert_eq!(
            datetime_to_rfc3339("2026-12-30T04:20"),
            "2026-12-30T04:20:00Z"
        );
        assert_eq!(
            datetime_to_rfc3339("2026-12-30T04:20:05"),
            "2026-12-30T04:20:05Z"
        );
        assert_eq!(
            datetime_to_rfc3339("2026-12-30T04:20:05+07:00"),
            "2026-12-30T04:20:05+07:00"
        );
    }
}
