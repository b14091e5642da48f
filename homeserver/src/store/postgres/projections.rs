//! Projections written with every event, in the append's transaction (PostgreSQL).
