//! The one integration-test binary: every file under `tests/` is a module of it, so the crate is
//! linked once. `helper` holds fixtures, simulator boot, waits and asserts.

mod helper;

mod cli;
mod crash;
mod daemon;
mod dashboard;
mod engine;
mod exactly_once;
mod explore;
mod hostile;
mod manifest;
mod media;
mod media_store;
mod notify;
mod provider_limits;
mod resume;
mod sim;
mod streamed;
mod terminal;
