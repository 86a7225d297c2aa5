//! Metadata in SQLite (WAL, synchronous commits) in the data directory:
//! the embedded default, for one gateway. The local blob directory and
//! these tables agree because a blob is linked into place before its row
//! is inserted, rows are removed before their blobs, and startup removes
//! blobs that have no row.
//!
//! Schema versions are SQLite's `user_version`: 0 (ids unique across
//! owners), 1 (ids per owner, shares with grant times), 2 (direct uploads),
//! 3 (web sessions), 4 (audit records).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{AuditQuery, AuditRecord, Bucket, Error, Kind, Metadata, Object, Result, SessionKey, Take, Upload};
use crate::gateway::ratelimit::RateLimiter;

/// The database, and the token buckets: in memory, as SQLite serves one
/// instance (a token is no reason to sync a disk).
pub struct Sqlite {
    conn: Mutex<Connection>,
    buckets: Mutex<std::collections::HashMap<String, RateLimiter>>,
}

/// A rusqlite error, typed: a constraint is a conflict, a busy or locked
/// database is unavailable.
fn fail(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let kind = match e.sqlite_error_code() {
        Some(C::ConstraintViolation) => Kind::Conflict,
        Some(C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::SystemIoFailure | C::DiskFull) => Kind::Unavailable,
        _ => Kind::Other,
    };
    Error::new(kind, format!("SQLite: {e}"))
}

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

/// Version 3: web sessions, so that a restart signs nobody out.
const V3: &str = "
    CREATE TABLE sessions (id_hash BLOB PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, expires REAL NOT NULL);
    PRAGMA user_version = 3;";

/// Version 4: audit records (they were lines of `audit.log` before).
const V4: &str = "
    CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, instance TEXT NOT NULL,
        event TEXT NOT NULL, user TEXT NOT NULL, owner TEXT, object_id TEXT, key_arn TEXT,
        decision TEXT, reason TEXT, target TEXT);
    CREATE INDEX audit_by_time ON audit (at);
    CREATE INDEX audit_by_user ON audit (user, at);
    CREATE INDEX audit_by_object ON audit (object_id, at);
    PRAGMA user_version = 4;";

/// The schema version this gateway writes.
const VERSION: i64 = 4;

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

impl Sqlite {
    pub fn open(path: &Path) -> std::result::Result<Sqlite, String> {
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
            for v in [V2, V3, V4] {
                tx.execute_batch(v).map_err(fail)?;
            }
            tx.commit().map_err(fail)?;
        } else if version < VERSION {
            let tx = c.transaction().map_err(fail)?;
            for v in [V2, V3, V4].iter().skip(version as usize - 1) {
                tx.execute_batch(v).map_err(fail)?;
            }
            tx.commit().map_err(fail)?;
        } else if version != VERSION {
            return Err(format!("{} has schema version {version}, newer than this gateway's ({VERSION})", path.display()));
        }
        Ok(Sqlite { conn: Mutex::new(c), buckets: Mutex::default() })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shared_with(c: &Connection, owner: &str, id: &str) -> rusqlite::Result<Vec<String>> {
        let mut st = c.prepare_cached("SELECT user FROM shares WHERE owner = ?1 AND object_id = ?2 ORDER BY user")?;
        let users = st.query_map([owner, id], |r| r.get::<_, String>(0))?.collect();
        users
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

const INSERT_OBJECT: &str = "INSERT INTO objects (owner, id, key_arn, size, created, file_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const AUDIT_COLUMNS: &str = "seq, at, instance, event, user, owner, object_id, key_arn, decision, reason, target";

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        instance: r.get(2)?,
        event: r.get(3)?,
        user: r.get(4)?,
        owner: r.get(5)?,
        object: r.get(6)?,
        key_arn: r.get(7)?,
        decision: r.get(8)?,
        reason: r.get(9)?,
        target: r.get(10)?,
    })
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>> {
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(fail)
}

