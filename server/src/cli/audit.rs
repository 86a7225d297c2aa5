//! `kms-envelope audit`: the audit records of every instance sharing the
//! configured database, oldest first, as a table or as JSON lines.

use kms_envelope::{Error, ErrorCode};

use crate::gateway::{AuditQuery, AuditRecord};

/// Records read from the database per query.
const PAGE: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The gateway's configuration file (its database: database_url, or SQLite in data_dir).
    #[arg(long = "config", value_name = "FILE", required_unless_present = "data_dir")]
    pub config: Option<std::path::PathBuf>,
    /// Or the data directory of a gateway without database_url (e.g. `serve --demo`'s).
    #[arg(long = "data-dir", value_name = "DIR", conflicts_with = "config")]
    pub data_dir: Option<std::path::PathBuf>,
    /// From this time: RFC 3339 (2026-12-01T08:00:00Z) or an age (90s, 15m, 2h, 7d).
    #[arg(long = "since", value_name = "WHEN", default_value = "24h")]
    pub since: String,
    /// Up to this time (exclusive), in the same forms.
    #[arg(long = "until", value_name = "WHEN")]
    pub until: Option<String>,
    /// Only records of this caller.
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Only records about objects of this owner.
    #[arg(long = "owner", value_name = "USER")]
    pub owner: Option<String>,
    /// Only records about this object id.
    #[arg(long = "object", value_name = "ID")]
    pub object: Option<String>,
    /// At most this many records.
    #[arg(long = "limit", default_value_t = 100_000)]
    pub limit: usize,
    /// JSON lines (the fields of `audit_stdout`, with `seq`) instead of a table.
    #[arg(long = "json")]
    pub json: bool,
}

/// `WHEN` as seconds since the epoch: RFC 3339, or an age before `now`.
pub fn parse_when(when: &str, now: f64) -> Result<f64, Error> {
    let bad = || Error::new(ErrorCode::InvalidArgument, format!("{when:?} is neither an RFC 3339 time nor an age such as 15m, 2h or 7d"));
    let unit = |c: char| match c {
        's' => Some(1.0),
        'm' => Some(60.0),
        'h' => Some(3600.0),
        'd' => Some(86400.0),
        _ => None,
    };
    if let Some(scale) = when.chars().last().and_then(unit) {
        if let Ok(n) = when[..when.len() - 1].parse::<u32>() {
            return Ok(now - f64::from(n) * scale);
        }
    }
    let t = aws_smithy_types::DateTime::from_str(when, aws_smithy_types::date_time::Format::DateTime).map_err(|_| bad())?;
    Ok(t.as_secs_f64())
}

pub fn run(args: AuditArgs) -> Result<(), Error> {
    let bad = |e: String| Error::new(ErrorCode::InvalidArgument, e);
    let config = match (&args.config, args.data_dir) {
        (Some(path), _) => crate::gateway::Config::load(path).map_err(bad)?,
        (None, dir) => crate::gateway::Config::defaults_in(dir.unwrap_or_default()),
    };
    let now = crate::localkms::now();
    let mut q = AuditQuery {
        since: parse_when(&args.since, now)?,
        until: args.until.as_deref().map(|w| parse_when(w, now)).transpose()?,
        user: args.user,
        owner: args.owner,
        object: args.object,
        after: 0,
        limit: 0,
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    if !args.json {
        write_line(&mut out, &format!("{:<24} {:<20} {:<12} {:<8} {:<32} {}", "TIME", "INSTANCE", "USER", "WHAT", "OBJECT", "REASON / TARGET"))?;
    }
    while printed < args.limit {
        q.limit = PAGE.min(args.limit - printed);
        let page = super::commands::block_on(crate::gateway::audit_records(&config, &q)).map_err(|e| Error::new(ErrorCode::Io, e))?;
        for r in &page {
            write_line(&mut out, &if args.json { json_line(r) } else { table_line(r) })?;
        }
        printed += page.len();
        match page.last() {
            Some(last) if page.len() == q.limit => q.after = last.seq,
            _ => return Ok(()),
        }
    }
    eprintln!("kms-envelope: stopped at --limit {}: narrow --since/--until for the rest", args.limit);
    Ok(())
}

fn write_line(out: &mut impl std::io::Write, line: &str) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|e| super::output::io_err("cannot write the records", e))
}

fn json_line(r: &AuditRecord) -> String {
    let mut v = crate::gateway::audit_json(r);
    v["seq"] = r.seq.into();
    v.to_string()
}

fn table_line(r: &AuditRecord) -> String {
    let object = format!("{}/{}", r.owner.as_deref().unwrap_or("-"), r.object.as_deref().unwrap_or("-"));
    let (what, why) = match r.event.as_str() {
        "decision" => (r.decision.clone().unwrap_or_default(), format!("{} {}", r.reason.as_deref().unwrap_or(""), r.key_arn.as_deref().unwrap_or(""))),
        event => (event.to_owned(), r.target.clone().unwrap_or_default()),
    };
    format!("{:<24} {:<20} {:<12} {:<8} {:<32} {}", crate::localkms::rfc3339(r.at), r.instance, r.user, what, object, why.trim())
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn times_and_ages() {
        assert_eq!(parse_when("2026-12-01T08:00:00Z", 0.0).unwrap(), 1_796_112_000.0);
        assert_eq!(parse_when("2026-12-01T08:00:00.5Z", 0.0).unwrap(), 1_796_112_000.5);
        assert_eq!(parse_when("90s", 1000.0).unwrap(), 910.0);
        assert_eq!(parse_when("15m", 1000.0).unwrap(), 100.0);
        assert_eq!(parse_when("2h", 10_000.0).unwrap(), 2800.0);
        assert_eq!(parse_when("1d", 100_000.0).unwrap(), 13_600.0);
        for bad in ["", "h", "-1h", "yesterday", "2026-12-01", "1.5h", "10y"] {
            assert_eq!(parse_when(bad, 0.0).unwrap_err().code(), kms_envelope::ErrorCode::InvalidArgument, "{bad:?}");
        }
    }
}
