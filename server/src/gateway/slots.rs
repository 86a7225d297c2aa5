//! Uploads in progress, counted across both upload paths (the streamed
//! `POST /v1/objects` and the chunked `/v1/uploads`): at most a few per user
//! and a bounded number for everybody, each holding a temporary file, a
//! socket or a buffered header. A slot is taken before a byte is stored and
//! given back when its upload ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<String, usize>,
}

pub struct Slots {
    per_user: usize,
    total: usize,
    counts: Arc<Mutex<Counts>>,
}

/// A slot held by one upload; dropping it frees the slot.
pub struct Slot {
    user: String,
    counts: Arc<Mutex<Counts>>,
}

/// Why no slot was free.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    User(usize),
    Everyone,
}

impl Full {
    /// The API's answer: 429 with `Retry-After`, for both upload paths.
    pub fn answer(self) -> super::errors::ApiError {
        let m = match self {
            Full::User(n) => format!("at most {n} uploads at once per user; finish or cancel one"),
            Full::Everyone => "the gateway is receiving as many uploads as it takes; retry shortly".to_owned(),
        };
        super::errors::retry_after(axum::http::StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_UPLOADS", m, std::time::Duration::from_secs(5))
    }
}

impl Slots {
    pub fn new(per_user: usize, total: usize) -> Slots {
        Slots { per_user, total, counts: Arc::default() }
    }

    pub fn take(&self, user: &str) -> Result<Slot, Full> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.per_user.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(Full::User(self.per_user));
        }
        if c.total >= self.total {
            return Err(Full::Everyone);
        }
        c.total += 1;
        *c.per_user.entry(user.to_owned()).or_default() += 1;
        Ok(Slot { user: user.to_owned(), counts: self.counts.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_total_caps_and_release() {
        let s = Slots::new(2, 3);
        let a1 = s.take("alice").unwrap();
        let _a2 = s.take("alice").unwrap();
        assert_eq!(s.take("alice").err(), Some(Full::User(2)));
        let _b1 = s.take("bob").unwrap();
        assert_eq!(s.take("carol").err(), Some(Full::Everyone));
        drop(a1);
        assert!(s.take("carol").is_ok(), "freed on drop");
    }
}
