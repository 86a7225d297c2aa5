//! A cursor over a byte slice, in the manner of rustls' `codec::Reader`:
//! every read is bounds-checked and reports "not enough bytes yet" as `None`,
//! so the same parser serves one-shot input and a stream still arriving.

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    offs: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, offs: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn used(&self) -> usize {
        self.offs
    }

    /// Bytes not consumed yet.
    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.offs
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.left() < n {
            return None;
        }
        let s = &self.buf[self.offs..self.offs + n];
        self.offs += n;
        Some(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|s| {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            a
        })
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A field prefixed by its UInt16 length.
    pub(crate) fn u16_prefixed(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Appends a UInt16-length-prefixed field. The caller has checked the length.
pub(crate) fn put_u16_prefixed(out: &mut Vec<u8>, field: &[u8]) {
    debug_assert!(field.len() <= u16::MAX as usize);
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}
