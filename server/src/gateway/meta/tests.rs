//! One behaviour for every database behind [`Metadata`]: `suite` runs
//! against SQLite here and against PostgreSQL in `postgres`'s tests.

use std::time::Duration;

use super::{AuditQuery, AuditRecord, Bucket, Kind, Metadata, Object, SessionKey, Take, Upload};

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

pub fn object(owner: &str, id: &str, created: f64) -> Object {
    Object { id: id.into(), owner: owner.into(), key_arn: "arn:k".into(), size: 1, created, file_name: None, shared_with: vec![] }
}

pub fn upload(id: &str, owner: &str, object: &str) -> Upload {
    Upload { id: id.into(), owner: owner.into(), object_id: object.into(), store_upload_id: format!("s3-{id}"), part_bytes: 8 << 20, created: 1.0, touched: 1.0 }
}

fn ids(objects: &[Object]) -> Vec<String> {
    objects.iter().map(|o| format!("{}/{}", o.owner, o.id)).collect()
}

/// Every method, the conflicts the database must enforce, and one id
/// recorded by many callers at once.
pub async fn suite(db: &dyn Metadata) {
    objects_and_shares(db).await;
    direct_uploads(db).await;
    one_winner(db).await;
    sessions(db).await;
    buckets(db).await;
    audit(db).await;
}

/// Audit records: appended in batches, numbered in order, read back by
/// time, caller, owner and object, a page at a time.
async fn audit(db: &dyn Metadata) {
    let rec = |at: f64, user: &str, owner: &str, object: &str| AuditRecord {
        at,
        instance: "gw-1".into(),
        event: "decision".into(),
        user: user.into(),
        owner: Some(owner.into()),
        object: Some(object.into()),
        key_arn: Some("arn:k".into()),
        decision: Some("allow".into()),
        reason: Some("owner".into()),
        ..Default::default()
    };
    db.append_audit(&[rec(10.0, "alice", "alice", "a"), rec(20.0, "bob", "alice", "a"), rec(30.0, "bob", "bob", "b")]).await.unwrap();
    let share = AuditRecord { at: 40.0, instance: "gw-2".into(), event: "share".into(), user: "alice".into(), owner: Some("alice".into()), object: Some("a".into()), target: Some("bob".into()), ..Default::default() };
    db.append_audit(std::slice::from_ref(&share)).await.unwrap();
    db.append_audit(&[]).await.unwrap();
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery { limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let all = db.audit(&q(|_| {})).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "numbered in order");
    assert_eq!(AuditRecord { seq: 0, ..all[3].clone() }, share, "read back as written");
    assert_eq!(AuditRecord { seq: 0, ..all[0].clone() }, rec(10.0, "alice", "alice", "a"));
    let at = |rs: Vec<AuditRecord>| rs.iter().map(|r| r.at).collect::<Vec<_>>();
    assert_eq!(at(db.audit(&q(|q| q.since = 20.0)).await.unwrap()), [20.0, 30.0, 40.0], "since is inclusive");
    assert_eq!(at(db.audit(&q(|q| q.until = Some(30.0))).await.unwrap()), [10.0, 20.0], "until is exclusive");
    assert_eq!(at(db.audit(&q(|q| q.user = Some("bob".into()))).await.unwrap()), [20.0, 30.0]);
    assert_eq!(at(db.audit(&q(|q| q.owner = Some("alice".into()))).await.unwrap()), [10.0, 20.0, 40.0]);
    assert_eq!(at(db.audit(&q(|q| q.object = Some("b".into()))).await.unwrap()), [30.0]);
    let first = db.audit(&q(|q| q.limit = 2)).await.unwrap();
    assert_eq!(at(first.clone()), [10.0, 20.0]);
    let after = first[1].seq;
    let rest = db.audit(&AuditQuery { limit: 2, after, ..Default::default() }).await.unwrap();
    assert_eq!(at(rest), [30.0, 40.0], "the next page");
}

