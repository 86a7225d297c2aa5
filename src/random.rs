//! The one source of randomness: the OS CSPRNG through `getrandom`.

use rand_core::{OsRng, RngCore};

pub(crate) fn fill(buf: &mut [u8]) {
    OsRng.fill_bytes(buf)
}

pub(crate) fn array<const N: usize>() -> [u8; N] {
    let mut a = [0u8; N];
    fill(&mut a);
    a
}
