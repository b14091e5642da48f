//! Store cases: federation.
