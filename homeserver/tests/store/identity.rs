//! Store cases: identity.
