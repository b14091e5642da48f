//! Store cases: media.
