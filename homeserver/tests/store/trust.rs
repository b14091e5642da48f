//! Store cases: trust.
