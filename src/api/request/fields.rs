//! One JSON object's fields, read with their rules; every problem is
//! collected so one response names them all.

use serde_json::{Map, Value};

use crate::domain::error::FieldProblems;
use crate::domain::values::{check_line, CatalogId, FreeText, Refusal};
use crate::error::AppError;

pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    problems: FieldProblems,
}

impl<'a> Fields<'a> {
    /// Any key outside `allowed` is refused by name: a client that believes
    /// it passes an option must learn that it does not.
    pub(super) fn new(map: &'a Map<String, Value>, allowed: &[&str]) -> Fields<'a> {
        let mut problems = FieldProblems::default();
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                problems.fail(&clip(key), "is not a known field");
            }
        }
        Fields { map, problems }
    }

    pub(super) fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.problems.fail(field, message);
    }

    /// A string field parsed by `parse`; `null` counts as absent.
    pub(super) fn parsed<T>(
        &mut self,
        field: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, Refusal>,
    ) -> Option<T> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => self.problems.check(field, parse(s)),
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    /// A required `true` / `false`; `null` counts as absent.
    pub(super) fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail(field, "must be true or false");
                None
            }
        }
    }

    /// A one-line string field of at most `max_len` characters.
    pub(super) fn text(&mut self, field: &str, required: bool, max_len: usize) -> Option<String> {
        self.parsed(field, required, |s| {
            check_line(s, max_len).map(|()| s.to_string())
        })
    }

    /// Free text (`notes`, `reason`, SPEC §12); optional everywhere.
    pub(super) fn free_text(&mut self, field: &str) -> Option<FreeText> {
        self.parsed(field, false, FreeText::parse)
    }

    /// A plan or image id; required wherever one is asked for.
    pub(super) fn catalog_id(&mut self, field: &str) -> Option<CatalogId> {
        self.parsed(field, true, CatalogId::parse)
    }

    /// A whole-number field within `min..=max`; `null` counts as absent.
    pub(super) fn integer(
        &mut self,
        field: &str,
        required: bool,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        match self.map.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => Some(n),
                None => {
                    self.fail(field, format!("must be a whole number from {min} to {max}"));
                    None
                }
            },
        }
    }

    /// A text field that must be one of `allowed`.
    pub(super) fn one_of(
        &mut self,
        field: &str,
        required: bool,
        allowed: &[&str],
    ) -> Option<String> {
        let text = self.text(field, required, 64)?;
        if allowed.contains(&text.as_str()) {
            Some(text)
        } else {
            self.fail(field, format!("must be one of {}", allowed.join(", ")));
            None
        }
    }

    pub(super) fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, AppError> {
        self.problems.finish(value)
    }
}

/// Field names echoed back are clipped, so a hostile 60 KiB key is not mirrored.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}