#[async_trait::async_trait]
impl Metadata for Sqlite {
    async fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1 FROM objects LIMIT 1", [], |_| Ok(())).optional().map(|_| ()).map_err(fail)
    }

    async fn insert(&self, o: &Object) -> Result<()> {
        self.conn().execute(INSERT_OBJECT, params![o.owner, o.id, o.key_arn, o.size as i64, o.created, o.file_name]).map_err(fail)?;
        Ok(())
    }

    async fn exists(&self, owner: &str, id: &str) -> Result<bool> {
        let found = self.conn().query_row("SELECT 1 FROM objects WHERE owner = ?1 AND id = ?2", [owner, id], |_| Ok(())).optional().map_err(fail)?;
        Ok(found.is_some())
    }

    async fn get(&self, owner: &str, id: &str) -> Result<Option<Object>> {
        let c = self.conn();
        let o = c
            .query_row("SELECT owner, id, key_arn, size, created, file_name FROM objects WHERE owner = ?1 AND id = ?2", [owner, id], row)
            .optional()
            .map_err(fail)?;
        match o {
            Some(o) => Ok(Some(Object { shared_with: Self::shared_with(&c, owner, id).map_err(fail)?, ..o })),
            None => Ok(None),
        }
    }

    async fn list_for(&self, user: &str) -> Result<Vec<Object>> {
        let c = self.conn();
        let mut st = c
            .prepare_cached(
                "SELECT owner, id, key_arn, size, created, file_name FROM objects WHERE owner = ?1
                 OR (owner, id) IN (SELECT owner, object_id FROM shares WHERE user = ?1) ORDER BY created DESC, owner, id",
            )
            .map_err(fail)?;
        let objects = collect(st.query_map([user], row).map_err(fail)?)?;
        objects
            .into_iter()
            .map(|o| Ok(Object { shared_with: Self::shared_with(&c, &o.owner, &o.id).map_err(fail)?, ..o }))
            .collect()
    }

    async fn all_keys(&self) -> Result<Vec<(String, String)>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT owner, id FROM objects").map_err(fail)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(fail)?;
        collect(rows)
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM objects WHERE owner = ?1 AND id = ?2", [owner, id]).map_err(fail)? == 1)
    }

    async fn share(&self, owner: &str, id: &str, user: &str, now: f64) -> Result<bool> {
        let n = self
            .conn()
            .execute("INSERT OR IGNORE INTO shares (owner, object_id, user, granted) VALUES (?1, ?2, ?3, ?4)", params![owner, id, user, now])
            .map_err(fail)?;
        Ok(n == 1)
    }

    async fn unshare(&self, owner: &str, id: &str, user: &str) -> Result<bool> {
        let n = self.conn().execute("DELETE FROM shares WHERE owner = ?1 AND object_id = ?2 AND user = ?3", [owner, id, user]).map_err(fail)?;
        Ok(n == 1)
    }

    async fn shares(&self, owner: &str, id: &str) -> Result<Vec<(String, f64)>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT user, granted FROM shares WHERE owner = ?1 AND object_id = ?2 ORDER BY user").map_err(fail)?;
        let rows = st.query_map([owner, id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(fail)?;
        collect(rows)
    }

    async fn insert_upload(&self, u: &Upload) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO uploads (id, owner, object_id, store_upload_id, part_bytes, created, touched) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![u.id, u.owner, u.object_id, u.store_upload_id, u.part_bytes as i64, u.created, u.touched],
            )
            .map_err(fail)?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        self.conn().query_row(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"), [id], upload_row).optional().map_err(fail)
    }

    async fn touch_upload(&self, id: &str, now: f64) -> Result<()> {
        self.conn().execute("UPDATE uploads SET touched = ?2 WHERE id = ?1", params![id, now]).map_err(fail)?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM uploads WHERE id = ?1", [id]).map_err(fail)? == 1)
    }

    async fn uploads(&self) -> Result<Vec<Upload>> {
        let c = self.conn();
        let mut st = c.prepare(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY created, id")).map_err(fail)?;
        let rows = st.query_map([], upload_row).map_err(fail)?;
        collect(rows)
    }

    async fn count_uploads(&self, owner: &str) -> Result<(usize, usize)> {
        let c = self.conn();
        let n = |sql: &str, p: &[&dyn rusqlite::ToSql]| c.query_row(sql, p, |r| r.get::<_, i64>(0)).map(|n| n as usize).map_err(fail);
        Ok((n("SELECT COUNT(*) FROM uploads WHERE owner = ?1", &[&owner])?, n("SELECT COUNT(*) FROM uploads", &[])?))
    }

    async fn finish_upload(&self, upload_id: &str, o: &Object) -> Result<bool> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(fail)?;
        if tx.execute("DELETE FROM uploads WHERE id = ?1", [upload_id]).map_err(fail)? != 1 {
            return Ok(false);
        }
        tx.execute(INSERT_OBJECT, params![o.owner, o.id, o.key_arn, o.size as i64, o.created, o.file_name]).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(true)
    }

    async fn create_session(&self, key: &SessionKey, user: &str, csrf: &str, expires: f64) -> Result<()> {
        self.conn()
            .execute("INSERT INTO sessions (id_hash, user, csrf, expires) VALUES (?1, ?2, ?3, ?4)", params![&key.0[..], user, csrf, expires])
            .map_err(fail)?;
        Ok(())
    }

    async fn session(&self, key: &SessionKey, now: f64) -> Result<Option<(String, String)>> {
        self.conn()
            .query_row("SELECT user, csrf FROM sessions WHERE id_hash = ?1 AND expires > ?2", params![&key.0[..], now], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(fail)
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<()> {
        self.conn().execute("DELETE FROM sessions WHERE id_hash = ?1", params![&key.0[..]]).map_err(fail)?;
        Ok(())
    }

    async fn purge_sessions(&self, now: f64) -> Result<u64> {
        Ok(self.conn().execute("DELETE FROM sessions WHERE expires <= ?1", params![now]).map_err(fail)? as u64)
    }

    async fn take(&self, name: &str, bucket: Bucket, take: Take) -> Result<std::result::Result<(), Duration>> {
        let (kind, key) = name.split_once(':').unwrap_or(("", name));
        let mut limiters = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let limiter = limiters.entry(format!("{kind}/{}/{}", bucket.rate, bucket.burst)).or_insert_with(|| RateLimiter::new(bucket.rate, bucket.burst as u32));
        Ok(match take {
            Take::One => limiter.check(key),
            Take::Peek => limiter.blocked(key),
        })
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        // The commit waits for the disk: the worker thread's other tasks move on meanwhile.
        let append = || {
            let mut c = self.conn();
            let tx = c.transaction().map_err(fail)?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO audit (at, instance, event, user, owner, object_id, key_arn, decision, reason, target)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(fail)?;
                for r in records {
                    st.execute(params![r.at, r.instance, r.event, r.user, r.owner, r.object, r.key_arn, r.decision, r.reason, r.target]).map_err(fail)?;
                }
            }
            tx.commit().map_err(fail)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(append),
            _ => append(),
        }
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let c = self.conn();
        let mut st = c
            .prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 AND at >= ?2 AND (?3 IS NULL OR at < ?3)
                 AND (?4 IS NULL OR user = ?4) AND (?5 IS NULL OR owner = ?5) AND (?6 IS NULL OR object_id = ?6)
                 ORDER BY seq LIMIT ?7"
            ))
            .map_err(fail)?;
        let rows = st.query_map(params![q.after, q.since, q.until, q.user, q.owner, q.object, q.limit as i64], audit_row).map_err(fail)?;
        collect(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::tests::{block_on, upload};

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
        let db = Sqlite::open(&path).unwrap();
        let o = block_on(db.get("alice", "x")).unwrap().unwrap();
        assert_eq!((o.size, o.file_name.as_deref(), o.shared_with.as_slice()), (5, Some("f.txt"), &["bob".to_owned()][..]));
        drop(db);
        assert!(block_on(Sqlite::open(&path).unwrap().exists("alice", "x")).unwrap(), "opens again at the current version");
    }

    #[test]
    fn a_version_1_database_gains_the_uploads_sessions_and_audit_tables() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.sqlite3");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute("INSERT INTO objects VALUES ('alice', 'x', 'arn', 5, 2.0, NULL)", []).unwrap();
        }
        let db = Sqlite::open(&path).unwrap();
        assert!(block_on(db.exists("alice", "x")).unwrap());
        block_on(db.insert_upload(&upload("u", "alice", "y"))).unwrap();
        assert_eq!(block_on(db.uploads()).unwrap().len(), 1);
        block_on(db.create_session(&crate::gateway::meta::SessionKey([1; 32]), "alice", "c", 9.0)).unwrap();
        let r = AuditRecord { at: 1.0, instance: "i".into(), event: "decision".into(), user: "alice".into(), ..Default::default() };
        block_on(db.append_audit(&[r])).unwrap();
        drop(db);
        let db = Sqlite::open(&path).unwrap();
        assert!(block_on(db.session(&crate::gateway::meta::SessionKey([1; 32]), 1.0)).unwrap().is_some(), "sessions outlive a restart");
        let q = crate::gateway::meta::AuditQuery { limit: 10, ..Default::default() };
        assert_eq!(block_on(db.audit(&q)).unwrap().len(), 1, "audit records outlive a restart");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.sqlite3");
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        let e = Sqlite::open(&path).err().unwrap();
        assert!(e.contains("schema version 99"), "{e}");
    }

    #[test]
    fn the_shared_suite() {
        let d = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&d.path().join("g.sqlite3")).unwrap();
        block_on(crate::gateway::meta::tests::suite(&db));
    }
}
