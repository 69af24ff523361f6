//! Cross-crate integration and end-to-end tests of ordership live in `e2e/`.
