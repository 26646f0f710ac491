//! pillion-control: holds the mesh's services, routes and workloads (a directory of YAML files),
//! pushes each proxy its own snapshot, and signs workload certificates.
//!
//! - [`source`] reads and merges the directory; [`view`] and [`validate`] decide what each
//!   workload sees and check it with the proxy's own validator; [`reload`] watches the directory.
//! - [`snapshot`] holds each workload's current NDJSON line; [`watch`] streams it.
//! - [`api`] serves HTTPS; [`ca`] signs CSRs; [`status`] and [`metrics`] are what operators read.
#![forbid(unsafe_code)]

pub mod snapshot;
pub mod source;
pub mod validate;
pub mod view;
