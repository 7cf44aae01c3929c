//! Integration tests of the `manifest` module.
