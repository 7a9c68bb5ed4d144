//! `application/x-www-form-urlencoded` bodies, and reading a form's fields
//! into typed values ([`Checked`]) by the rules, and with the words, of the
//! API's validators for the same call, so an operator reads the same
//! complaint in the console as an API client in its error envelope.

use crate::domain::error::FieldProblems;
use crate::domain::time::Millis;
use crate::domain::values::{check_line, FreeText};
use crate::error::AppError;

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
}

/// Collects the problems of a form's fields so one message names them all;
/// each field is named by its API name (the form's field names are the same).
pub struct Checked<'f> {
    form: &'f Form,
    problems: FieldProblems,
}

/// Longest choice of a select (the API's limit for its enum fields).
const MAX_CHOICE_LEN: usize = 64;

impl<'f> Checked<'f> {
    pub fn new(form: &'f Form) -> Checked<'f> {
        Checked {
            form,
            problems: FieldProblems::default(),
        }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.problems.fail(field, message);
    }

    /// Free text (a note, a reason), by the same rule as the API's.
    pub fn free_text(&mut self, field: &str) -> Option<String> {
        let text = self.form.text(field)?;
        let parsed = FreeText::parse(text).map(FreeText::into_string);
        self.problems.check(field, parsed)
    }

    /// A plain one-line value of at most `max_len` characters, by the API's rule.
    fn line(&mut self, field: &str, text: &str, max_len: usize) -> bool {
        self.problems
            .check(field, check_line(text, max_len))
            .is_some()
    }

    /// A whole number within `min..=max`.
    pub fn whole_number(&mut self, field: &str, required: bool, min: u64, max: u64) -> Option<u64> {
        let Some(text) = self.form.text(field) else {
            if required {
                self.fail(field, "is required");
            }
            return None;
        };
        let number = text.parse::<u64>().ok().filter(|n| (min..=max).contains(n));
        if number.is_none() {
            self.fail(field, format!("must be a whole number from {min} to {max}"));
        }
        number
    }

    /// One of `choices`, by its wire name (`name`).
    pub fn one_of<T: Copy>(
        &mut self,
        field: &str,
        choices: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        let text = self.form.text(field)?;
        if !self.line(field, text, MAX_CHOICE_LEN) {
            return None;
        }
        let chosen = choices.iter().copied().find(|c| name(*c) == text);
        if chosen.is_none() {
            let names: Vec<&str> = choices.iter().map(|c| name(*c)).collect();
            self.fail(field, format!("must be one of {}", names.join(", ")));
        }
        chosen
    }

    /// A required instant: a `datetime-local` value (UTC) or RFC 3339 text,
    /// no later than the last instant with a four-digit year.
    pub fn instant(&mut self, field: &str) -> Option<Millis> {
        let Some(text) = self.form.text(field) else {
            self.fail(field, "is required");
            return None;
        };
        let text = datetime_to_rfc3339(text);
        if !self.line(field, &text, MAX_CHOICE_LEN) {
            return None;
        }
        let Some(at) = crate::domain::time::parse_rfc3339(&text) else {
            self.fail(field, "must be an RFC 3339 timestamp");
            return None;
        };
        if !crate::domain::time::in_range(at) {
            let latest = crate::domain::time::LATEST_TEXT;
            self.fail(field, format!("must not be after {latest}"));
            return None;
        }
        Some(at)
    }

    /// `value` when every field was fine, else one 400 naming each problem.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, AppError> {
        self.problems.finish(value)
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
    fn fields_are_checked_with_the_api_words_and_blanks_are_absent() {
        let form = Form::parse(b"amount=150000&periods=x&notes=+&csrf=t&at=2026-12-30T04:20");
        let mut f = Checked::new(&form);
        assert_eq!(f.whole_number("amount", true, 0, 10), None);
        assert_eq!(f.whole_number("periods", false, 1, 12), None);
        assert_eq!(f.free_text("notes"), None, "a blank note is no note");
        assert_eq!(
            f.instant("at"),
            crate::domain::time::parse_rfc3339("2026-12-30T04:20:00Z")
        );
        let Err(AppError::BadRequest { fields, .. }) = f.finish(|| Some(())) else {
            panic!("two fields are wrong");
        };
        let messages: Vec<(&str, &str)> = fields
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                ("amount", "must be a whole number from 0 to 10"),
                ("periods", "must be a whole number from 1 to 12")
            ]
        );
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
