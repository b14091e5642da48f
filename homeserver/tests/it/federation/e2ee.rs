//! End-to-end encrypted DMs between real servers, through the client library (spec 17).
