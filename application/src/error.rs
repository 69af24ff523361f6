//! Errors shared by the use cases. Each operation has its own enum with its business variants;
//! these macros add the two infrastructure variants every one of them has.

/// Adds `From<StoreError>` to an operation error with `Conflict`, `Unavailable` and `Unexpected`
/// variants: a lost optimistic race is a conflict, an unreachable store is unavailable, the
/// rest is unexpected.
macro_rules! from_store_error {
    ($error:ident, without_conflict) => {
        impl From<ordership_domain::ports::StoreError> for $error {
            fn from(e: ordership_domain::ports::StoreError) -> Self {
                use ordership_domain::ports::StoreError;
                match e {
                    StoreError::Unavailable(_) => Self::Unavailable(e),
                    _ => Self::Unexpected(Box::new(e)),
                }
            }
        }
    };
    ($error:ident) => {
        impl From<ordership_domain::ports::StoreError> for $error {
            fn from(e: ordership_domain::ports::StoreError) -> Self {
                use ordership_domain::ports::StoreError;
                match e {
                    StoreError::Conflict => Self::Conflict,
                    StoreError::Unavailable(_) => Self::Unavailable(e),
                    StoreError::Duplicate | StoreError::Unexpected(_) => {
                        Self::Unexpected(Box::new(e))
                    }
                }
            }
        }
    };
}

pub(crate) use from_store_error;
