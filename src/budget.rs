//! One shared budget for the client bytes the front holds in memory.
//!
//! Request bodies and URL sources are read into memory before a worker
//! gets them; without a common cap, memory is bounded only by connections
//! × `--max-body`. Every reader takes bytes from one [`ByteBudget`]
//! (`--max-inflight-bytes`) as they arrive, before keeping them; when the
//! budget is spent the request is refused (503 `server_busy`) instead of
//! read further. A [`Hold`] gives its bytes back when dropped, which is
//! when the bytes themselves are dropped: the hold travels with them.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget was spent: the caller refuses the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server holds its limit of {limit} bytes of request data; try again shortly")]
pub struct OverBudget {
    pub limit: u64,
}

/// A byte budget shared by every reader of client data.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    total: u64,
}

impl ByteBudget {
    /// A budget of `total` bytes (capped at what a semaphore can count).
    pub fn new(total: u64) -> ByteBudget {
        let total = total.min(Semaphore::MAX_PERMITS as u64);
        ByteBudget {
            sem: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// An empty hold, to grow as bytes arrive.
    pub fn hold(&self) -> Hold {
        Hold {
            budget: self.clone(),
            permit: None,
            bytes: 0,
        }
    }

    /// Bytes held right now, for `/metrics`.
    pub fn in_use(&self) -> u64 {
        self.total
            .saturating_sub(self.sem.available_permits() as u64)
    }

    pub fn limit(&self) -> u64 {
        self.total
    }
}

/// Bytes taken from a budget; given back on drop.
#[derive(Debug)]
pub struct Hold {
    budget: ByteBudget,
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Hold {
    /// Takes `n` more bytes from the budget, or refuses without waiting.
    pub fn grow(&mut self, n: usize) -> Result<(), OverBudget> {
        if n == 0 {
            return Ok(());
        }
        let over = OverBudget {
            limit: self.budget.total,
        };
        let count = u32::try_from(n).map_err(|_| over)?;
        let more = self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned(count)
            .map_err(|_| over)?;
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        self.bytes += n as u64;
        Ok(())
    }

    /// Bytes this hold has taken.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_share_one_budget_and_give_back_on_drop() {
        let budget = ByteBudget::new(100);
        let mut a = budget.hold();
        a.grow(60).expect("60 of 100");
        let mut b = budget.hold();
        assert_eq!(b.grow(50), Err(OverBudget { limit: 100 }));
        b.grow(40).expect("40 more fit");
        assert_eq!(budget.in_use(), 100);
        assert_eq!((a.bytes(), b.bytes()), (60, 40));
        drop(a);
        assert_eq!(budget.in_use(), 40);
        b.grow(60).expect("freed bytes are available again");
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
