//! Secret byte strings: zeroized on drop, never printed.

use zeroize::Zeroizing;

/// A data key (or any key bytes). It is zeroized when dropped and has no
/// `Debug`/`Display`, so it cannot end up in logs or error messages by accident.
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// Wraps key bytes; the vector is zeroized when the key is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// Draws `len` bytes from the operating system's CSPRNG
    /// (`crypto.getRandomValues` in browsers).
    pub fn generate(len: usize) -> Self {
        let mut v = Zeroizing::new(vec![0u8; len]);
        crate::random::fill(&mut v);
        DataKey(v)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        DataKey(Zeroizing::new(self.0.to_vec()))
    }
}
