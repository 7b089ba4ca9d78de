//! [`HubLease`] on PostgreSQL: the `hub_lease` row, taken (locked `FOR UPDATE`, then a
//! conditional UPDATE) when it has expired by the server's clock (`now()`), renewed by a plain
//! UPDATE of its expiry, and the fence every write checks under `FOR KEY SHARE`
//! ([`super::Fence`]): a takeover waits for a write in progress, a renewal does not.

use super::hub::PgHubStore;
use super::int;
use crate::sql::SqlRow;
use crate::{HubLease, LeaseHolder, StoreError};
use std::time::Duration;

/// Longest a lease statement waits for the row lock (a write in progress holds it shared).
const LEASE_LOCK_WAIT: Duration = Duration::from_millis(1000);

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl HubLease for PgHubStore {
    fn enable_fencing(&self, ttl: Duration) -> Result<(), StoreError> {
        self.db
            .fence
            .enable(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        // The next write connects with the idle limit.
        self.db.reset_writer();
        Ok(())
    }

    fn try_acquire(
        &self,
        holder: &str,
        endpoint: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let ms = ttl_ms(ttl);
        let taken = self.db.lease_tx(LEASE_LOCK_WAIT, |tx| {
            // Unlocked first: while the holder's lease is live, a standby's try never queues
            // for the row (which would hold up the holder's writes behind it).
            let expired: bool = tx
                .query_one("SELECT expires_at < now() FROM hub_lease", &[])?
                .try_get(0)?;
            if !expired {
                return Ok(None);
            }
            // Waits for the holder's write in progress (it holds the row key-shared).
            tx.query("SELECT 1 FROM hub_lease FOR UPDATE", &[])?;
            tx.query_opt(
                "UPDATE hub_lease SET holder = $1, endpoint = $2, epoch = epoch + 1,
                     expires_at = now() + $3::bigint * interval '1 millisecond'
                 WHERE expires_at < now() RETURNING epoch",
                &[&holder, &endpoint, &ms],
            )?
            .map(|row| row.u64(0))
            .transpose()
        });
        match taken {
            Ok(Some(epoch)) => {
                self.db.fence.set_epoch(int(epoch, "lease epoch")?);
                Ok(Some(epoch))
            }
            Ok(None) => Ok(None),
            // A write of the holder still holds the row: try again later.
            Err(StoreError::Postgres(e))
                if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn renew(&self, epoch: u64, ttl: Duration) -> Result<bool, StoreError> {
        let ms = ttl_ms(ttl);
        let term = int(epoch, "lease epoch")?;
        let renewed = self.db.lease_tx(LEASE_LOCK_WAIT, |tx| {
            Ok(tx.execute(
                "UPDATE hub_lease SET expires_at = now() + $2::bigint * interval '1 millisecond'
                 WHERE epoch = $1",
                &[&term, &ms],
            )? == 1)
        })?;
        if !renewed {
            self.db.fence.lose(term);
        }
        Ok(renewed)
    }

    fn release(&self, epoch: u64) -> Result<(), StoreError> {
        let term = int(epoch, "lease epoch")?;
        // Fenced first: nothing of this process is written after the release.
        self.db.fence.lose(term);
        self.db.lease_tx(LEASE_LOCK_WAIT, |tx| {
            tx.execute(
                "UPDATE hub_lease SET expires_at = '-infinity' WHERE epoch = $1",
                &[&term],
            )?;
            Ok(())
        })
    }

    fn held_epoch(&self) -> Option<u64> {
        u64::try_from(self.db.fence.epoch())
            .ok()
            .filter(|e| *e != 0)
    }

    fn current(&self) -> Result<LeaseHolder, StoreError> {
        self.db.lease_tx(LEASE_LOCK_WAIT, |tx| {
            let row = tx.query_one(
                "SELECT holder, endpoint, epoch, expires_at > now() FROM hub_lease",
                &[],
            )?;
            Ok(LeaseHolder {
                holder: row.try_get(0)?,
                endpoint: row.try_get(1)?,
                epoch: row.u64(2)?,
                live: row.try_get(3)?,
            })
        })
    }
}
