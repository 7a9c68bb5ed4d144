//! Conversions into the crate-wide error from the layers that produce causes
//! (the catalog here; the store's own, behind the backend boundary, in `store`). The error type itself is domain data ([`crate::domain::error`]).

pub use crate::domain::error::{AppError, FieldError};

impl From<crate::catalog::CatalogUnavailable> for AppError {
    fn from(e: crate::catalog::CatalogUnavailable) -> AppError {
        AppError::CatalogUnavailable(e.0)
    }
}
