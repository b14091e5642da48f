//! Store cases: social.
