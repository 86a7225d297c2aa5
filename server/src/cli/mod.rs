//! The command line: argument parsing and the commands.

mod audit;
mod commands;
mod keyrings;
mod output;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use kms_envelope::{Error, ErrorCode};

/// Client-side envelope encryption in the AWS Encryption SDK message format.
#[derive(Parser, Debug)]
#[command(name = "kms-envelope", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Keyring options shared by encrypt and decrypt. Repeatable; the first one
/// given is the generator.
#[derive(clap::Args, Debug, Default)]
pub struct KeyringArgs {
    /// Raw RSA key: namespace=NS,name=N,public=PEM_FILE|private=PEM_FILE,padding=oaep-sha1|oaep-sha256|oaep-sha384|oaep-sha512|pkcs1
    #[arg(long = "raw-rsa", value_name = "SPEC")]
    pub raw_rsa: Vec<String>,
    /// Raw AES key: namespace=NS,name=N,key=FILE (16, 24 or 32 raw bytes)
    #[arg(long = "raw-aes", value_name = "SPEC")]
    pub raw_aes: Vec<String>,
    /// AWS KMS RSA key: arn=ARN[,public=FILE (DER or PEM)][,algorithm=RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1].
    /// Without public=, the public key comes from KMS GetPublicKey; decryption calls KMS Decrypt.
    #[arg(long = "kms-rsa", value_name = "SPEC")]
    pub kms_rsa: Vec<String>,
    /// KMS endpoint URL (e.g. the embedded local KMS); default: AWS's, from the standard configuration.
    #[arg(long = "kms-endpoint", value_name = "URL")]
    pub kms_endpoint: Option<String>,
    /// AWS region for KMS (default: the standard configuration; us-east-1 with --kms-endpoint).
    #[arg(long = "kms-region", value_name = "REGION")]
    pub kms_region: Option<String>,
}

