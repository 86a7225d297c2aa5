//! Data key → message keys (SPEC framework/algorithm-suites.md, transitive-requirements.md).

use hkdf::Hkdf;
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use crate::error::{err, Result};
use crate::suite::{AlgorithmSuite, Kdf};

/// Keys derived for one message.
pub(crate) struct MessageKeys {
    pub encryption_key: Zeroizing<Vec<u8>>,
    /// The commit key of committing suites (stored in the header's suite data).
    pub commit_key: Option<Zeroizing<[u8; 32]>>,
}

pub(crate) fn derive(suite: AlgorithmSuite, data_key: &[u8], message_id: &[u8]) -> Result<MessageKeys> {
    if data_key.len() != suite.data_key_len() {
        return Err(err!(
            InvalidKey,
            "data key is {} bytes, suite {suite} needs {}",
            data_key.len(),
            suite.data_key_len()
        ));
    }
    let len = suite.encryption_key_len();
    let mut key = Zeroizing::new(vec![0u8; len]);
    let mut info = Vec::with_capacity(2 + 32);
    info.extend_from_slice(&suite.id().to_be_bytes());
    let expand_err = |_| err!(InvalidKey, "key derivation failed");
    match suite.kdf() {
        Kdf::Identity => {
            key.copy_from_slice(data_key);
            Ok(MessageKeys { encryption_key: key, commit_key: None })
        }
        Kdf::HkdfSha256 => {
            info.extend_from_slice(message_id);
            Hkdf::<Sha256>::new(None, data_key).expand(&info, &mut key).map_err(expand_err)?;
            Ok(MessageKeys { encryption_key: key, commit_key: None })
        }
        Kdf::HkdfSha384 => {
            info.extend_from_slice(message_id);
            Hkdf::<Sha384>::new(None, data_key).expand(&info, &mut key).map_err(expand_err)?;
            Ok(MessageKeys { encryption_key: key, commit_key: None })
        }
        Kdf::HkdfSha512Commit => {
            // Extract once with the message id as salt; expand twice.
            let prk = Hkdf::<Sha512>::new(Some(message_id), data_key);
            info.extend_from_slice(b"DERIVEKEY");
            prk.expand(&info, &mut key).map_err(expand_err)?;
            let mut commit = Zeroizing::new([0u8; 32]);
            prk.expand(b"COMMITKEY", &mut commit[..]).map_err(expand_err)?;
            Ok(MessageKeys { encryption_key: key, commit_key: Some(commit) })
        }
    }
}
