//! Snapshots and verification (issue: Operations).
