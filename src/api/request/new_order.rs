//! The create-order body, parsed into a [`NewOrder`] whose ids, hostname and
//! SSH keys are domain values: the service never sees an unchecked string
//! where one of those belongs.

use serde_json::{Map, Value};

use super::fields::Fields;
use crate::domain::values::{Hostname, SshKey, SshKeys};
use crate::domain::PlanDuration;
use crate::error::AppError;
use crate::service::NewOrder;

pub fn new_order(map: &Map<String, Value>) -> Result<NewOrder, AppError> {
    let mut f = Fields::new(
        map,
        &[
            "planId",
            "imageId",
            "duration",
            "couponCode",
            "region",
            "hostname",
            "sshPublicKeys",
        ],
    );
    let plan_id = f.catalog_id("planId");
    let image_id = f.catalog_id("imageId");
    let duration = duration(&mut f);
    // An empty coupon field is how form clients say "no coupon".
    let coupon_code = match map.get("couponCode") {
        Some(Value::String(s)) if s.trim().is_empty() => None,
        _ => f
            .text("couponCode", false, 64)
            .map(|c| c.trim().to_string()),
    };
    let region = f.text("region", false, 64);
    let hostname = f.parsed("hostname", false, Hostname::parse);
    let ssh_public_keys = ssh_keys(&mut f, map.get("sshPublicKeys"));
    f.finish(|| {
        Some(NewOrder {
            plan_id: plan_id?,
            image_id: image_id?,
            duration: duration?,
            coupon_code,
            region,
            hostname,
            ssh_public_keys: ssh_public_keys?,
        })
    })
}

fn duration(f: &mut Fields<'_>) -> Option<PlanDuration> {
    let text = f.text("duration", true, 32)?;
    let parsed = PlanDuration::parse(&text);
    if parsed.is_none() {
        f.fail(
            "duration",
            "must be one of MONTHLY, QUARTERLY, SEMI_ANNUAL, ANNUAL",
        );
    }
    parsed
}

/// `sshPublicKeys`: absent, `null` or an array of key lines. An oversized list
/// is refused before any key in it is read; otherwise every bad key is named
/// by its index.
fn ssh_keys(f: &mut Fields<'_>, value: Option<&Value>) -> Option<SshKeys> {
    let keys = match value {
        None | Some(Value::Null) => return Some(SshKeys::default()),
        Some(Value::Array(keys)) => keys,
        Some(_) => {
            f.fail("sshPublicKeys", "must be an array of OpenSSH public keys");
            return None;
        }
    };
    if let Err(why) = SshKeys::check_count(keys.len()) {
        f.fail("sshPublicKeys", why);
        return None;
    }
    let mut parsed = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match key.as_str().map(SshKey::parse) {
            Some(Ok(k)) => parsed.push(k),
            Some(Err(why)) => f.fail(&format!("sshPublicKeys[{i}]"), why),
            None => f.fail(&format!("sshPublicKeys[{i}]"), "must be a string"),
        }
    }
    match SshKeys::parse(parsed) {
        Ok(keys) => Some(keys),
        Err(why) => {
            f.fail("sshPublicKeys", why);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::request::json_object;
    use proptest::prelude::*;
    use warp::http::HeaderMap;

    proptest! {
        #[test]
        fn any_json_object_is_accepted_or_refused_never_panics(body in "\\PC*") {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/json".parse().unwrap());
            if let Ok(Some(map)) = json_object(&headers, body.as_bytes(), true) {
                let _ = new_order(&map);
            }
        }
    }
}
