//! Integration tests of the `media` module.
