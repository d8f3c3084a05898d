//! The `local` provider: server groups as supervised OS processes on this machine,
//! behind the built-in L7 load balancer ([`lb`]).

pub mod lb;
