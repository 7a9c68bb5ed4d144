//! Whether one more redemption of an embedded coupon stays within its limits.
//! The counts live in the data file (the store reads and bumps them in the
//! order's own transaction, so limits hold under concurrent orders); the rule
//! is here.

use super::error::CouponLimit;

/// Coupon redemption to count inside the order's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponClaim {
    pub code: String,
    pub max_uses: Option<u64>,
    pub max_uses_per_user: Option<u64>,
}

/// Redemptions already counted for a code: by everyone, and by the ordering user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponUses {
    pub global: u64,
    pub by_user: u64,
}

impl CouponClaim {
    /// Ok when one more redemption fits; the global limit is reported first.
    pub fn admits(&self, uses: CouponUses) -> Result<(), CouponLimit> {
        if self.max_uses.is_some_and(|max| uses.global >= max) {
            return Err(CouponLimit::Global);
        }
        if self
            .max_uses_per_user
            .is_some_and(|max| uses.by_user >= max)
        {
            return Err(CouponLimit::PerUser);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(max_uses: Option<u64>, max_uses_per_user: Option<u64>) -> CouponClaim {
        CouponClaim {
            code: "SPRING".into(),
            max_uses,
            max_uses_per_user,
        }
    }

    fn uses(global: u64, by_user: u64) -> CouponUses {
        CouponUses { global, by_user }
    }

    #[test]
    fn a_claim_fits_until_a_limit_is_reached() {
        assert_eq!(claim(None, None).admits(uses(1000, 1000)), Ok(()));
        assert_eq!(claim(Some(2), Some(1)).admits(uses(1, 0)), Ok(()));
        assert_eq!(
            claim(Some(2), None).admits(uses(2, 0)),
            Err(CouponLimit::Global)
        );
        assert_eq!(
            claim(None, Some(1)).admits(uses(0, 1)),
            Err(CouponLimit::PerUser)
        );
    }

    #[test]
    fn the_global_limit_is_reported_before_the_per_user_one() {
        assert_eq!(
            claim(Some(1), Some(1)).admits(uses(1, 1)),
            Err(CouponLimit::Global)
        );
    }
}
