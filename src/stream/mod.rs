//! Sans-IO streaming: the same state machines serve native code, Node and
//! browsers. Memory is bounded by about two frames whatever the message size.

mod decrypt;
mod encrypt;
mod range;

pub use decrypt::{DecryptStatus, Decryptor};
pub use encrypt::Encryptor;
pub use range::{RangePlaintext, RangeSource, SignatureCheck};
#[cfg(target_arch = "wasm32")]
pub(crate) use encrypt::FramePlan;