async fn sessions(db: &dyn Metadata) {
    let (a, b) = (SessionKey([1; 32]), SessionKey([2; 32]));
    db.create_session(&a, "alice", "csrf-a", 100.0).await.unwrap();
    db.create_session(&b, "bob", "csrf-b", 200.0).await.unwrap();
    assert_eq!(db.create_session(&a, "mallory", "x", 300.0).await.unwrap_err().kind, Kind::Conflict, "an id is never reused");
    assert_eq!(db.session(&a, 50.0).await.unwrap(), Some(("alice".into(), "csrf-a".into())));
    assert_eq!(db.session(&a, 100.0).await.unwrap(), None, "expired at its expiry");
    assert_eq!(db.session(&SessionKey([3; 32]), 0.0).await.unwrap(), None);
    assert_eq!(db.purge_sessions(150.0).await.unwrap(), 1);
    assert_eq!(db.session(&b, 150.0).await.unwrap(), Some(("bob".into(), "csrf-b".into())));
    db.delete_session(&b).await.unwrap();
    assert_eq!(db.session(&b, 150.0).await.unwrap(), None);
}

/// Token buckets: a burst, then refusals with a wait; peeking spends
/// nothing; refill; and one budget for callers racing each other.
async fn buckets(db: &dyn Metadata) {
    let slow = Bucket { rate: 0.001, burst: 3.0 };
    for _ in 0..3 {
        assert_eq!(db.take("decrypt:alice", slow, Take::Peek).await.unwrap(), Ok(()));
        assert_eq!(db.take("decrypt:alice", slow, Take::One).await.unwrap(), Ok(()));
    }
    let wait = db.take("decrypt:alice", slow, Take::One).await.unwrap().unwrap_err();
    assert!(wait > Duration::from_secs(100), "{wait:?}");
    assert!(db.take("decrypt:alice", slow, Take::Peek).await.unwrap().is_err());
    assert_eq!(db.take("decrypt:bob", slow, Take::One).await.unwrap(), Ok(()), "one bucket per name");

    let fast = Bucket { rate: 20.0, burst: 1.0 };
    assert_eq!(db.take("auth:bob@10.0.0.1", fast, Take::One).await.unwrap(), Ok(()));
    let wait = db.take("auth:bob@10.0.0.1", fast, Take::One).await.unwrap().unwrap_err();
    assert!(wait <= Duration::from_millis(60), "{wait:?}");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(db.take("auth:bob@10.0.0.1", fast, Take::One).await.unwrap(), Ok(()), "refilled");

    let five = Bucket { rate: 0.001, burst: 5.0 };
    let tries = (0..20).map(|_| db.take("decrypt:carol", five, Take::One));
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(Ok(())))).count(), 5, "{results:?}");
}

async fn objects_and_shares(db: &dyn Metadata) {
    db.ping().await.unwrap();
    // Ids are per owner; the same id twice for one owner is a conflict.
    db.insert(&object("alice", "report", 1.0)).await.unwrap();
    db.insert(&object("bob", "report", 2.0)).await.unwrap();
    assert_eq!(db.insert(&object("bob", "report", 3.0)).await.unwrap_err().kind, Kind::Conflict);
    // Every field round-trips, sizes past 4 GiB and file names included.
    let big = Object { size: 5 << 40, file_name: Some("ünïcode ✓.pdf".into()), key_arn: "arn:aws:kms:eu-west-1:1:key/x".into(), ..object("alice", "big", 3.5) };
    db.insert(&big).await.unwrap();
    assert_eq!(db.get("alice", "big").await.unwrap().as_ref(), Some(&big));
    assert_eq!(db.get("alice", "nothing").await.unwrap(), None);
    assert!(db.exists("bob", "report").await.unwrap() && !db.exists("carol", "report").await.unwrap());

    // Shares: granted once, listed, revoked.
    assert!(db.share("alice", "report", "carol", 10.0).await.unwrap());
    assert!(!db.share("alice", "report", "carol", 11.0).await.unwrap(), "granted once");
    assert!(db.share("alice", "report", "bob", 12.0).await.unwrap());
    assert_eq!(db.get("alice", "report").await.unwrap().unwrap().shared_with, ["bob", "carol"]);
    assert_eq!(db.shares("alice", "report").await.unwrap(), [("bob".to_owned(), 12.0), ("carol".to_owned(), 10.0)]);
    assert_eq!(ids(&db.list_for("carol").await.unwrap()), ["alice/report"]);
    // Newest first: bob's own object and the one shared with him.
    assert_eq!(ids(&db.list_for("bob").await.unwrap()), ["bob/report", "alice/report"]);
    assert_eq!(ids(&db.list_for("alice").await.unwrap()), ["alice/big", "alice/report"]);
    assert!(db.unshare("alice", "report", "carol").await.unwrap());
    assert!(!db.unshare("alice", "report", "carol").await.unwrap());
    assert!(db.list_for("carol").await.unwrap().is_empty());

    // Deleting an object takes its shares: an object later given the same id starts unshared.
    let mut keys = db.all_keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, [("alice".to_owned(), "big".to_owned()), ("alice".into(), "report".into()), ("bob".into(), "report".into())]);
    assert!(db.delete("alice", "report").await.unwrap());
    assert!(!db.delete("alice", "report").await.unwrap());
    db.insert(&object("alice", "report", 20.0)).await.unwrap();
    assert!(db.get("alice", "report").await.unwrap().unwrap().shared_with.is_empty());
    assert!(db.shares("alice", "report").await.unwrap().is_empty());
    assert!(db.list_for("bob").await.unwrap().iter().all(|o| o.owner == "bob"));
}

