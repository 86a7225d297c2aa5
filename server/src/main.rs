//! `kms-envelope`: encrypt, decrypt and inspect AWS Encryption SDK messages
//! from the command line.

mod cli;
mod gateway;
mod kms_client;
mod localkms;
mod private_fs;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The data directories hold keys, tokens and user data: nothing this
    // process creates is for other accounts.
    private_fs::restrict_umask();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, with the stable code first; never key material.
            eprintln!("kms-envelope: error {}: {}", e.code(), e.detail());
            ExitCode::FAILURE
        }
    }
}
