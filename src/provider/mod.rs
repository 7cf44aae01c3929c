//! The provider client.
