//! The state store: SQLite, the only module holding SQL.
