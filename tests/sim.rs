//! Integration tests of the `sim` module.
