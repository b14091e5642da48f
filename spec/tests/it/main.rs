//! Integration tests of guildhall-spec: agreement with the published test vectors.

