//! The built-in load balancer over real HTTP on 127.0.0.1: tiny hyper backends spawned
//! in-test, reqwest clients in front.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod balancing;
mod changes;
mod framing;
mod listeners;
mod support;
