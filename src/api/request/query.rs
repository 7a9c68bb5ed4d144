//! What a request names outside its body: the order id in the path and the
//! filters of the list endpoints' query strings.

use uuid::Uuid;

use crate::domain::fleet::{is_account_name, ACCOUNT_NAME_RULE};
use crate::domain::time::Millis;
use crate::domain::webhook::{DeliveryQuery, DeliveryStatus};
use crate::domain::{OrderStatus, StatusSet};
use crate::error::{AppError, FieldError};

/// A path id must be a UUID; anything else is 400 (never a lookup).
pub fn order_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(text)
        .map_err(|_| AppError::invalid_fields(vec![FieldError::new("id", "must be a UUID")]))
}

/// An account name in a path: the config's rule (`[a-z0-9-]{1,32}`), so
/// nothing else is looked up, logged or echoed back.
pub fn account_name(text: &str) -> Result<&str, AppError> {
    if is_account_name(text) {
        Ok(text)
    } else {
        Err(AppError::invalid_fields(vec![FieldError::new(
            "name",
            ACCOUNT_NAME_RULE,
        )]))
    }
}

/// `page`, `limit`, `status` (one or several, comma-separated) and (admin)
/// `userId` from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub page: u32,
    pub limit: u32,
    pub status: Option<StatusSet>,
    pub user_id: Option<String>,
    pub expires_before: Option<Millis>,
}

pub fn list_params(query: &str, allow_user_filter: bool) -> Result<ListParams, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    let mut params = ListParams {
        page: 1,
        limit: 10,
        status: None,
        user_id: None,
        expires_before: None,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "page" | "limit" => paging(&key, &value, (&mut params.page, &mut params.limit), &mut errors),
            "status" => match status_set(&value) {
                Some(set) => params.status = Some(set),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one or more of PENDING_PAYMENT, PAID, PROVISIONING, ACTIVE, FAILED, CANCELED, SUSPENDED, TERMINATED, separated by commas",
                )),
            },
            "userId" if allow_user_filter => {
                if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
                    errors.push(FieldError::new(
                        "userId",
                        "must be 1-255 printable characters",
                    ));
                } else {
                    params.user_id = Some(value);
                }
            }
            "expiresBefore" if allow_user_filter => {
                match crate::domain::time::parse_rfc3339(&value) {
                    Some(at) => params.expires_before = Some(at),
                    None => errors.push(FieldError::new(
                        "expiresBefore",
                        "must be an RFC 3339 timestamp",
                    )),
                }
            }
            // Unknown parameters are ignored, as v1 clients send cache-busters.
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(AppError::invalid_fields(errors))
    }
}

/// `ACTIVE,SUSPENDED`: every name must be a status (one bad name refuses the
/// whole filter rather than silently narrowing it); repeats are harmless.
fn status_set(text: &str) -> Option<StatusSet> {
    text.split(',')
        .map(OrderStatus::parse)
        .collect::<Option<Vec<_>>>()
        .map(StatusSet::from_iter)
}

/// `status`, `orderId`, `page`, `limit` of the delivery list (API and
/// console); unknown parameters are ignored as on the order lists.
pub fn delivery_query(query: &str) -> Result<DeliveryQuery, AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    delivery_filters(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The same filters from already-decoded pairs.
pub fn delivery_filters<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<DeliveryQuery, AppError> {
    let mut q = DeliveryQuery {
        status: None,
        order_id: None,
        page: 1,
        limit: 10,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key {
            "status" => match DeliveryStatus::parse(value) {
                Some(s) => q.status = Some(s),
                None => errors.push(FieldError::new(
                    "status",
                    "must be one of pending, delivered, failed",
                )),
            },
            "orderId" => match Uuid::try_parse(value) {
                Ok(id) => q.order_id = Some(id),
                Err(_) => errors.push(FieldError::new("orderId", "must be a UUID")),
            },
            "page" | "limit" => paging(key, value, (&mut q.page, &mut q.limit), &mut errors),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(AppError::invalid_fields(errors))
    }
}

/// `page` (1 or more) or `limit` (1-100) of any list into `into`; a bad
/// value is a field error, every list's the same.
fn paging(key: &str, value: &str, into: (&mut u32, &mut u32), errors: &mut Vec<FieldError>) {
    let (page, limit) = into;
    match (key, value.parse::<u32>()) {
        ("page", Ok(p)) if p >= 1 => *page = p,
        ("page", _) => errors.push(FieldError::new("page", "must be an integer of at least 1")),
        (_, Ok(l)) if (1..=100).contains(&l) => *limit = l,
        _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
    }
}

/// `page` and `limit` of a list that takes no filter (an order's customer
/// actions); unknown parameters are ignored as on the order lists.
pub fn page_params(query: &str) -> Result<(u32, u32), AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| AppError::bad_request("the query string is malformed"))?;
    let (mut page, mut limit) = (1, 10);
    let mut errors = Vec::new();
    for (key, value) in &pairs {
        if key == "page" || key == "limit" {
            paging(key, value, (&mut page, &mut limit), &mut errors);
        }
    }
    if errors.is_empty() {
        Ok((page, limit))
    } else {
        Err(AppError::invalid_fields(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_bounds() {
        assert_eq!(list_params("", false).unwrap().limit, 10);
        assert!(list_params("page=0", false).is_err());
        assert!(list_params("limit=101", false).is_err());
        assert!(list_params("limit=-1", false).is_err());
        assert!(list_params("status=NOPE", false).is_err());
        assert!(list_params("status=ACTIVE,NOPE", false).is_err());
        assert!(list_params("status=ACTIVE,", false).is_err());
        let both = list_params("status=SUSPENDED,ACTIVE,ACTIVE", false).unwrap();
        let expected: StatusSet = [OrderStatus::Active, OrderStatus::Suspended]
            .into_iter()
            .collect();
        assert_eq!(both.status, Some(expected));
        assert_eq!(
            list_params("status=PAID&page=2&limit=5", false)
                .unwrap()
                .page,
            2
        );
        assert_eq!(list_params("userId=u1", false).unwrap().user_id, None);
        assert_eq!(
            list_params("userId=u1", true).unwrap().user_id.as_deref(),
            Some("u1")
        );
    }
}
