//! Who may act on an order through the user routes: its owner only. Checked
//! by the service before a read and again by the store inside the write's
//! transaction, both by asking this one rule.

use super::error::Rejection;
use super::order::Order;

/// Ok when no owner is required (operator routes) or `owner` placed the order.
pub fn check_owner(order: &Order, owner: Option<&str>) -> Result<(), Rejection> {
    match owner {
        Some(user) if user != order.user_id => Err(Rejection::NotOwner),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::test_order;

    #[test]
    fn only_the_owner_passes_a_user_route() {
        let order = test_order("alice");
        assert_eq!(check_owner(&order, None), Ok(()));
        assert_eq!(check_owner(&order, Some("alice")), Ok(()));
        assert_eq!(check_owner(&order, Some("bob")), Err(Rejection::NotOwner));
    }
}
