//! The multi-keyring (SPEC framework/multi-keyring.md): a generator makes and
//! wraps the data key, every child wraps it too; decrypt tries each keyring
//! in turn and reports every failure if none succeeds.

use std::sync::Arc;

use super::Keyring;
use crate::error::{err, Result};
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};

/// A keyring made of other keyrings.
#[derive(Clone)]
pub struct MultiKeyring {
    generator: Option<Arc<dyn Keyring>>,
    children: Vec<Arc<dyn Keyring>>,
}

impl core::fmt::Debug for MultiKeyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MultiKeyring")
            .field("generator", &self.generator.is_some())
            .field("children", &self.children.len())
            .finish()
    }
}

impl MultiKeyring {
    /// A multi-keyring; at least one of generator and children must be given.
    pub fn new(generator: Option<Arc<dyn Keyring>>, children: Vec<Arc<dyn Keyring>>) -> Result<Self> {
        if generator.is_none() && children.is_empty() {
            return Err(err!(InvalidArgument, "a multi-keyring needs a generator or children"));
        }
        Ok(MultiKeyring { generator, children })
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for MultiKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        match &self.generator {
            Some(g) => {
                if materials.data_key.is_some() {
                    return Err(err!(InvalidState, "materials already hold a data key; a generator cannot run"));
                }
                materials = g.on_encrypt(materials).await?;
                // SPEC framework/multi-keyring.md (OnEncrypt): a generator that
                // returns no plaintext data key fails the call.
                if materials.data_key.is_none() {
                    return Err(err!(InvalidState, "the multi-keyring's generator returned no data key"));
                }
            }
            None if materials.data_key.is_none() => {
                return Err(err!(InvalidArgument, "a multi-keyring without a generator needs a data key"))
            }
            None => {}
        }
        for c in &self.children {
            materials = c.on_encrypt(materials).await?;
        }
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        super::needs_data_key(&materials)?;
        let mut failures = Vec::new();
        for k in self.generator.iter().chain(self.children.iter()) {
            let attempt = DecryptionMaterials {
                suite: materials.suite,
                encryption_context: materials.encryption_context.clone(),
                data_key: None,
            };
            match k.on_decrypt(attempt, edks).await {
                Ok(m) if m.data_key.is_some() => {
                    materials.data_key = m.data_key;
                    return Ok(materials);
                }
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
        }
        Err(super::combine_failures("the multi-keyring", failures))
    }
}
