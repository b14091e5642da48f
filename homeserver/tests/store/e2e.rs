//! Store cases: e2e.