/// Where the embedded local KMS keeps its keys.
#[derive(clap::Args, Debug)]
pub struct LocalKmsArgs {
    /// Data directory (keys encrypted at rest under DATA_DIR/master.key or $KMS_ENVELOPE_MASTER_KEY).
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./kms-envelope-data")]
    pub data_dir: std::path::PathBuf,
    /// Region in the key ARNs.
    #[arg(long = "region", default_value = "us-east-1")]
    pub region: String,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an RSA key (prints its ARN).
    Create {
        #[arg(long = "spec", default_value = "RSA_3072", value_parser = ["RSA_2048", "RSA_3072", "RSA_4096"])]
        spec: String,
        /// Point this alias (alias/NAME) at the new key.
        #[arg(long = "alias")]
        alias: Option<String>,
        #[arg(long = "description", default_value = "")]
        description: String,
    },
    /// List keys with their state and aliases.
    List,
    /// Create a new key and move the alias to it; older keys still decrypt.
    Rotate {
        #[arg(long = "alias")]
        alias: String,
        #[arg(long = "spec", default_value = "RSA_3072", value_parser = ["RSA_2048", "RSA_3072", "RSA_4096"])]
        spec: String,
    },
    /// Disable a key (Decrypt fails with DisabledException).
    Disable { key: String },
    /// Enable a key.
    Enable { key: String },
    /// Schedule a key's deletion (7 to 30 days); it can no longer decrypt.
    ScheduleDeletion {
        key: String,
        #[arg(long = "days", default_value_t = 30)]
        days: u64,
    },
    /// Cancel a scheduled deletion (the key comes back disabled).
    CancelDeletion { key: String },
    /// Write a key's public key (DER SubjectPublicKeyInfo) to a file.
    PublicKey {
        key: String,
        #[arg(short = 'o', long = "output")]
        output: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt a file into an ESDK message (suite 0x0478 by default).
    Encrypt {
        /// Input file, or - for stdin.
        #[arg(short = 'i', long = "input", value_name = "IN")]
        input: String,
        /// Output file, or - for stdout. Written only if encryption succeeds.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: String,
        /// Encryption context pair, stored in the header (repeatable).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// Authenticate-only encryption context pair (repeatable): authenticated
        /// but not stored, so decryption needs it again as `--context`.
        #[arg(long = "required-context", value_name = "KEY=VALUE")]
        required_context: Vec<String>,
        /// Frame length in bytes.
        #[arg(long = "frame-length", default_value_t = kms_envelope::DEFAULT_FRAME_LENGTH)]
        frame_length: u32,
        /// Algorithm suite: 0x0478, or 0x0578 (ECDSA P-384 signature; raw keyrings only).
        #[arg(long = "suite", default_value = "0x0478")]
        suite: String,
        /// Most encrypted data keys the message may carry (what decryption accepts by default).
        #[arg(long = "max-encrypted-data-keys", default_value_t = kms_envelope::DEFAULT_MAX_ENCRYPTED_DATA_KEYS)]
        max_encrypted_data_keys: u16,
        #[command(flatten)]
        keyrings: KeyringArgs,
    },
    /// Decrypt an ESDK message.
    Decrypt {
        /// Input file, or - for stdin.
        #[arg(short = 'i', long = "input", value_name = "IN")]
        input: String,
        /// Output file, or - for stdout. A file is written only if the whole message authenticates.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: String,
        /// Reproduced encryption context pair (repeatable): a pair the header
        /// stores must match; the others are the message's authenticate-only
        /// pairs, and decryption fails unless the message was written with them.
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// Maximum number of encrypted data keys to accept.
        #[arg(long = "max-encrypted-data-keys", default_value_t = kms_envelope::DEFAULT_MAX_ENCRYPTED_DATA_KEYS)]
        max_encrypted_data_keys: u16,
        /// Commitment policy.
        #[arg(long = "commitment-policy", default_value = "require-encrypt-require-decrypt")]
        commitment_policy: String,
        /// Refuse signed messages (0x0578, 0x0378, …) as soon as the header shows one.
        #[arg(long = "unsigned-only")]
        unsigned_only: bool,
        #[command(flatten)]
        keyrings: KeyringArgs,
    },
    /// Run the gateway: public key, object storage, the backend Decrypt (see README).
    Serve(ServeArgs),
    /// Run the embedded local KMS (AWS KMS JSON protocol) on a loopback address.
    LocalKms {
        #[command(flatten)]
        store: LocalKmsArgs,
        /// Loopback address to listen on (port 0 picks one; the address is printed).
        #[arg(long = "listen", default_value = "127.0.0.1:4599")]
        listen: std::net::SocketAddr,
    },
    /// Administer the embedded local KMS's keys (works on the data directory).
    Keys {
        #[command(flatten)]
        store: LocalKmsArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read the gateway's audit records (every instance sharing its database).
    Audit(audit::AuditArgs),
    /// Print a message's header as JSON (no key needed).
    Inspect {
        /// Input file, or - for stdin.
        #[arg(short = 'i', long = "input", value_name = "IN")]
        input: String,
    },
}

/// Parses the command line and runs the command.
pub fn run() -> Result<(), Error> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::new(ErrorCode::InvalidArgument, e.to_string()))?;
    let sub = matches.subcommand().map(|(_, m)| m);
    match cli.command {
        Command::Encrypt { input, output, context, required_context, frame_length, suite, max_encrypted_data_keys, keyrings } => {
            let specs = ordered_specs(sub, &keyrings);
            let kms = commands::KmsOptions { endpoint: keyrings.kms_endpoint.clone(), region: keyrings.kms_region.clone() };
            let opts = commands::EncryptArgs { context: &context, required_context: &required_context, frame_length, suite: &suite, max_encrypted_data_keys };
            commands::encrypt(&input, &output, &opts, &specs, &kms)
        }
        Command::Decrypt { input, output, context, max_encrypted_data_keys, commitment_policy, unsigned_only, keyrings } => {
            let specs = ordered_specs(sub, &keyrings);
            let kms = commands::KmsOptions { endpoint: keyrings.kms_endpoint.clone(), region: keyrings.kms_region.clone() };
            let args = commands::DecryptArgs { context: &context, max_encrypted_data_keys, commitment_policy: &commitment_policy, unsigned_only };
            commands::decrypt(&input, &output, &args, &specs, &kms)
        }
        Command::Inspect { input } => commands::inspect(&input),
        Command::LocalKms { store, listen } => commands::local_kms(&store, listen),
        Command::Serve(args) => commands::serve(args),
        Command::Keys { store, command } => commands::keys(&store, command),
        Command::Audit(args) => audit::run(args),
    }
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The configuration file (TOML; see README).
    #[arg(long = "config", value_name = "FILE", required_unless_present = "demo")]
    pub config: Option<std::path::PathBuf>,
    /// Demo mode, no configuration file: a local KMS key and the users
    /// alice, bob and carol (their tokens are printed) in --data-dir.
    #[arg(long = "demo", conflicts_with = "config")]
    pub demo: bool,
    /// The data directory of --demo.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./kms-envelope-data", requires = "demo")]
    pub data_dir: std::path::PathBuf,
    /// Listen address (overrides the configuration).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve the web app from this directory at / (overrides the configuration).
    #[arg(long = "web-dir", value_name = "DIR")]
    pub web_dir: Option<std::path::PathBuf>,
    /// HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long = "tls-key", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// HTTPS with a self-signed certificate for localhost, kept in the data directory.
    #[arg(long = "dev-tls", conflicts_with = "tls_cert")]
    pub dev_tls: bool,
    /// Keep objects in this S3 bucket (overrides the configuration's storage):
    /// browsers upload and download with presigned URLs.
    #[arg(long = "s3-bucket", value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// An S3-compatible endpoint, e.g. an emulator (with --s3-bucket).
    #[arg(long = "s3-endpoint", value_name = "URL", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing: ENDPOINT/BUCKET/KEY (with --s3-bucket).
    #[arg(long = "s3-path-style", requires = "s3_bucket")]
    pub s3_path_style: bool,
}

/// The keyring options in command-line order (the first is the generator).
fn ordered_specs(m: Option<&ArgMatches>, k: &KeyringArgs) -> Vec<(keyrings::Kind, String)> {
    let mut v = Vec::new();
    for (id, kind, values) in [
        ("raw_rsa", keyrings::Kind::RawRsa, &k.raw_rsa),
        ("raw_aes", keyrings::Kind::RawAes, &k.raw_aes),
        ("kms_rsa", keyrings::Kind::KmsRsa, &k.kms_rsa),
    ] {
        let idx: Vec<usize> = m.and_then(|m| m.indices_of(id)).map(|i| i.collect()).unwrap_or_default();
        for (n, val) in values.iter().enumerate() {
            v.push((idx.get(n).copied().unwrap_or(usize::MAX), kind, val.clone()));
        }
    }
    v.sort_by_key(|(i, _, _)| *i);
    v.into_iter().map(|(_, k, s)| (k, s)).collect()
}
