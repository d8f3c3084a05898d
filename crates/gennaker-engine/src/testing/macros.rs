//! Macros that turn one test body into a test per backend (and per fault).

/// Defines `mod $name { sqlite(); postgres(); }`: `$body` runs with a fresh harness on
/// each backend. The harness is [`Harness`](crate::testing::Harness) unless the binding
/// names another type (`|h: support::Harness|`: any type with
/// `async fn new(TestBackend) -> Self`, e.g. a crate's harness wrapping this one).
/// `engine_test!(name, outbound = testing::loopback(), |h| { … })` gives the harness
/// that outbound policy (webhook tests calling servers on 127.0.0.1).
#[macro_export]
macro_rules! engine_test {
    ($(#[$meta:meta])* $name:ident, |$h:ident: $harness:ty| $body:block) => {
        $(#[$meta])*
        mod $name {
            use super::*;

            async fn run($h: $harness) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(<$harness>::new($crate::testing::TestBackend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(<$harness>::new($crate::testing::TestBackend::Postgres).await).await;
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, outbound = $outbound:expr, |$h:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            use super::*;

            async fn run($h: $crate::testing::Harness) $body

            async fn harness(backend: $crate::testing::TestBackend) -> $crate::testing::Harness {
                $crate::testing::Harness::with_outbound(backend, $outbound, |_| {}).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(harness($crate::testing::TestBackend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(harness($crate::testing::TestBackend::Postgres).await).await;
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, |$h:ident| $body:block) => {
        $crate::engine_test!($(#[$meta])* $name, |$h: $crate::testing::Harness| $body);
    };
}

/// Defines `mod $name` with a test for each backend and each injected fault
/// (`every_step_repeated_sqlite` … `crash_after_every_commit_postgres`); `$body` runs
/// with `$backend` and `$fault` bound.
#[macro_export]
macro_rules! fault_test {
    ($(#[$meta:meta])* $name:ident, |$backend:ident, $fault:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            use super::*;

            async fn run(
                $backend: $crate::testing::TestBackend,
                $fault: $crate::testing::Fault,
            ) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_step_repeated_sqlite() {
                use $crate::testing::{Fault, TestBackend};
                run(TestBackend::Sqlite, Fault::RepeatEveryStep).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_step_repeated_postgres() {
                use $crate::testing::{Fault, TestBackend};
                run(TestBackend::Postgres, Fault::RepeatEveryStep).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn crash_after_every_commit_sqlite() {
                use $crate::testing::{Fault, TestBackend};
                run(TestBackend::Sqlite, Fault::CrashAfterEveryCommit).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn crash_after_every_commit_postgres() {
                use $crate::testing::{Fault, TestBackend};
                run(TestBackend::Postgres, Fault::CrashAfterEveryCommit).await;
            }
        }
    };
}
