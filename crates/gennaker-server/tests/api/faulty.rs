//! Faults for [`FaultyStore`](gennaker_store::testing::FaultyStore) that let a test hold
//! up or fail audit writes, to see what the server does when the audit log is slow or
//! broken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use gennaker_store::testing::StoreFaults;
use gennaker_store::{Result, StoreError};
use tokio::sync::Semaphore;

/// The switches a test holds.
#[derive(Debug)]
pub(crate) struct AuditFaults {
    /// Audit writes wait for a permit (none at first, so they wait until `open`).
    gate: Semaphore,
    /// Audit writes fail while this is set.
    fail: AtomicBool,
}

impl AuditFaults {
    /// Audit writes wait until [`AuditFaults::open`].
    pub(crate) fn closed() -> Arc<Self> {
        Arc::new(AuditFaults {
            gate: Semaphore::new(0),
            fail: AtomicBool::new(false),
        })
    }

    /// Audit writes fail.
    pub(crate) fn failing() -> Arc<Self> {
        let faults = AuditFaults::closed();
        faults.open();
        faults.fail.store(true, Ordering::SeqCst);
        faults
    }

    /// Lets every waiting and later audit write through.
    pub(crate) fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl StoreFaults for AuditFaults {
    async fn before(&self, method: &'static str) -> Result<()> {
        if method != "append_audit" {
            return Ok(());
        }
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| StoreError::Conflict("the audit gate was closed".to_owned()))?;
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Conflict(
                "the test made audit writes fail".to_owned(),
            ));
        }
        Ok(())
    }
}
