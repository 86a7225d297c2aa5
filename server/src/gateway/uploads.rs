//! Chunked uploads in progress, in memory only (a restart drops them, and
//! startup removes their files). Each belongs to the user who started it;
//! idle ones expire; each holds an upload slot (see `slots`) until it ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::incoming::Incoming;

const IDLE: Duration = Duration::from_secs(600);

enum Slot {
    /// Waiting for its next part.
    Idle(Box<Incoming>, Instant),
    /// A part is being written (by this user); `true` once cancelled, so
    /// that the upload ends when the part does.
    Busy(String, bool),
}

#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Slot>>);

impl Uploads {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops uploads idle for too long (and so frees their slots).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.map().retain(|_, s| !matches!(s, Slot::Idle(_, at) if now.duration_since(*at) > IDLE));
    }

    /// Registers a new upload; its id.
    pub fn start(&self, object: Incoming) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.map().insert(id.clone(), Slot::Idle(Box::new(object), Instant::now()));
        id
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
            Some(Slot::Busy(u, _)) if u == who => Err((StatusCode::CONFLICT, "a part of this upload is being written".into())),
            Some(Slot::Busy(..)) => Err(not_found()),
            Some(Slot::Idle(o, _)) if o.user() != who => Err(not_found()),
            Some(Slot::Idle(_, at)) if at.elapsed() > IDLE => {
                map.remove(id);
                Err(not_found())
            }
            Some(Slot::Idle(..)) => {
                let taken = if busy { map.insert(id.to_owned(), Slot::Busy(who.to_owned(), false)) } else { map.remove(id) };
                match taken {
                    Some(Slot::Idle(o, _)) => Ok(*o),
                    _ => unreachable!("checked above"),
                }
            }
        }
    }

    /// Cancels an upload: at once if it is waiting, else as soon as the
    /// part being written ends (a client that gives up mid-part cancels
    /// while that part is still being received).
    pub fn cancel(&self, id: &str, who: &str) -> Result<(), (StatusCode, String)> {
        {
            let mut map = self.map();
            if let Some(Slot::Busy(u, cancelled)) = map.get_mut(id) {
                if u == who {
                    *cancelled = true;
                    return Ok(());
                }
            }
        }
        drop(self.end(id, who)?);
        Ok(())
    }

    /// Returns an upload after a part; one cancelled meanwhile ends here,
    /// and its file with it.
    pub fn put_back(&self, id: &str, object: Incoming) {
        let mut map = self.map();
        if matches!(map.get(id), Some(Slot::Busy(_, true))) {
            map.remove(id);
            drop(map);
            drop(object);
            return;
        }
        map.insert(id.to_owned(), Slot::Idle(Box::new(object), Instant::now()));
    }

    /// Forgets an upload whose part failed (its file goes with it).
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}
