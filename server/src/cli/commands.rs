//! encrypt, decrypt and inspect, streaming in 64 KiB reads.

use std::io::Read;

use futures::executor::block_on;
use kms_envelope::{
    AlgorithmSuite, Client, CommitmentPolicy, DecryptLimits, DecryptOptions, DecryptStatus, EncryptOptions, EncryptionContext,
    Error, ErrorCode, Header,
};
use serde_json::json;

use super::keyrings::{build_all, Kind};
use super::output::{io_err, open_input, Output};

const CHUNK: usize = 1 << 16;

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

pub fn encrypt(
    input: &str,
    output: &str,
    context: &[String],
    frame_length: u32,
    suite: &str,
    specs: &[(Kind, String)],
) -> Result<(), Error> {
    let opts = EncryptOptions {
        suite: AlgorithmSuite::parse(suite)?,
        frame_length,
        encryption_context: parse_context(context)?,
    };
    let keyring = build_all(specs, false)?;
    let mut src = open_input(input)?;
    let mut enc = block_on(Client::new().encryptor(keyring.as_ref(), &opts))?;
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

pub fn decrypt(
    input: &str,
    output: &str,
    context: &[String],
    max_edks: u16,
    policy: &str,
    specs: &[(Kind, String)],
) -> Result<(), Error> {
    let client = Client::new()
        .with_commitment_policy(CommitmentPolicy::parse(policy)?)
        .with_max_encrypted_data_keys(Some(max_edks));
    let opts = DecryptOptions { required_encryption_context: parse_context(context)? };
    let keyring = build_all(specs, true)?;
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
