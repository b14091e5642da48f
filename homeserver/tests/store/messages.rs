//! Store cases: messages.
