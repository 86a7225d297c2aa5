//! Object metadata in SQLite (WAL): which blob belongs to whom, under which
//! key, shared with whom. The blob store and this table agree because a
//! blob is linked into place before its row is inserted, rows are removed
//! before their blobs, and startup removes blobs that have no row.
//!
//! Object ids are unique per owner: an id names an object together with
//! its owner (the encryption context carries both), so no user can learn
//! that another user's id exists, or take an id before its owner uses it.

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

const SCHEMA: &str = "
    CREATE TABLE objects (owner TEXT NOT NULL, id TEXT NOT NULL, key_arn TEXT NOT NULL,
        size INTEGER NOT NULL, created REAL NOT NULL, file_name TEXT, PRIMARY KEY (owner, id));
    CREATE TABLE shares (owner TEXT NOT NULL, object_id TEXT NOT NULL, user TEXT NOT NULL, granted REAL NOT NULL,
        PRIMARY KEY (owner, object_id, user),
        FOREIGN KEY (owner, object_id) REFERENCES objects (owner, id) ON DELETE CASCADE);
    CREATE INDEX shares_by_user ON shares (user);
    PRAGMA user_version = 1;";

/// Version 0 had globally unique ids (`objects.id` the primary key).
const FROM_V0: &str = "
    ALTER TABLE objects RENAME TO objects_v0;
    ALTER TABLE shares RENAME TO shares_v0;";
