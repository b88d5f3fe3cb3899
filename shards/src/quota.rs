//! Tenant quotas (API.md §8): collections and points per tenant. Every
//! collection of a tenant has the same home shard (`Placement::home`), so
//! the shard that validates a write also holds the tenant's whole catalog
//! and checks the quota in the same synchronous step: exact, whatever the
//! concurrency. Collections made with authentication off have no tenant and
//! no quota.

use crate::error::ShardError;

/// Which quota refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    Collections,
    Points,
}

/// Limits per tenant; 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantQuota {
    pub max_collections: u64,
    pub max_points: u64,
}

/// What a tenant holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub collections: u64,
    pub points: u64,
}

impl TenantQuota {
    /// Whether `tenant`, holding `usage`, may add `collections` and
    /// `points`; refused with `resource_exhausted` naming the quota.
    pub fn admit(&self, tenant: &str, usage: Usage, collections: u64, points: u64) -> Result<(), ShardError> {
        if collections > 0 && self.max_collections > 0 && usage.collections + collections > self.max_collections {
            return Err(ShardError::Quota(
                Quota::Collections,
                format!("tenant '{tenant}' has reached its quota of {} collections", self.max_collections),
            ));
        }
        if points > 0 && self.max_points > 0 && usage.points + points > self.max_points {
            return Err(ShardError::Quota(
                Quota::Points,
                format!(
                    "tenant '{tenant}' would exceed its quota of {} points ({} stored, {points} new)",
                    self.max_points, usage.points
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_admit_up_to_the_limit_and_zero_means_none() {
        let q = TenantQuota { max_collections: 2, max_points: 10 };
        let u = Usage { collections: 1, points: 8 };
        assert!(q.admit("t", u, 1, 0).is_ok());
        assert!(q.admit("t", Usage { collections: 2, ..u }, 1, 0).is_err());
        assert!(q.admit("t", u, 0, 2).is_ok());
        let e = q.admit("t", u, 0, 3).unwrap_err();
        assert!(matches!(&e, ShardError::Quota(Quota::Points, m) if m.contains("quota of 10 points")), "{e:?}");
        assert!(TenantQuota::default().admit("t", Usage { collections: 1 << 40, points: 1 << 40 }, 5, 5).is_ok());
    }
}
