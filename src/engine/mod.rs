//! The engine: submit, poll and download stages.