const COPY_V0: &str = "
    INSERT INTO objects (owner, id, key_arn, size, created, file_name)
        SELECT owner, id, key_arn, size, created, file_name FROM objects_v0;
    INSERT INTO shares (owner, object_id, user, granted)
        SELECT o.owner, s.object_id, s.user, o.created FROM shares_v0 s JOIN objects_v0 o ON o.id = s.object_id;
    DROP TABLE shares_v0;
    DROP TABLE objects_v0;";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Object> {
    Ok(Object {
        owner: r.get(0)?,
        id: r.get(1)?,
        key_arn: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        created: r.get(4)?,
        file_name: r.get(5)?,
        shared_with: vec![],
    })
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, String> {
        let fail = |e: rusqlite::Error| format!("cannot initialize {}: {e}", path.display());
        let mut c = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(fail)?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
        let has_objects = c.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'objects'", [], |_| Ok(())).optional().map_err(fail)?.is_some();
        if version == 0 {
            let tx = c.transaction().map_err(fail)?;
            if has_objects {
                tx.execute_batch(FROM_V0).map_err(fail)?;
            }
            tx.execute_batch(SCHEMA).map_err(fail)?;
            if has_objects {
                tx.execute_batch(COPY_V0).map_err(fail)?;
            }
            tx.commit().map_err(fail)?;
        } else if version != 1 {
            return Err(format!("{} has schema version {version}, newer than this gateway's (1)", path.display()));
        }
        Ok(Db(Mutex::new(c)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, o: &Object) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO objects (owner, id, key_arn, size, created, file_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![o.owner, o.id, o.key_arn, o.size as i64, o.created, o.file_name],
        )?;
        Ok(())
    }

    pub fn exists(&self, owner: &str, id: &str) -> bool {
        self.conn().query_row("SELECT 1 FROM objects WHERE owner = ?1 AND id = ?2", [owner, id], |_| Ok(())).optional().ok().flatten().is_some()
    }

    pub fn get(&self, owner: &str, id: &str) -> Option<Object> {
        let c = self.conn();
        let o = c
            .query_row("SELECT owner, id, key_arn, size, created, file_name FROM objects WHERE owner = ?1 AND id = ?2", [owner, id], row)
            .optional()
            .ok()
            .flatten()?;
        let mut st = c.prepare("SELECT user FROM shares WHERE owner = ?1 AND object_id = ?2 ORDER BY user").ok()?;
        let users = st.query_map([owner, id], |r| r.get::<_, String>(0)).ok()?.filter_map(Result::ok).collect();
        Some(Object { shared_with: users, ..o })
    }

    /// Objects the user owns or that are shared with them, newest first.
    pub fn list_for(&self, user: &str) -> Vec<Object> {
        let keys: Vec<(String, String)> = {
            let c = self.conn();
            let Ok(mut st) = c.prepare(
                "SELECT owner, id FROM objects WHERE owner = ?1
                 OR (owner, id) IN (SELECT owner, object_id FROM shares WHERE user = ?1) ORDER BY created DESC",
            ) else {
                return vec![];
            };
            let rows = st.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)));
            match rows {
                Ok(r) => r.filter_map(Result::ok).collect(),
                Err(_) => vec![],
            }
        };
        keys.iter().filter_map(|(owner, id)| self.get(owner, id)).collect()
    }

    /// Every object as (owner, id).
    pub fn all_keys(&self) -> Vec<(String, String)> {
        let c = self.conn();
        let Ok(mut st) = c.prepare("SELECT owner, id FROM objects") else { return vec![] };
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)));
        match rows {
            Ok(r) => r.filter_map(Result::ok).collect(),
            Err(_) => vec![],
        }
    }

    pub fn delete(&self, owner: &str, id: &str) -> rusqlite::Result<usize> {
        self.conn().execute("DELETE FROM objects WHERE owner = ?1 AND id = ?2", [owner, id])
    }

    /// Shares the object with `user`; whether the share is new.
    pub fn share(&self, owner: &str, id: &str, user: &str) -> rusqlite::Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO shares (owner, object_id, user, granted) VALUES (?1, ?2, ?3, ?4)",
            params![owner, id, user, crate::localkms::now()],
        )?;
        Ok(n == 1)
    }

    /// Revokes `user`'s share; whether there was one.
    pub fn unshare(&self, owner: &str, id: &str, user: &str) -> rusqlite::Result<bool> {
        let n = self.conn().execute("DELETE FROM shares WHERE owner = ?1 AND object_id = ?2 AND user = ?3", [owner, id, user])?;
        Ok(n == 1)
    }

    /// The object's shares: (user, when granted), by user.
    pub fn shares(&self, owner: &str, id: &str) -> Vec<(String, f64)> {
        let c = self.conn();
        let Ok(mut st) = c.prepare("SELECT user, granted FROM shares WHERE owner = ?1 AND object_id = ?2 ORDER BY user") else { return vec![] };
        let rows = st.query_map([owner, id], |r| Ok((r.get(0)?, r.get(1)?)));
        match rows {
            Ok(r) => r.filter_map(Result::ok).collect(),
            Err(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(owner: &str, id: &str) -> Object {
        Object { id: id.into(), owner: owner.into(), key_arn: "arn".into(), size: 1, created: 1.0, file_name: None, shared_with: vec![] }
    }

    #[test]
    fn ids_are_per_owner_and_shares_revoke() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("g.sqlite3")).unwrap();
        db.insert(&object("alice", "report")).unwrap();
        db.insert(&object("bob", "report")).unwrap();
        assert!(db.insert(&object("bob", "report")).is_err());
        assert!(db.share("alice", "report", "carol").unwrap());
        assert!(!db.share("alice", "report", "carol").unwrap(), "granted once");
        assert_eq!(db.list_for("carol").iter().map(|o| o.owner.as_str()).collect::<Vec<_>>(), ["alice"]);
        assert_eq!(db.shares("alice", "report").len(), 1);
        assert!(db.unshare("alice", "report", "carol").unwrap());
        assert!(!db.unshare("alice", "report", "carol").unwrap());
        assert!(db.list_for("carol").is_empty());
        assert_eq!(db.delete("alice", "report").unwrap(), 1);
        assert!(db.exists("bob", "report"));
    }

    #[test]
    fn a_version_0_database_is_migrated() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.sqlite3");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE objects (id TEXT PRIMARY KEY, owner TEXT NOT NULL, key_arn TEXT NOT NULL,
                     size INTEGER NOT NULL, created REAL NOT NULL, file_name TEXT);
                 CREATE TABLE shares (object_id TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
                     user TEXT NOT NULL, PRIMARY KEY (object_id, user));
                 INSERT INTO objects VALUES ('x', 'alice', 'arn', 5, 2.0, 'f.txt');
                 INSERT INTO shares VALUES ('x', 'bob');",
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let o = db.get("alice", "x").unwrap();
        assert_eq!((o.size, o.file_name.as_deref(), o.shared_with.as_slice()), (5, Some("f.txt"), &["bob".to_owned()][..]));
        drop(db);
        assert!(Db::open(&path).unwrap().exists("alice", "x"), "opens again at version 1");
    }
}
