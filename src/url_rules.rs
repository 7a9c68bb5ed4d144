//! Rules for the URLs vpsd is configured with (DigitalOcean, the catalog,
//! webhook endpoints): how they are shown (credentials and query masked) and
//! which may carry a secret in plain http. `config` and `webhooks::config`
//! both check URLs with these; neither imports the other for it.

pub(crate) fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `scheme://user:pass@host/path?query` -> `scheme://***@host/path?***`:
/// credentials and query strings in a URL are secrets like any other (receivers
/// commonly take a `?token=`). A fragment is hidden the same way.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rfind('@').map_or(authority.to_string(), |at| {
        format!("***@{}", &authority[at + 1..])
    });
    let tail = match tail.find(['?', '#']) {
        Some(at) => format!("{}{}***", &tail[..at], &tail[at..at + 1]),
        None => tail.to_string(),
    };
    format!("{scheme}://{host}{tail}")
}

/// What every outbound URL that carries a secret (DigitalOcean's token, a
/// webhook's signature and URL) must satisfy: https, or plain http only to
/// this machine. The problem names the URL masked.
pub(crate) fn require_https_unless_loopback(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || is_loopback_url(url) {
        return Ok(());
    }
    Err(format!(
        "{:?} must be https (plain http is allowed only to a loopback host)",
        mask_url(url)
    ))
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        // [::1]:8080
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => host_port.split_once(':').map_or(host_port, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
