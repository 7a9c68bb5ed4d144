//! Values that arrive from outside as text and are checked once, where they
//! enter (zero2prod's `SubscriberName::parse`). Each type's only constructor
//! is `parse`, so holding one means the rules of SPEC §12 were applied, and a
//! layer below the API cannot be handed an unchecked string.
//!
//! A refusal carries the message the API reports for the field; the API adds
//! the field's name, because the same value can arrive under several names
//! (`sshPublicKeys[3]`, `notes`, `reason`).

use std::borrow::Cow;
use std::fmt;

use super::order::MAX_FREE_TEXT;

/// Why a value was refused: the message of its `details.fields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(Cow<'static, str>);

impl Refusal {
    fn new(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Refusal> for String {
    fn from(refusal: Refusal) -> String {
        refusal.0.into_owned()
    }
}

/// The rules every one-line text field shares: not empty, at most `max_len`
/// characters, no control characters (which could rewrite an operator's
/// terminal line or a log record).
pub fn check_line(text: &str, max_len: usize) -> Result<(), Refusal> {
    if text.is_empty() {
        Err(Refusal::new("must not be empty"))
    } else if text.chars().count() > max_len {
        Err(Refusal::new(format!(
            "must be at most {max_len} characters"
        )))
    } else if text.chars().any(char::is_control) {
        Err(Refusal::new("must not contain control characters"))
    } else {
        Ok(())
    }
}

/// A plan or image id (SPEC §12): 1-64 characters of `A-Za-z0-9._:-`, and not
/// `.` or `..`, which a catalog-service path would read as a directory step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogId(String);

impl CatalogId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(text: &str) -> Result<CatalogId, Refusal> {
        check_line(text, Self::MAX_LEN)?;
        if text == "." || text == ".." {
            return Err(Refusal::new("must not be \".\" or \"..\""));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if !text.chars().all(allowed) {
            return Err(Refusal::new("may contain only letters, digits and . _ : -"));
        }
        Ok(CatalogId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A droplet's hostname: 1-63 characters of `a-z 0-9 . -`, starting with a
/// letter and ending with a letter or digit (DigitalOcean's droplet name
/// rules, lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    pub const MAX_LEN: usize = 63;

    pub fn parse(text: &str) -> Result<Hostname, Refusal> {
        check_line(text, Self::MAX_LEN)?;
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let first_ok = text.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        let last_ok = text
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if text.len() > Self::MAX_LEN || !ok_chars || !first_ok || !last_ok {
            return Err(Refusal::new("must be 1-63 characters of a-z, 0-9, '.' and '-', start with a letter and end with a letter or digit"));
        }
        Ok(Hostname(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An OpenSSH public key line, `type base64 [comment]`, whose decoded blob
/// names the same type. Kept normalised to single spaces; nothing in it can
/// break out of the cloud-init document it is written into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey(String);

impl SshKey {
    pub fn parse(line: &str) -> Result<SshKey, Refusal> {
        use base64::Engine;
        let refused = || {
            Refusal::new("must be an OpenSSH public key such as \"ssh-ed25519 AAAA... user@host\"")
        };
        if line.len() > 16 * 1024 || line.chars().any(char::is_control) {
            return Err(refused());
        }
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            return Err(refused());
        };
        let comment: Vec<&str> = parts.collect();
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(refused());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| refused())?;
        let named = decoded
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .and_then(|len| decoded.get(4..4 + len))
            .ok_or_else(refused)?;
        if named != kind.as_bytes() {
            return Err(refused());
        }
        let comment_ok = comment
            .iter()
            .all(|w| w.chars().all(|c| !c.is_control() && c != '"' && c != '\\'));
        if !comment_ok {
            return Err(refused());
        }
        let mut normalised = format!("{kind} {blob}");
        if !comment.is_empty() {
            normalised.push(' ');
            normalised.push_str(&comment.join(" "));
        }
        Ok(SshKey(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The keys installed on a new droplet: at most [`SshKeys::MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshKeys(Vec<SshKey>);

impl SshKeys {
    pub const MAX: usize = 10;

    /// The count rule alone, so a caller can refuse an oversized list before
    /// reading any key in it.
    pub fn check_count(count: usize) -> Result<(), Refusal> {
        if count > Self::MAX {
            return Err(Refusal::new(format!("at most {} keys", Self::MAX)));
        }
        Ok(())
    }

    pub fn parse(keys: Vec<SshKey>) -> Result<SshKeys, Refusal> {
        Self::check_count(keys.len())?;
        Ok(SshKeys(keys))
    }

    /// The normalised key lines, in the order given.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(|k| k.0.clone()).collect()
    }
}

/// Stored free text (`notes`, `reason`), bounded so repeated changes cannot
/// grow the history without limit (SPEC §12). Newlines and tabs are allowed,
/// as v1 allowed them; a carriage return only as part of CRLF, because alone
/// it can overwrite a line on an operator's terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeText(String);

impl FreeText {
    pub const MAX_LEN: usize = MAX_FREE_TEXT;

    pub fn parse(text: &str) -> Result<FreeText, Refusal> {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let allowed = match c {
                '\n' | '\t' => true,
                '\r' => chars.peek() == Some(&'\n'),
                c => !c.is_control(),
            };
            if !allowed {
                return Err(Refusal::new(
                    "must not contain control characters other than newlines and tabs",
                ));
            }
        }
        // Same length and emptiness rules as one-line text; the control
        // characters allowed above are masked out of that check.
        let masked: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        check_line(&masked, Self::MAX_LEN)?;
        Ok(FreeText(text.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrc/SKQ2lxYjKAY5aGy0IyKZvZJJarimIXYH8ti5R7p alice@laptop";

    #[test]
    fn accepts_a_real_ed25519_key() {
        assert!(SshKey::parse(ED25519).is_ok());
        assert!(SshKey::parse("ssh-ed25519 AAAA").is_err());
        assert!(SshKey::parse(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIMm2x4YFQ8l9Jp5q3d6Yv0Zs0iU0j0JtO8nN4lq1c2Xh"
        )
        .is_err());
        assert!(SshKey::parse("hello").is_err());
    }

    #[test]
    fn catalog_ids() {
        for ok in ["vps-basic", "a", "plan:v2", "x.y_z", "...", "9a1f-uuid"] {
            assert!(CatalogId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [".", "..", "a/b", "a b", "a?b", "a%2F", "é"] {
            assert!(CatalogId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        assert!(Hostname::parse("web-1.example").is_ok());
        assert!(Hostname::parse("1web").is_err());
        assert!(Hostname::parse("web-").is_err());
        assert!(Hostname::parse("Web").is_err());
        assert!(Hostname::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn free_text_allows_newlines_tabs_and_crlf_only() {
        assert!(FreeText::parse("line one\r\nline two\twith a tab").is_ok());
        assert!(FreeText::parse("bare\rreturn").is_err());
        assert!(FreeText::parse("\u{1b}[2J").is_err());
        assert_eq!(
            FreeText::parse("").unwrap_err().message(),
            "must not be empty"
        );
        assert!(FreeText::parse(&"x".repeat(FreeText::MAX_LEN)).is_ok());
        assert!(FreeText::parse(&"x".repeat(FreeText::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn ssh_key_lists_are_bounded() {
        let key = SshKey::parse(ED25519).unwrap();
        assert!(SshKeys::parse(vec![key.clone(); SshKeys::MAX]).is_ok());
        assert_eq!(
            SshKeys::parse(vec![key; SshKeys::MAX + 1])
                .unwrap_err()
                .message(),
            "at most 10 keys"
        );
    }
}
