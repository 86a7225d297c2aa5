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

/// A direct upload in progress: the object id it was issued, and the
/// store's multipart upload id.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub owner: String,
    pub object_id: String,
    pub store_upload_id: String,
    pub part_bytes: u64,
    pub created: f64,
    pub touched: f64,
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

/// Version 2: direct (multipart) uploads in progress, so that every
/// gateway knows them and none is left behind in the object store.
const V2: &str = "
    CREATE TABLE uploads (id TEXT PRIMARY KEY, owner TEXT NOT NULL, object_id TEXT NOT NULL,
        store_upload_id TEXT NOT NULL, part_bytes INTEGER NOT NULL, created REAL NOT NULL, touched REAL NOT NULL,
        UNIQUE (owner, object_id));
    PRAGMA user_version = 2;";

/// The schema version this gateway writes.
const VERSION: i64 = 2;

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
            tx.execute_batch(V2).map_err(fail)?;
            tx.commit().map_err(fail)?;
        } else if version == 1 {
            let tx = c.transaction().map_err(fail)?;
            tx.execute_batch(V2).map_err(fail)?;
            tx.commit().map_err(fail)?;
        } else if version != VERSION {
            return Err(format!("{} has schema version {version}, newer than this gateway's ({VERSION})", path.display()));
        }
        Ok(Db(Mutex::new(c)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the database answers (readiness).
    pub fn ping(&self) -> rusqlite::Result<()> {
        self.conn().query_row("SELECT 1 FROM objects LIMIT 1", [], |_| Ok(())).optional().map(|_| ())
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

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: r.get(0)?,
        owner: r.get(1)?,
        object_id: r.get(2)?,
        store_upload_id: r.get(3)?,
        part_bytes: r.get::<_, i64>(4)? as u64,
        created: r.get(5)?,
        touched: r.get(6)?,
    })
}

const UPLOAD_COLUMNS: &str = "id, owner, object_id, store_upload_id, part_bytes, created, touched";

impl Db {
    /// Records a direct upload the store has started.
    pub fn insert_upload(&self, u: &Upload) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO uploads (id, owner, object_id, store_upload_id, part_bytes, created, touched) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![u.id, u.owner, u.object_id, u.store_upload_id, u.part_bytes as i64, u.created, u.touched],
        )?;
        Ok(())
    }

    pub fn upload(&self, id: &str) -> Option<Upload> {
        self.conn().query_row(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"), [id], upload_row).optional().ok().flatten()
    }

    /// Marks the upload active now (idle ones expire).
    pub fn touch_upload(&self, id: &str, now: f64) -> rusqlite::Result<()> {
        self.conn().execute("UPDATE uploads SET touched = ?2 WHERE id = ?1", params![id, now])?;
        Ok(())
    }

    /// Forgets an upload; whether it was there (only one caller ends it).
    pub fn delete_upload(&self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.conn().execute("DELETE FROM uploads WHERE id = ?1", [id])? == 1)
    }

    /// Every direct upload in progress.
    pub fn uploads(&self) -> Vec<Upload> {
        let c = self.conn();
        let Ok(mut st) = c.prepare(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY created")) else { return vec![] };
        let rows = st.query_map([], upload_row);
        match rows {
            Ok(r) => r.filter_map(Result::ok).collect(),
            Err(_) => vec![],
        }
    }

    /// Direct uploads in progress: the owner's, and everybody's.
    pub fn count_uploads(&self, owner: &str) -> (usize, usize) {
        let c = self.conn();
        let n = |sql: &str, p: &[&dyn rusqlite::ToSql]| c.query_row(sql, p, |r| r.get::<_, i64>(0)).unwrap_or(0) as usize;
        (n("SELECT COUNT(*) FROM uploads WHERE owner = ?1", &[&owner]), n("SELECT COUNT(*) FROM uploads", &[]))
    }

    /// Makes a direct upload an object, in one transaction: the object's
    /// row in, the upload's row out. Fails if the upload was ended
    /// meanwhile (cancelled, expired) or the id is taken.
    pub fn finish_upload(&self, upload_id: &str, o: &Object) -> rusqlite::Result<bool> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        if tx.execute("DELETE FROM uploads WHERE id = ?1", [upload_id])? != 1 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO objects (owner, id, key_arn, size, created, file_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![o.owner, o.id, o.key_arn, o.size as i64, o.created, o.file_name],
        )?;
        tx.commit()?;
        Ok(true)
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
        assert!(Db::open(&path).unwrap().exists("alice", "x"), "opens again at version 2");
    }

    fn upload(id: &str, owner: &str, object: &str) -> Upload {
        Upload { id: id.into(), owner: owner.into(), object_id: object.into(), store_upload_id: format!("s3-{id}"), part_bytes: 8 << 20, created: 1.0, touched: 1.0 }
    }

    #[test]
    fn a_direct_upload_becomes_an_object_once() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("g.sqlite3")).unwrap();
        db.insert_upload(&upload("u1", "alice", "o1")).unwrap();
        assert!(db.insert_upload(&upload("u2", "alice", "o1")).is_err(), "one upload per object id");
        assert_eq!(db.upload("u1").unwrap().store_upload_id, "s3-u1");
        assert_eq!(db.count_uploads("alice"), (1, 1));
        assert_eq!(db.count_uploads("bob"), (0, 1));
        assert!(db.finish_upload("u1", &object("alice", "o1")).unwrap());
        assert!(db.exists("alice", "o1") && db.upload("u1").is_none());
        assert!(!db.finish_upload("u1", &object("alice", "o2")).unwrap(), "an ended upload makes no object");
        assert!(!db.exists("alice", "o2"));
    }

    #[test]
    fn a_version_1_database_gains_the_uploads_table() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.sqlite3");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute("INSERT INTO objects VALUES ('alice', 'x', 'arn', 5, 2.0, NULL)", []).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert!(db.exists("alice", "x"));
        db.insert_upload(&upload("u", "alice", "y")).unwrap();
        assert_eq!(db.uploads().len(), 1);
    }
}
