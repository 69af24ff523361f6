//! sqlx errors classified once into the ports' [`StoreError`].

use ordership_domain::ports::StoreError;

/// SQLSTATE classes and codes that decide the classification.
mod sqlstate {
    pub(super) const UNIQUE_VIOLATION: &str = "23505";
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
    pub(super) const DEADLOCK_DETECTED: &str = "40P01";
    pub(super) const QUERY_CANCELED: &str = "57014"; // statement_timeout
    pub(super) const ADMIN_SHUTDOWN: &str = "57P01";
    pub(super) const CRASH_SHUTDOWN: &str = "57P02";
    pub(super) const CANNOT_CONNECT_NOW: &str = "57P03";
    pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// Class 08: connection exceptions.
    pub(super) const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// Class 53: insufficient resources (too many connections, disk full).
    pub(super) const INSUFFICIENT_RESOURCES_CLASS: &str = "53";
}

/// A statement that failed, named by the operation that ran it (`orders::insert`): what a log
/// shows of an unavailable or unexpected store error points at one place.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL, {operation}")]
pub(crate) struct Failed {
    operation: &'static str,
    #[source]
    source: sqlx::Error,
}

/// [`classify`] as a `map_err` argument.
pub(crate) fn failed_in(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| classify(operation, error)
}

/// Maps a sqlx error of `operation` to the port error: unique violations are duplicates,
/// serialization failures and deadlocks are conflicts (retry the unit of work), lost or refused
/// connections and timeouts are unavailability (retry later), anything else is unexpected. The
/// last two carry the operation's name.
pub(crate) fn classify(operation: &'static str, error: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    let failed = |source| Box::new(Failed { operation, source });
    match &error {
        E::Database(db) => match db.code().as_deref() {
            Some(sqlstate::UNIQUE_VIOLATION) => StoreError::Duplicate,
            Some(sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED) => {
                StoreError::Conflict
            }
            Some(
                sqlstate::QUERY_CANCELED
                | sqlstate::ADMIN_SHUTDOWN
                | sqlstate::CRASH_SHUTDOWN
                | sqlstate::CANNOT_CONNECT_NOW
                | sqlstate::LOCK_NOT_AVAILABLE,
            ) => StoreError::Unavailable(failed(error)),
            Some(code)
                if code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
                    || code.starts_with(sqlstate::INSUFFICIENT_RESOURCES_CLASS) =>
            {
                StoreError::Unavailable(failed(error))
            }
            _ => StoreError::Unexpected(failed(error)),
        },
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => StoreError::Unavailable(failed(error)),
        _ => StoreError::Unexpected(failed(error)),
    }
}

/// A stored value that does not form a valid domain value: the database was written by something
/// else, or corrupted.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unexpected(format!("corrupt {what} in the database: {detail}").into())
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_unavailable_or_unexpected_store_error_names_the_operation_that_failed() {
        let unavailable = classify("orders::get", sqlx::Error::PoolTimedOut);
        assert!(matches!(unavailable, StoreError::Unavailable(_)));
        let unexpected = classify("sagas::insert", sqlx::Error::RowNotFound);
        assert!(matches!(unexpected, StoreError::Unexpected(_)));
        for (error, operation) in [(unavailable, "orders::get"), (unexpected, "sagas::insert")] {
            let named = error.source().map(ToString::to_string);
            assert_eq!(named.as_deref(), Some(&*format!("PostgreSQL, {operation}")));
        }
    }
}
