//! encrypt, decrypt and inspect, streaming in 1 MiB reads.

use std::io::Read;
use std::sync::Arc;

use kms_envelope_server::aead::AwsLcAead;

use kms_envelope::{
    AlgorithmSuite, Client, CommitmentPolicy, DecryptLimits, DecryptOptions, DecryptStatus, EncryptOptions, EncryptionContext,
    Error, ErrorCode, Header,
};
use serde_json::json;

use super::keyrings::{build_all, Kind};
use super::output::{io_err, open_input, Output};

/// Read size: memory stays at about three of these whatever the file size;
/// smaller reads cost more in calls than the AES-GCM itself.
const CHUNK: usize = 1 << 20;

/// The CLI's async runtime (KMS calls go through the AWS SDK, on tokio).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime"))
}

pub(super) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// `--kms-endpoint` / `--kms-region`.
pub struct KmsOptions {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl KmsOptions {
    fn factory(&self) -> impl Fn() -> super::keyrings::KmsFuture + '_ {
        move || {
            let (e, r) = (self.endpoint.clone(), self.region.clone());
            Box::pin(async move { crate::kms_client::Kms::new(e.as_deref(), r.as_deref()).await })
        }
    }
}

fn parse_context(pairs: &[String]) -> Result<EncryptionContext, Error> {
    let mut ctx = EncryptionContext::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("--context expects KEY=VALUE, got {p:?}")))?;
        if ctx.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(Error::new(ErrorCode::InvalidArgument, format!("--context key {k:?} given twice")));
        }
    }
    Ok(ctx)
}

fn read_chunk(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, Error> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("cannot read the input", e)),
        }
    }
}

/// The message options of `kms-envelope encrypt`.
pub struct EncryptArgs<'a> {
    pub context: &'a [String],
    pub required_context: &'a [String],
    pub frame_length: u32,
    pub suite: &'a str,
    pub max_encrypted_data_keys: u16,
}

pub fn encrypt(input: &str, output: &str, args: &EncryptArgs<'_>, specs: &[(Kind, String)], kms: &KmsOptions) -> Result<(), Error> {
    let mut encryption_context = parse_context(args.context)?;
    let required = parse_context(args.required_context)?;
    if let Some(k) = required.keys().find(|k| encryption_context.contains_key(*k)) {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{k:?} is given both as --context and as --required-context")));
    }
    let required_encryption_context_keys = required.keys().cloned().collect();
    encryption_context.extend(required);
    let opts = EncryptOptions {
        suite: AlgorithmSuite::parse(args.suite)?,
        frame_length: args.frame_length,
        encryption_context,
        plaintext_length: None,
        required_encryption_context_keys,
    };
    let keyring = block_on(build_all(specs, false, &kms.factory()))?;
    let mut src = open_input(input)?;
    let client = Client::new().with_aead(Arc::new(AwsLcAead)).with_max_encrypted_data_keys(Some(args.max_encrypted_data_keys));
    let mut enc = block_on(client.encryptor(keyring.as_ref(), &opts))?;
    let mut out = Output::create(output)?;
    let mut buf = vec![0u8; CHUNK];
    let mut sealed = Vec::with_capacity(2 * CHUNK);
    loop {
        let n = read_chunk(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        block_on(enc.update(&buf[..n], &mut sealed))?;
        out.write(&sealed)?;
        sealed.clear();
    }
    block_on(enc.finish(&mut sealed))?;
    out.write(&sealed)?;
    out.commit()
}

/// The options of `kms-envelope decrypt`.
pub struct DecryptArgs<'a> {
    pub context: &'a [String],
    pub max_encrypted_data_keys: u16,
    pub commitment_policy: &'a str,
    pub unsigned_only: bool,
}

