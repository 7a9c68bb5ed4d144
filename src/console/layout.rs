//! The page shell (head, navigation, the operator's logout form) and small
//! renderers shared by every page: times, money, status badges, notices.

use maud::{html, Markup, DOCTYPE};

use super::session::Session;
use crate::domain::time::Millis;
use crate::domain::OrderStatus;

/// One entry of the top navigation.
pub struct NavEntry {
    pub label: &'static str,
    pub href: &'static str,
}

/// The navigation, in order; each entry has its route in `console::route`.
pub const NAV: &[NavEntry] = &[
    NavEntry {
        label: "Overview",
        href: "/admin/",
    },
    NavEntry {
        label: "Orders",
        href: "/admin/orders",
    },
    NavEntry {
        label: "Attention",
        href: "/admin/attention",
    },
    NavEntry {
        label: "Webhooks",
        href: "/admin/webhooks",
    },
    NavEntry {
        label: "Accounts",
        href: "/admin/accounts",
    },
    NavEntry {
        label: "Backups",
        href: "/admin/backups",
    },
];

/// A whole page. `current` is the `href` of the navigation entry to mark.
pub fn page(title: &str, session: Option<&Session>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vpsd console" }
                link rel="stylesheet" href="/admin/style.css";
                link rel="icon" href="/admin/favicon.svg" type="image/svg+xml";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "vpsd console" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            ul {
                                @for entry in NAV {
                                    li {
                                        @if entry.href == current {
                                            a href=(entry.href) aria-current="page" { (entry.label) }
                                        } @else {
                                            a href=(entry.href) { (entry.label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.logout method="post" action="/admin/logout" {
                            (csrf(session))
                            span.who { "Signed in as " strong { (session.actor_text()) } }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// `2026-11-30 04:20:05 UTC`; an out-of-range value shows as the epoch.
pub fn time(ms: Millis) -> String {
    let text = crate::domain::time::format_millis(ms);
    // 2026-11-30T04:20:05.123Z -> 2026-11-30 04:20:05 UTC
    match (text.get(0..10), text.get(11..19)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => text,
    }
}

pub fn time_opt(ms: Option<Millis>) -> String {
    ms.map(time).unwrap_or_else(|| "—".into())
}

/// `<time>` with the machine-readable value.
pub fn when(ms: Option<Millis>) -> Markup {
    match ms {
        Some(ms) => html! { time datetime=(crate::domain::time::format_millis(ms)) { (time(ms)) } },
        None => html! { "—" },
    }
}

/// A time as date, then clock: two short lines keep a table narrow.
pub fn stamp(ms: Option<Millis>) -> Markup {
    let Some(ms) = ms else {
        return when(None);
    };
    let text = time(ms);
    match text.split_once(' ') {
        Some((date, clock)) => html! {
            time datetime=(crate::domain::time::format_millis(ms)) { (date) br; (clock) }
        },
        None => when(Some(ms)),
    }
}

/// `IDR 108,000`: amounts are whole units of the smallest denomination.
pub fn money(amount: u64, currency: &str) -> String {
    let digits = amount.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{currency} {grouped}")
}

/// A status as a badge; the text carries the meaning, colour only helps.
pub fn badge(status: &str) -> Markup {
    let class = format!("badge s-{}", status.to_ascii_lowercase().replace('_', "-"));
    html! { span class=(class) { (status) } }
}

pub fn status_badge(status: OrderStatus) -> Markup {
    badge(status.as_str())
}

/// A message box: `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> Markup {
    let class = format!("notice {kind}");
    let role = if kind == "error" { "alert" } else { "status" };
    html! { p class=(class) role=(role) { (text) } }
}

/// Bytes as `1.2 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(0, "IDR"), "IDR 0");
        assert_eq!(money(108000, "IDR"), "IDR 108,000");
        assert_eq!(money(1234567, "USD"), "USD 1,234,567");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
