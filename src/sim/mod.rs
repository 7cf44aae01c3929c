//! The provider simulator: a real HTTP server on loopback speaking the provider's wire format.
//!
//! Owns: the simulated provider (`REAPI.md`): submit and poll endpoints with bearer-key checks,
//! request validation and media probing like the provider's, the task lifecycle, expiring clip
//! links, a folder of media served with range requests, a billing ledger, submit rate limits and
//! an in-flight cap, idempotency (honoured or ignored), and reproducible fault injection.
//!
//! May not: be used by the rest of recast except through the same HTTP API a real provider
//! offers. The only items others use are [`Sim::start`] (to boot it), its base URL, and the
//! ledger and stats (for tests and for `recast run --simulate`'s summary).
