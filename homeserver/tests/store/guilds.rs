//! Store cases: guilds.