async fn direct_uploads(db: &dyn Metadata) {
    db.insert_upload(&upload("u1", "alice", "o1")).await.unwrap();
    assert_eq!(db.insert_upload(&upload("u2", "alice", "o1")).await.unwrap_err().kind, Kind::Conflict, "one upload per object id");
    assert_eq!(db.insert_upload(&upload("u1", "bob", "o9")).await.unwrap_err().kind, Kind::Conflict, "one upload per id");
    db.insert_upload(&upload("u3", "bob", "o1")).await.unwrap();
    assert_eq!(db.upload("u1").await.unwrap(), Some(upload("u1", "alice", "o1")));
    assert_eq!(db.upload("nope").await.unwrap(), None);
    assert_eq!(db.count_uploads("alice").await.unwrap(), (1, 2));
    assert_eq!(db.count_uploads("carol").await.unwrap(), (0, 2));
    db.touch_upload("u1", 99.0).await.unwrap();
    assert_eq!(db.upload("u1").await.unwrap().unwrap().touched, 99.0);
    assert_eq!(db.uploads().await.unwrap().iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["u1", "u3"]);

    // An upload becomes an object once, in one transaction.
    assert!(db.finish_upload("u1", &object("alice", "o1", 30.0)).await.unwrap());
    assert!(db.exists("alice", "o1").await.unwrap() && db.upload("u1").await.unwrap().is_none());
    assert!(!db.finish_upload("u1", &object("alice", "o2", 31.0)).await.unwrap(), "an ended upload makes no object");
    assert!(!db.exists("alice", "o2").await.unwrap());
    // Its id taken meanwhile: a conflict, and the upload stays as it was.
    db.insert(&object("bob", "o1", 32.0)).await.unwrap();
    assert_eq!(db.finish_upload("u3", &object("bob", "o1", 33.0)).await.unwrap_err().kind, Kind::Conflict);
    assert!(db.upload("u3").await.unwrap().is_some(), "rolled back");
    assert!(db.delete_upload("u3").await.unwrap());
    assert!(!db.delete_upload("u3").await.unwrap());
    assert_eq!(db.count_uploads("bob").await.unwrap(), (0, 0));
}

/// Many callers record one id at once: exactly one succeeds.
async fn one_winner(db: &dyn Metadata) {
    let tries = (0..8).map(|i| async move { db.insert(&object("carol", "race", i as f64)).await });
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.kind == Kind::Conflict));
    let finishes = (0..8).map(|i| async move {
        let u = upload(&format!("race-{i}"), "carol", &format!("f{i}"));
        db.insert_upload(&u).await.unwrap();
        db.finish_upload(&u.id, &object("carol", "finish-race", i as f64)).await
    });
    let results = futures_util::future::join_all(finishes).await;
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(true))).count(), 1, "{results:?}");
    assert_eq!(db.count_uploads("carol").await.unwrap().0, 7, "the losers' uploads remain, to be ended");
}
