//! Support code shared by the `hiedge` binary and its integration tests.

pub mod wrangler;
