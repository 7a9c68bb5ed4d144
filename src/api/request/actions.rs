//! Customer action requests (SPEC §14): the body `{"type", "imageId"?}` and
//! the action id in the path (the list's page is `query::page_params`).

use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields::Fields;
use crate::domain::customer_action::ActionType;
use crate::domain::values::CatalogId;
use crate::error::{AppError, FieldError};
use crate::service::actions::ActionRequest;

/// `{"type": reboot | power_cycle | shutdown | power_off | power_on |
/// rebuild, "imageId"?}`: `imageId` is required for a rebuild and refused
/// for every other type.
pub fn customer_action(map: &Map<String, Value>) -> Result<ActionRequest, AppError> {
    let mut f = Fields::new(map, &["type", "imageId"]);
    let names: Vec<&str> = ActionType::ALL.iter().map(|t| t.as_str()).collect();
    let kind = f
        .one_of("type", true, &names)
        .and_then(|t| ActionType::parse(&t));
    let image = f.parsed("imageId", false, CatalogId::parse);
    let mut image_ok = true;
    match (kind, &image) {
        (Some(ActionType::Rebuild), None) => {
            f.fail("imageId", "is required for a rebuild");
            image_ok = false;
        }
        (Some(other), Some(_)) if other != ActionType::Rebuild => {
            f.fail("imageId", "is only taken by a rebuild");
            image_ok = false;
        }
        _ => {}
    }
    f.finish(|| {
        image_ok.then_some(())?;
        Some(ActionRequest {
            kind: kind?,
            image_id: image.map(|i| i.as_str().to_string()),
        })
    })
}

/// An action id in the path: a UUID, else 400 naming `actionId`.
pub fn action_id(text: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(text)
        .map_err(|_| AppError::invalid_fields(vec![FieldError::new("actionId", "must be a UUID")]))
}
