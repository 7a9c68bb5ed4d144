//! Conversions into the crate-wide error from the layers that produce causes
//! (store, catalog). The error type itself is domain data ([`crate::domain::error`]).

pub use crate::domain::error::{AppError, FieldError};

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> AppError {
        match e {
            crate::store::StoreError::Unavailable(why) => AppError::StorageUnavailable(why),
            crate::store::StoreError::Corrupt(why) => AppError::Internal(why),
        }
    }
}

impl From<crate::catalog::CatalogUnavailable> for AppError {
    fn from(e: crate::catalog::CatalogUnavailable) -> AppError {
        AppError::CatalogUnavailable(e.0)
    }
}