pub fn decrypt(input: &str, output: &str, args: &DecryptArgs<'_>, specs: &[(Kind, String)], kms: &KmsOptions) -> Result<(), Error> {
    let client = Client::new()
        .with_aead(Arc::new(AwsLcAead))
        .with_commitment_policy(CommitmentPolicy::parse(args.commitment_policy)?)
        .with_max_encrypted_data_keys(Some(args.max_encrypted_data_keys));
    let opts = DecryptOptions { encryption_context: parse_context(args.context)?, refuse_signed: args.unsigned_only, ..DecryptOptions::default() };
    let keyring = block_on(build_all(specs, true, &kms.factory()))?;
    let mut src = open_input(input)?;
    let mut out = Output::create(output)?;
    let mut dec = client.decryptor(&opts);
    let mut buf = vec![0u8; CHUNK];
    let mut plain = Vec::with_capacity(2 * CHUNK);
    loop {
        let n = read_chunk(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        if block_on(dec.update(&buf[..n], &mut plain))? == DecryptStatus::NeedDataKey {
            block_on(dec.unwrap_data_key(keyring.as_ref()))?;
            block_on(dec.update(&[], &mut plain))?;
        }
        out.write(&plain)?;
        plain.clear();
    }
    dec.finish()?;
    out.commit()
}

/// Reads only as far as the end of the header.
pub fn inspect(input: &str) -> Result<(), Error> {
    let client = Client::new()
        .with_commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
        .with_limits(DecryptLimits { max_encrypted_data_keys: None, ..DecryptLimits::default() });
    let mut dec = client.decryptor(&DecryptOptions::default());
    let mut src = open_input(input)?;
    let mut buf = vec![0u8; CHUNK];
    let mut sink = Vec::new();
    let mut seen = Vec::new();
    loop {
        let n = read_chunk(&mut src, &mut buf)?;
        if n == 0 {
            return Err(Error::new(ErrorCode::Truncated, "the input ends inside the message header"));
        }
        seen.extend_from_slice(&buf[..n]);
        if block_on(dec.update(&buf[..n], &mut sink))? == DecryptStatus::NeedDataKey {
            break;
        }
    }
    let (h, header_len) = kms_envelope::parse_header(&seen)?;
    let v = header_json(&h, header_len);
    println!("{}", serde_json::to_string_pretty(&v).expect("JSON of a header"));
    Ok(())
}

fn header_json(h: &Header, header_len: usize) -> serde_json::Value {
    let edks: Vec<_> = h
        .encrypted_data_keys
        .iter()
        .map(|e| {
            json!({
                "provider_id": e.provider_id,
                "provider_info": String::from_utf8(e.provider_info.clone()).unwrap_or_else(|_| hex::encode(&e.provider_info)),
                "provider_info_hex": hex::encode(&e.provider_info),
                "ciphertext_length": e.ciphertext.len(),
                "ciphertext": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &e.ciphertext),
            })
        })
        .collect();
    json!({
        "version": h.version.byte(),
        "suite_id": format!("0x{:04X}", h.suite.id()),
        "message_id": hex::encode(&h.message_id),
        "encryption_context": h.encryption_context,
        "encrypted_data_keys": edks,
        "content_type": match h.content_type { kms_envelope::ContentType::Framed => "framed", kms_envelope::ContentType::NonFramed => "non-framed" },
        "frame_length": h.frame_length,
        "header_length": header_len,
        "commitment": h.suite.is_committing(),
        "signed": h.suite.is_signing(),
    })
}

