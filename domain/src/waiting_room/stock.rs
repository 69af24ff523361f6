//! A room's stock: the units on sale and the units orders hold.

use crate::error::ValidationError;

/// A room's units on sale: `total`, set by the shop, and `sold`, the units live orders hold.
/// `sold` never exceeds `total`: the order store refuses an order that would make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    total: u32,
    sold: u32,
}

impl Stock {
    /// The most units a room may put on sale.
    pub const MAX: u32 = 100_000_000;

    /// `total` units of which none are sold yet (a room's configuration).
    #[must_use]
    pub const fn of(total: u32) -> Self {
        Self { total, sold: 0 }
    }

    /// As the order store counts it.
    ///
    /// # Errors
    /// [`ValidationError`] when `sold` exceeds `total`.
    pub fn counted(total: u32, sold: u32) -> Result<Self, ValidationError> {
        if sold > total {
            return Err(ValidationError::new(
                "stock",
                format!("{sold} units sold of {total}"),
            ));
        }
        Ok(Self { total, sold })
    }

    #[must_use]
    pub const fn total(&self) -> u32 {
        self.total
    }
    #[must_use]
    pub const fn sold(&self) -> u32 {
        self.sold
    }
    #[must_use]
    pub const fn left(&self) -> u32 {
        self.total - self.sold
    }
    #[must_use]
    pub const fn sold_out(&self) -> bool {
        self.sold >= self.total
    }
}
