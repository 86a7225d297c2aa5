//! Metadata in PostgreSQL (`database_url`), shared by every gateway
//! instance: a pool of connections (tokio-postgres, deadpool), TLS with
//! rustls when `database_ca` names the server's CA (the certificate is
//! verified, and the host name against it), and versioned migrations.
//!
//! Migrations run at start in one transaction under an advisory lock, so
//! instances starting together apply each version once: the first applies
//! what is missing, the others wait and find it done. A database newer
//! than this gateway is refused.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::{AuditQuery, AuditRecord, Bucket, Error, Kind, Metadata, Object, Result, SessionKey, Take, Upload};

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/dbname[?sslmode=require]`.
    pub url: String,
    /// PEM file of the CA that signed the server's certificate: connect with TLS.
    pub ca: Option<PathBuf>,
    /// Most connections this instance opens.
    pub pool: usize,
}

pub struct Postgres {
    pool: Pool,
}

/// The advisory lock migrations run under (any constant the gateway alone uses).
const MIGRATION_LOCK: i64 = 0x6b6d_7365_6e76_0001;

/// Schema versions, each applied once, in order.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE objects (owner TEXT NOT NULL, id TEXT NOT NULL, key_arn TEXT NOT NULL, size BIGINT NOT NULL,
             created DOUBLE PRECISION NOT NULL, file_name TEXT, PRIMARY KEY (owner, id));
         CREATE TABLE shares (owner TEXT NOT NULL, object_id TEXT NOT NULL, grantee TEXT NOT NULL,
             granted DOUBLE PRECISION NOT NULL, PRIMARY KEY (owner, object_id, grantee),
             FOREIGN KEY (owner, object_id) REFERENCES objects (owner, id) ON DELETE CASCADE);
         CREATE INDEX shares_by_grantee ON shares (grantee);",
    ),
    (
        2,
        "CREATE TABLE uploads (id TEXT PRIMARY KEY, owner TEXT NOT NULL, object_id TEXT NOT NULL,
             store_upload_id TEXT NOT NULL, part_bytes BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,
             touched DOUBLE PRECISION NOT NULL, UNIQUE (owner, object_id));",
    ),
    (
        3,
        // Sessions every instance honours; token buckets every instance
        // spends from (unlogged: a crash refills them, nothing else is lost).
        "CREATE TABLE sessions (id_hash BYTEA PRIMARY KEY, user_name TEXT NOT NULL, csrf TEXT NOT NULL,
             expires DOUBLE PRECISION NOT NULL);
         CREATE INDEX sessions_by_expiry ON sessions (expires);
         CREATE UNLOGGED TABLE rate_buckets (name TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL,
             at DOUBLE PRECISION NOT NULL);",
    ),
    (
        4,
        // Audit records of every instance, numbered as inserted.
        "CREATE TABLE audit (seq BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, instance TEXT NOT NULL,
             event TEXT NOT NULL, user_name TEXT NOT NULL, owner TEXT, object_id TEXT, key_arn TEXT,
             decision TEXT, reason TEXT, target TEXT);
         CREATE INDEX audit_by_time ON audit (at);
         CREATE INDEX audit_by_user ON audit (user_name, at);
         CREATE INDEX audit_by_object ON audit (object_id, at);",
    ),
];

/// The schema version this gateway writes.
pub const VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A database error, typed by its SQLSTATE: a unique violation is a
/// conflict; a connection that failed, closed or was refused is unavailable.
fn fail(e: tokio_postgres::Error) -> Error {
    let kind = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Kind::Conflict,
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") || *c == SqlState::TOO_MANY_CONNECTIONS => Kind::Unavailable,
        Some(_) => Kind::Other,
        // No SQLSTATE: the connection itself failed (I/O, closed, timed out).
        None => Kind::Unavailable,
    };
    Error::new(kind, format!("PostgreSQL: {e}"))
}

fn pool_fail(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => fail(e),
        e => Error::new(Kind::Unavailable, format!("PostgreSQL pool: {e}")),
    }
}

fn tls(ca: &std::path::Path) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("database_ca {}: {e}", ca.display()))? {
        roots.add(c.map_err(|e| format!("database_ca {}: {e}", ca.display()))?).map_err(|e| format!("database_ca {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("database_ca {}: no certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

/// Where the configuration points, for messages (never the password).
fn describe(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("PostgreSQL {}@{host}:{port}/{}", c.get_user().unwrap_or(""), c.get_dbname().unwrap_or(""))
}

impl Postgres {
    /// Connects (checking the database answers) and migrates to [`VERSION`].
    pub async fn open(config: &PostgresConfig) -> std::result::Result<Postgres, String> {
        let mut pg = tokio_postgres::Config::from_str(&config.url).map_err(|e| format!("database_url: {e}"))?;
        // A database that stops answering (a host gone, a partition) fails
        // the connection within seconds rather than leaving requests waiting.
        pg.connect_timeout(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(15))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .application_name("kms-envelope");
        let name = describe(&pg);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &config.ca {
            Some(ca) => {
                // TLS or nothing: no fallback to a plain connection.
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(pg, tls(ca)?, manager_config)
            }
            None if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require => {
                return Err("database_url asks for TLS (sslmode=require): set database_ca to the PEM file of the server's CA (e.g. the RDS bundle)".into());
            }
            None => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(pg, tokio_postgres::NoTls, manager_config)
            }
        };
        let timeout = Some(Duration::from_secs(5));
        let pool = Pool::builder(manager)
            .max_size(config.pool.max(1))
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("{name}: {e}"))?;
        let db = Postgres { pool };
        db.migrate(VERSION).await.map_err(|e| format!("{name}: {e}"))?;
        Ok(db)
    }

    /// Applies the migrations up to `target`, once, whoever else is starting.
    pub async fn migrate(&self, target: i32) -> Result<i32> {
        let mut c = self.pool.get().await.map_err(pool_fail)?;
        let tx = c.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(fail)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS kms_envelope_schema (version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())")
            .await
            .map_err(fail)?;
        let have: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM kms_envelope_schema", &[]).await.map_err(fail)?.get(0);
        if have > VERSION {
            return Err(Error::new(Kind::Other, format!("the database has schema version {have}, newer than this gateway's ({VERSION})")));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have && *v <= target) {
            tx.batch_execute(sql).await.map_err(fail)?;
            tx.execute("INSERT INTO kms_envelope_schema (version) VALUES ($1)", &[version]).await.map_err(fail)?;
            tracing::info!(version, "database schema migrated");
        }
        tx.commit().await.map_err(fail)?;
        Ok(have)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_fail)
    }

    async fn shared_with(c: &deadpool_postgres::Object, owner: &str, id: &str) -> Result<Vec<String>> {
        let rows = c.query("SELECT grantee FROM shares WHERE owner = $1 AND object_id = $2 ORDER BY grantee", &[&owner, &id]).await.map_err(fail)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn object_row(r: &Row) -> Object {
    Object {
        owner: r.get(0),
        id: r.get(1),
        key_arn: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        created: r.get(4),
        file_name: r.get(5),
        shared_with: r.try_get(6).unwrap_or_default(),
    }
}

fn upload_row(r: &Row) -> Upload {
    Upload {
        id: r.get(0),
        owner: r.get(1),
        object_id: r.get(2),
        store_upload_id: r.get(3),
        part_bytes: r.get::<_, i64>(4) as u64,
        created: r.get(5),
        touched: r.get(6),
    }
}

const UPLOAD_COLUMNS: &str = "id, owner, object_id, store_upload_id, part_bytes, created, touched";
const AUDIT_COLUMNS: &str = "seq, at, instance, event, user_name, owner, object_id, key_arn, decision, reason, target";

fn audit_row(r: &Row) -> AuditRecord {
    AuditRecord {
        seq: r.get(0),
        at: r.get(1),
        instance: r.get(2),
        event: r.get(3),
        user: r.get(4),
        owner: r.get(5),
        object: r.get(6),
        key_arn: r.get(7),
        decision: r.get(8),
        reason: r.get(9),
        target: r.get(10),
    }
}

const INSERT_OBJECT: &str = "INSERT INTO objects (owner, id, key_arn, size, created, file_name) VALUES ($1, $2, $3, $4, $5, $6)";

fn object_params(o: &Object) -> (i64, [&(dyn tokio_postgres::types::ToSql + Sync); 5]) {
    (o.size as i64, [&o.owner, &o.id, &o.key_arn, &o.created, &o.file_name])
}

#[async_trait::async_trait]
impl Metadata for Postgres {
    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(fail)?;
        Ok(())
    }

    async fn insert(&self, o: &Object) -> Result<()> {
        let (size, [owner, id, arn, created, file]) = object_params(o);
        self.client().await?.execute(INSERT_OBJECT, &[owner, id, arn, &size, created, file]).await.map_err(fail)?;
        Ok(())
    }

    async fn exists(&self, owner: &str, id: &str) -> Result<bool> {
        let r = self.client().await?.query_opt("SELECT 1 FROM objects WHERE owner = $1 AND id = $2", &[&owner, &id]).await.map_err(fail)?;
        Ok(r.is_some())
    }

    async fn get(&self, owner: &str, id: &str) -> Result<Option<Object>> {
        let c = self.client().await?;
        let r = c
            .query_opt("SELECT owner, id, key_arn, size, created, file_name FROM objects WHERE owner = $1 AND id = $2", &[&owner, &id])
            .await
            .map_err(fail)?;
        match r {
            Some(r) => Ok(Some(Object { shared_with: Self::shared_with(&c, owner, id).await?, ..object_row(&r) })),
            None => Ok(None),
        }
    }

    async fn list_for(&self, user: &str) -> Result<Vec<Object>> {
        // One statement: the objects and, for each, who it is shared with.
        let rows = self
            .client()
            .await?
            .query(
                "SELECT o.owner, o.id, o.key_arn, o.size, o.created, o.file_name,
                     ARRAY(SELECT s.grantee FROM shares s WHERE s.owner = o.owner AND s.object_id = o.id ORDER BY s.grantee)
                 FROM objects o
                 WHERE o.owner = $1 OR EXISTS (SELECT 1 FROM shares s WHERE s.owner = o.owner AND s.object_id = o.id AND s.grantee = $1)
                 ORDER BY o.created DESC, o.owner, o.id",
                &[&user],
            )
            .await
            .map_err(fail)?;
        Ok(rows.iter().map(object_row).collect())
    }

    async fn all_keys(&self) -> Result<Vec<(String, String)>> {
        let rows = self.client().await?.query("SELECT owner, id FROM objects", &[]).await.map_err(fail)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<bool> {
        let n = self.client().await?.execute("DELETE FROM objects WHERE owner = $1 AND id = $2", &[&owner, &id]).await.map_err(fail)?;
        Ok(n == 1)
    }

    async fn share(&self, owner: &str, id: &str, user: &str, now: f64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO shares (owner, object_id, grantee, granted) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&owner, &id, &user, &now],
            )
            .await
            .map_err(fail)?;
        Ok(n == 1)
    }

    async fn unshare(&self, owner: &str, id: &str, user: &str) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute("DELETE FROM shares WHERE owner = $1 AND object_id = $2 AND grantee = $3", &[&owner, &id, &user])
            .await
            .map_err(fail)?;
        Ok(n == 1)
    }

    async fn shares(&self, owner: &str, id: &str) -> Result<Vec<(String, f64)>> {
        let rows = self
            .client()
            .await?
            .query("SELECT grantee, granted FROM shares WHERE owner = $1 AND object_id = $2 ORDER BY grantee", &[&owner, &id])
            .await
            .map_err(fail)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn insert_upload(&self, u: &Upload) -> Result<()> {
        let part = u.part_bytes as i64;
        self.client()
            .await?
            .execute(
                "INSERT INTO uploads (id, owner, object_id, store_upload_id, part_bytes, created, touched) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&u.id, &u.owner, &u.object_id, &u.store_upload_id, &part, &u.created, &u.touched],
            )
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let r = self.client().await?.query_opt(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"), &[&id]).await.map_err(fail)?;
        Ok(r.as_ref().map(upload_row))
    }

    async fn touch_upload(&self, id: &str, now: f64) -> Result<()> {
        self.client().await?.execute("UPDATE uploads SET touched = $2 WHERE id = $1", &[&id, &now]).await.map_err(fail)?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        Ok(self.client().await?.execute("DELETE FROM uploads WHERE id = $1", &[&id]).await.map_err(fail)? == 1)
    }

    async fn uploads(&self) -> Result<Vec<Upload>> {
        let rows = self.client().await?.query(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY created, id"), &[]).await.map_err(fail)?;
        Ok(rows.iter().map(upload_row).collect())
    }

    async fn count_uploads(&self, owner: &str) -> Result<(usize, usize)> {
        let r = self
            .client()
            .await?
            .query_one("SELECT COUNT(*) FILTER (WHERE owner = $1), COUNT(*) FROM uploads", &[&owner])
            .await
            .map_err(fail)?;
        Ok((r.get::<_, i64>(0) as usize, r.get::<_, i64>(1) as usize))
    }

    async fn finish_upload(&self, upload_id: &str, o: &Object) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        if tx.execute("DELETE FROM uploads WHERE id = $1", &[&upload_id]).await.map_err(fail)? != 1 {
            return Ok(false);
        }
        let (size, [owner, id, arn, created, file]) = object_params(o);
        tx.execute(INSERT_OBJECT, &[owner, id, arn, &size, created, file]).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(true)
    }

    async fn create_session(&self, key: &SessionKey, user: &str, csrf: &str, expires: f64) -> Result<()> {
        let id = &key.0[..];
        self.client()
            .await?
            .execute("INSERT INTO sessions (id_hash, user_name, csrf, expires) VALUES ($1, $2, $3, $4)", &[&id, &user, &csrf, &expires])
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn session(&self, key: &SessionKey, now: f64) -> Result<Option<(String, String)>> {
        let id = &key.0[..];
        let r = self
            .client()
            .await?
            .query_opt("SELECT user_name, csrf FROM sessions WHERE id_hash = $1 AND expires > $2", &[&id, &now])
            .await
            .map_err(fail)?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<()> {
        let id = &key.0[..];
        self.client().await?.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id]).await.map_err(fail)?;
        Ok(())
    }

    async fn purge_sessions(&self, now: f64) -> Result<u64> {
        self.client().await?.execute("DELETE FROM sessions WHERE expires <= $1", &[&now]).await.map_err(fail)
    }

    async fn take(&self, name: &str, bucket: Bucket, take: Take) -> Result<std::result::Result<(), Duration>> {
        let c = self.client().await?;
        // One clock for every instance: the database's.
        if take == Take::One {
            // Refill and spend in one statement (the row is locked while it runs).
            let spent = c
                .query_opt(
                    "INSERT INTO rate_buckets AS b (name, tokens, at) VALUES ($1, $3::float8 - 1, extract(epoch FROM clock_timestamp())::float8)
                     ON CONFLICT (name) DO UPDATE SET
                         tokens = LEAST($3::float8, b.tokens + (extract(epoch FROM clock_timestamp())::float8 - b.at) * $2::float8) - 1,
                         at = extract(epoch FROM clock_timestamp())::float8
                     WHERE LEAST($3::float8, b.tokens + (extract(epoch FROM clock_timestamp())::float8 - b.at) * $2::float8) >= 1
                     RETURNING tokens",
                    &[&name, &bucket.rate, &bucket.burst],
                )
                .await
                .map_err(fail)?;
            if spent.is_some() {
                return Ok(Ok(()));
            }
        }
        let tokens: f64 = c
            .query_opt(
                "SELECT LEAST($2::float8, tokens + (extract(epoch FROM clock_timestamp())::float8 - at) * $3::float8) FROM rate_buckets WHERE name = $1",
                &[&name, &bucket.burst, &bucket.rate],
            )
            .await
            .map_err(fail)?
            .map(|r| r.get(0))
            .unwrap_or(bucket.burst);
        // A spend that found no token is refused even if one has grown since.
        if take == Take::Peek && tokens >= 1.0 {
            return Ok(Ok(()));
        }
        Ok(Err(Duration::from_secs_f64(((1.0 - tokens) / bucket.rate).max(0.001))))
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        // One statement (one round trip, one commit) for the whole batch.
        let text = |f: fn(&AuditRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
        let opt = |f: fn(&AuditRecord) -> Option<&str>| records.iter().map(f).collect::<Vec<Option<&str>>>();
        let at: Vec<f64> = records.iter().map(|r| r.at).collect();
        let (instance, event, user) = (text(|r| &r.instance), text(|r| &r.event), text(|r| &r.user));
        let (owner, object, arn) = (opt(|r| r.owner.as_deref()), opt(|r| r.object.as_deref()), opt(|r| r.key_arn.as_deref()));
        let (decision, reason, target) = (opt(|r| r.decision.as_deref()), opt(|r| r.reason.as_deref()), opt(|r| r.target.as_deref()));
        self.client()
            .await?
            .execute(
                "INSERT INTO audit (at, instance, event, user_name, owner, object_id, key_arn, decision, reason, target)
                 SELECT * FROM UNNEST($1::float8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
                &[&at, &instance, &event, &user, &owner, &object, &arn, &decision, &reason, &target],
            )
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = q.limit as i64;
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 AND at >= $2 AND ($3::float8 IS NULL OR at < $3)
                     AND ($4::text IS NULL OR user_name = $4) AND ($5::text IS NULL OR owner = $5) AND ($6::text IS NULL OR object_id = $6)
                     ORDER BY seq LIMIT $7"
                ),
                &[&q.after, &q.since, &q.until, &q.user, &q.owner, &q.object, &limit],
            )
            .await
            .map_err(fail)?;
        Ok(rows.iter().map(audit_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::tests::{block_on, object, suite};

    /// A scratch PostgreSQL server (tests/interop/pg_scratch.py) for as long as this lives.
    pub struct Scratch {
        child: std::process::Child,
        pub url: String,
        pub ca: PathBuf,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.wait();
        }
    }

    pub fn scratch() -> Scratch {
        use std::io::BufRead;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/pg_scratch.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"ready"), "pg_scratch.py: {line:?}");
        Scratch { url: words[1].to_owned(), ca: PathBuf::from(words[2]), child }
    }

    fn config(url: &str, ca: Option<&PathBuf>) -> PostgresConfig {
        PostgresConfig { url: url.to_owned(), ca: ca.cloned(), pool: 4 }
    }

    /// `url` with another database name (each test its own).
    fn with_db(url: &str, name: &str) -> String {
        let (base, _) = url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }

    async fn create_db(s: &Scratch, name: &str) -> String {
        let admin = Postgres::open(&config(&s.url, None)).await.unwrap();
        admin.client().await.unwrap().batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        with_db(&s.url, name)
    }

    #[test]
    #[ignore = "needs PostgreSQL's server binaries (make test installs them)"]
    fn postgres_passes_the_shared_suite_over_tls_and_refuses_what_it_must() {
        let s = scratch();
        block_on(async {
            let url = create_db(&s, "suite").await;
            // TLS, verified against the CA: the suite.
            let db = Postgres::open(&config(&url, Some(&s.ca))).await.unwrap();
            suite(&db).await;
            // TLS asked for in the URL but no CA to verify with: refused before connecting.
            let e = Postgres::open(&config(&format!("{url}?sslmode=require"), None)).await.err().unwrap();
            assert!(e.contains("database_ca"), "{e}");
            // A CA that did not sign the server's certificate: no connection.
            let other = std::env::temp_dir().join(format!("other-ca-{}.pem", std::process::id()));
            std::fs::write(&other, rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap().cert.pem()).unwrap();
            let e = Postgres::open(&config(&url, Some(&other))).await.err().unwrap();
            assert!(!e.contains("kms-test-password"), "no password in messages: {e}");
            let _ = std::fs::remove_file(other);
            // A wrong password, and a message that does not repeat it.
            let wrong = url.replace("kms-test-password", "wrong-password");
            let e = Postgres::open(&config(&wrong, None)).await.err().unwrap();
            assert!(!e.contains("wrong-password"), "{e}");
        });
    }

    #[test]
    #[ignore = "needs PostgreSQL's server binaries (make test installs them)"]
    fn migrations_from_empty_from_the_previous_version_and_concurrently() {
        let s = scratch();
        block_on(async {
            // From the previous version and the one before, with data: kept, and the new tables there.
            let url = create_db(&s, "previous").await;
            let db = Postgres::open(&config(&url, None)).await.unwrap();
            let undo = |v: i32, tables: &str| format!("DROP TABLE {tables}; DELETE FROM kms_envelope_schema WHERE version = {v};");
            db.client().await.unwrap().batch_execute(&undo(4, "audit")).await.unwrap();
            db.insert(&object("alice", "kept", 1.0)).await.unwrap();
            assert_eq!(db.migrate(VERSION).await.unwrap(), VERSION - 1, "found at the previous version");
            let record = crate::gateway::meta::AuditRecord { at: 1.0, instance: "i".into(), event: "decision".into(), user: "alice".into(), ..Default::default() };
            db.append_audit(&[record]).await.unwrap();
            db.create_session(&crate::gateway::meta::SessionKey([7; 32]), "alice", "c", 9.0).await.unwrap();
            let back_to_1 = [undo(4, "audit"), undo(3, "sessions, rate_buckets"), undo(2, "uploads")].concat();
            db.client().await.unwrap().batch_execute(&back_to_1).await.unwrap();
            assert_eq!(db.migrate(VERSION).await.unwrap(), 1, "found at version 1");
            assert!(db.exists("alice", "kept").await.unwrap());
            db.insert_upload(&crate::gateway::meta::tests::upload("u", "alice", "o")).await.unwrap();
            assert_eq!(db.migrate(VERSION).await.unwrap(), VERSION, "nothing left to apply");

            // Eight instances starting at once on an empty database: each version applied once.
            let url = create_db(&s, "concurrent").await;
            let c = config(&url, None);
            let opens = (0..8).map(|_| Postgres::open(&c));
            let dbs: Vec<_> = futures_util::future::join_all(opens).await.into_iter().map(|r| r.unwrap()).collect();
            let c = dbs[0].client().await.unwrap();
            let versions: Vec<i32> = c.query("SELECT version FROM kms_envelope_schema ORDER BY version", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
            assert_eq!(versions, (1..=VERSION).collect::<Vec<_>>());

            // A database a newer gateway migrated is refused.
            c.execute("INSERT INTO kms_envelope_schema (version) VALUES ($1)", &[&(VERSION + 1)]).await.unwrap();
            let e = Postgres::open(&config(&url, None)).await.err().unwrap();
            assert!(e.contains("newer than this gateway"), "{e}");
        });
    }
}