/// Runs the local KMS on loopback until interrupted, for requests signed
/// with the credentials it keeps in its data directory.
pub fn local_kms(store: &super::LocalKmsArgs, listen: std::net::SocketAddr) -> Result<(), Error> {
    let kms = crate::localkms::LocalKms::open(&store.data_dir, &store.region).map_err(|e| Error::new(ErrorCode::Io, e))?;
    let credentials = crate::localkms::Credentials::load_or_create(&store.data_dir).map_err(|e| Error::new(ErrorCode::Io, e))?;
    let path = crate::localkms::Credentials::path(&store.data_dir);
    block_on(async move {
        let served = crate::localkms::serve(kms, credentials, listen, |addr| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "local KMS listening on http://{addr}");
            let _ = writeln!(out, "requests must be signed with the credentials in {} (AWS_SHARED_CREDENTIALS_FILE)", path.display());
            let _ = out.flush();
        });
        tokio::select! {
            r = served => r.map_err(|e| Error::new(ErrorCode::Io, format!("local KMS: {e}"))),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// `kms-envelope keys …` on the local KMS's data directory.
pub fn keys(store: &super::LocalKmsArgs, cmd: super::KeysCommand) -> Result<(), Error> {
    use super::KeysCommand as K;
    let kms = crate::localkms::LocalKms::open(&store.data_dir, &store.region).map_err(|e| Error::new(ErrorCode::Io, e))?;
    let call = |op: &str, req: serde_json::Value| kms.call(op, &req).map_err(|f| Error::new(ErrorCode::KmsError, f.to_string()));
    let arn_of = |v: &serde_json::Value| v["KeyMetadata"]["Arn"].as_str().unwrap_or_default().to_owned();
    match cmd {
        K::Create { spec, alias, description } => {
            let r = call("CreateKey", json!({ "KeySpec": spec, "KeyUsage": "ENCRYPT_DECRYPT", "Description": description }))?;
            if let Some(a) = alias {
                call("CreateAlias", json!({ "AliasName": alias_name(&a), "TargetKeyId": arn_of(&r) }))?;
            }
            println!("{}", arn_of(&r));
        }
        K::Rotate { alias, spec } => {
            let r = call("CreateKey", json!({ "KeySpec": spec, "KeyUsage": "ENCRYPT_DECRYPT", "Description": format!("rotation of {alias}") }))?;
            let name = alias_name(&alias);
            let exists = call("ListAliases", json!({}))?["Aliases"].as_array().map(|a| a.iter().any(|x| x["AliasName"] == name)).unwrap_or(false);
            call(if exists { "UpdateAlias" } else { "CreateAlias" }, json!({ "AliasName": name, "TargetKeyId": arn_of(&r) }))?;
            println!("{}", arn_of(&r));
        }
        K::List => {
            let aliases = call("ListAliases", json!({}))?;
            for k in call("ListKeys", json!({}))?["Keys"].as_array().cloned().unwrap_or_default() {
                let d = call("DescribeKey", json!({ "KeyId": k["KeyId"] }))?;
                let m = &d["KeyMetadata"];
                let names: Vec<&str> = aliases["Aliases"]
                    .as_array()
                    .map(|a| a.iter().filter(|x| x["TargetKeyId"] == k["KeyId"]).filter_map(|x| x["AliasName"].as_str()).collect())
                    .unwrap_or_default();
                println!("{}\t{}\t{}\t{}", m["Arn"].as_str().unwrap_or(""), m["KeySpec"].as_str().unwrap_or(""), m["KeyState"].as_str().unwrap_or(""), names.join(","));
            }
        }
        K::Disable { key } => drop(call("DisableKey", json!({ "KeyId": key }))?),
        K::Enable { key } => drop(call("EnableKey", json!({ "KeyId": key }))?),
        K::ScheduleDeletion { key, days } => {
            let r = call("ScheduleKeyDeletion", json!({ "KeyId": key, "PendingWindowInDays": days }))?;
            println!("{} pending deletion", r["KeyId"].as_str().unwrap_or(""));
        }
        K::CancelDeletion { key } => drop(call("CancelKeyDeletion", json!({ "KeyId": key }))?),
        K::PublicKey { key, output } => {
            use base64::Engine;
            let r = call("GetPublicKey", json!({ "KeyId": key }))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(r["PublicKey"].as_str().unwrap_or_default())
                .map_err(|_| Error::new(ErrorCode::KmsResponseInvalid, "bad public key"))?;
            std::fs::write(&output, der).map_err(|e| io_err(&format!("cannot write {}", output.display()), e))?;
            println!("{}", r["KeyId"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

fn alias_name(a: &str) -> String {
    if a.starts_with("alias/") { a.to_owned() } else { format!("alias/{a}") }
}

/// `kms-envelope serve --config FILE`.
pub fn serve(args: super::ServeArgs) -> Result<(), Error> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file or shipper.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let bad = |e: String| Error::new(ErrorCode::InvalidArgument, e);
    let listen = args.listen.unwrap_or_else(|| "127.0.0.1:8080".parse().expect("address"));
    let (mut cfg, banner) = match &args.config {
        Some(path) => (crate::gateway::Config::load(path).map_err(bad)?, vec![]),
        None => {
            let (cfg, logins) = crate::gateway::demo::prepare(&args.data_dir, listen).map_err(bad)?;
            let mut banner = vec![format!("demo logins (kept in {}):", args.data_dir.join("demo-users.json").display())];
            banner.extend(logins.iter().map(|(u, t)| format!("  user {u:<6} token {t}")));
            (cfg, banner)
        }
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(w) = args.web_dir {
        cfg.web_dir = Some(w);
    }
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert;
        cfg.tls_key = args.tls_key;
    }
    cfg.dev_tls |= args.dev_tls;
    if let Some(b) = args.s3_bucket {
        cfg.storage = crate::gateway::config::StorageKind::S3;
        cfg.s3_bucket = Some(b);
        cfg.s3_endpoint = args.s3_endpoint.or(cfg.s3_endpoint);
        cfg.s3_path_style |= args.s3_path_style;
    }
    cfg.check().map_err(bad)?;
    block_on(crate::gateway::serve(cfg, banner)).map_err(|e| Error::new(ErrorCode::Io, e))
}
