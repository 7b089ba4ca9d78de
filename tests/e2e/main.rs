//! End-to-end tests: real `rcpfed` processes (a hub and regional nodes) on loopback, real mutual
//! TLS, real SQLite, real grpcurl. Every test starts its own federation in a temporary directory
//! on ports the OS picks, so tests run in parallel; every process is killed when its test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod harness;

mod authz;
mod bad_input;
mod demo;
mod exchange;
mod grpcurl;
mod hostile_store;
mod indicators;
mod log;
mod operators;
mod registry;
mod resilience;
mod revocation;
