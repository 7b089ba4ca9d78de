//! End-to-end tests: real `rcpfed` processes (a hub and regional nodes) on loopback, real mutual
//! TLS, real SQLite (and PostgreSQL, see postgres.rs), real grpcurl. Every test starts its own federation in a temporary directory
//! on ports the OS picks, so tests run in parallel; every process is killed when its test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod harness;

mod authz;
mod backup;
mod bad_input;
mod connection_errors;
mod dashboard;
mod demo;
mod exchange;
mod faultproxy;
mod foreign_node;
mod grpcurl;
mod hostile_bounds;
mod hostile_corpus;
mod hostile_identity;
mod hostile_quotas;
mod hostile_reads;
mod hostile_store;
mod hostile_transport;
mod indicators;
mod log;
mod logging;
mod operator_errors;
mod operators;
mod partitions;
mod postgres;
mod public_http;
mod publish_cli;
mod registry;
mod resilience;
mod revocation;
mod sdmx_rest;
mod snapshot_view;
mod standby;
mod strict_config;
mod tiles;
