//! Pillion's end-to-end harness: starts the real binaries (`pillion`, the test backend) on free
//! loopback ports, drives them with real clients (curl, hyper, WebSocket), and cleans up.
//! Also home to the quickstart demo and the benchmark driver.

pub mod backend;
pub mod client;
pub mod control;
pub mod netns;
pub mod pki;
pub mod process;

pub use process::{Backend, Proxy, free_port, workspace_bin};
