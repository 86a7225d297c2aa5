//! Chunked uploads in progress, in memory only (a restart drops them, and
//! startup removes their files). Each belongs to the user who started it;
//! idle ones expire; a user may have only a few at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::incoming::Incoming;

const IDLE: Duration = Duration::from_secs(600);
const PER_USER: usize = 8;

enum Slot {
    /// Waiting for its next part.
    Idle(Box<Incoming>, Instant),
    /// A part is being written.
    Busy(String),
}

#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Slot>>);

impl Uploads {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new upload; its id.
    pub fn start(&self, who: &str, object: Incoming) -> Result<String, String> {
        let mut map = self.map();
        let now = Instant::now();
        map.retain(|_, s| !matches!(s, Slot::Idle(_, at) if now.duration_since(*at) > IDLE));
        let mine = map
            .values()
            .filter(|s| match s {
                Slot::Idle(o, _) => o.user() == who,
                Slot::Busy(u) => u == who,
            })
            .count();
        if mine >= PER_USER {
            return Err(format!("at most {PER_USER} uploads at once"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        map.insert(id.clone(), Slot::Idle(Box::new(object), now));
        Ok(id)
    }

    /// Takes the upload out for a part; `put_back` returns it.
    pub fn take(&self, id: &str, who: &str) -> Result<Incoming, (StatusCode, String)> {
        self.take_as(id, who, true)
    }

    /// Takes the upload out for good (to complete or cancel it).
    pub fn end(&self, id: &str, who: &str) -> Result<Incoming, (StatusCode, String)> {
        self.take_as(id, who, false)
    }

    fn take_as(&self, id: &str, who: &str, busy: bool) -> Result<Incoming, (StatusCode, String)> {
        let mut map = self.map();
        let not_found = || (StatusCode::NOT_FOUND, "no such upload (finished, cancelled or expired)".to_owned());
        match map.get(id) {
            None => Err(not_found()),
            Some(Slot::Busy(u)) if u == who => Err((StatusCode::CONFLICT, "a part of this upload is being written".into())),
            Some(Slot::Busy(_)) => Err(not_found()),
            Some(Slot::Idle(o, _)) if o.user() != who => Err(not_found()),
            Some(Slot::Idle(_, at)) if at.elapsed() > IDLE => {
                map.remove(id);
                Err(not_found())
            }
            Some(Slot::Idle(..)) => {
                let taken = if busy { map.insert(id.to_owned(), Slot::Busy(who.to_owned())) } else { map.remove(id) };
                match taken {
                    Some(Slot::Idle(o, _)) => Ok(*o),
                    _ => unreachable!("checked above"),
                }
            }
        }
    }

    pub fn put_back(&self, id: &str, object: Incoming) {
        self.map().insert(id.to_owned(), Slot::Idle(Box::new(object), Instant::now()));
    }

    /// Forgets an upload whose part failed (its file goes with it).
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}
