//! The ESDK message format: header, body and footer codecs. Pure byte work,
//! no cryptography and no I/O.

pub(crate) mod body;
pub mod context;
pub(crate) mod footer;
pub(crate) mod header;
pub(crate) mod reader;

pub use header::{parse_header, ContentType, EncryptedDataKey, Header};
