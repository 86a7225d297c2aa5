//! Object metadata in SQLite (WAL): which blob belongs to whom, under which
//! key, shared with whom. The blob store and this table agree because a
//! blob is renamed into place before its row is inserted, rows are removed
//! before their blobs, and startup removes blobs that have no row.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Object {
    pub id: String,
    pub owner: String,
    pub key_arn: String,
    pub size: u64,
    pub created: f64,
    pub file_name: Option<String>,
    pub shared_with: Vec<String>,
}

pub struct Db(Mutex<Connection>);

impl Db {
    pub fn open(path: &Path) -> Result<Db, String> {
        let c = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, owner TEXT NOT NULL, key_arn TEXT NOT NULL,
                 size INTEGER NOT NULL, created REAL NOT NULL, file_name TEXT);
             CREATE TABLE IF NOT EXISTS shares (object_id TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
                 user TEXT NOT NULL, PRIMARY KEY (object_id, user));",
        )
        .map_err(|e| format!("cannot initialize {}: {e}", path.display()))?;
        Ok(Db(Mutex::new(c)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, o: &Object) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO objects (id, owner, key_arn, size, created, file_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![o.id, o.owner, o.key_arn, o.size as i64, o.created, o.file_name],
        )?;
        Ok(())
    }

    pub fn exists(&self, id: &str) -> bool {
        self.conn().query_row("SELECT 1 FROM objects WHERE id = ?1", [id], |_| Ok(())).optional().ok().flatten().is_some()
    }

    pub fn get(&self, id: &str) -> Option<Object> {
        let c = self.conn();
        let o = c
            .query_row("SELECT id, owner, key_arn, size, created, file_name FROM objects WHERE id = ?1", [id], |r| {
                Ok(Object {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    key_arn: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                    created: r.get(4)?,
                    file_name: r.get(5)?,
                    shared_with: vec![],
                })
            })
            .optional()
            .ok()
            .flatten()?;
        let mut st = c.prepare("SELECT user FROM shares WHERE object_id = ?1 ORDER BY user").ok()?;
        let users = st.query_map([id], |r| r.get::<_, String>(0)).ok()?.filter_map(Result::ok).collect();
        Some(Object { shared_with: users, ..o })
    }

    /// Objects the user owns or that are shared with them, newest first.
    pub fn list_for(&self, user: &str) -> Vec<Object> {
        let ids: Vec<String> = {
            let c = self.conn();
            let mut st = match c.prepare(
                "SELECT id FROM objects WHERE owner = ?1 OR id IN (SELECT object_id FROM shares WHERE user = ?1) ORDER BY created DESC",
            ) {
                Ok(s) => s,
                Err(_) => return vec![],
            };
            let rows = st.query_map([user], |r| r.get::<_, String>(0));
            match rows {
                Ok(r) => r.filter_map(Result::ok).collect(),
                Err(_) => vec![],
            }
        };
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    pub fn all_ids(&self) -> Vec<String> {
        let c = self.conn();
        let mut st = match c.prepare("SELECT id FROM objects") {
            Ok(s) => s,
            Err(_) => return vec![],
        };
        let rows = st.query_map([], |r| r.get::<_, String>(0));
        match rows {
            Ok(r) => r.filter_map(Result::ok).collect(),
            Err(_) => vec![],
        }
    }

    pub fn delete(&self, id: &str) -> rusqlite::Result<usize> {
        self.conn().execute("DELETE FROM objects WHERE id = ?1", [id])
    }

    pub fn share(&self, id: &str, user: &str) -> rusqlite::Result<()> {
        self.conn().execute("INSERT OR IGNORE INTO shares (object_id, user) VALUES (?1, ?2)", [id, user])?;
        Ok(())
    }
}
