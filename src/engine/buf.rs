//! The per-connection receive buffer: plaintext bytes waiting for the response framer.
//!
//! Allocated once per connection. The framer consumes body bytes as they arrive, so the buffer
//! only ever has to hold one response head plus what one read delivers; it grows (once, up to
//! [`MAX_CAPACITY`]) only for response heads larger than the initial capacity.

/// Initial capacity of a connection's receive buffer: small, because thousands of idle
/// connections each hold one; a response or frame larger than one read is consumed as it
/// arrives, so the buffer only grows for long response heads.
pub const INITIAL_CAPACITY: usize = 4 * 1024;
/// Largest the buffer grows: a 64 KiB response head plus one 16 KiB read.
pub const MAX_CAPACITY: usize = 80 * 1024;

/// A byte buffer with a consumed prefix and a filled region: `data[start..end]` is pending.
#[derive(Debug)]
pub struct RecvBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// Largest the buffer grows ([`MAX_CAPACITY`] unless [`RecvBuf::set_max`] said more).
    max: usize,
}

impl RecvBuf {
    /// A buffer with [`INITIAL_CAPACITY`] bytes.
    pub fn new() -> RecvBuf {
        RecvBuf {
            data: vec![0; INITIAL_CAPACITY],
            start: 0,
            end: 0,
            max: MAX_CAPACITY,
        }
    }

    /// Let the buffer grow to `max` bytes (at least [`MAX_CAPACITY`]): a WebSocket frame is
    /// decoded only once it is whole, so the buffer must hold the largest message accepted.
    /// Memory is still only taken when such a message arrives.
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(MAX_CAPACITY);
    }

    /// Bytes received and not yet consumed.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// True when no byte is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Mark `n` pending bytes as consumed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.start + n <= self.end);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, making room first: pending bytes move to the front, and the
    /// buffer doubles (up to [`MAX_CAPACITY`]) when pending bytes fill it. Empty only when the
    /// buffer is full at its maximum size (the framer then reports the head as too large).
    #[inline]
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < self.max {
                let grown = (self.data.len() * 2).min(self.max);
                self.data.resize(grown, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Mark `n` bytes of [`spare`](Self::spare) as filled.
    #[inline]
    pub fn filled(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end += n;
    }

    /// Drop everything pending (the connection is being replaced).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_consume_and_compact() {
        let mut b = RecvBuf::new();
        let s = b.spare();
        assert_eq!(s.len(), INITIAL_CAPACITY);
        s[..3].copy_from_slice(b"abc");
        b.filled(3);
        assert_eq!(b.pending(), b"abc");
        b.consume(1);
        assert_eq!(b.pending(), b"bc");
        b.consume(2);
        assert!(b.is_empty());
        // fully consumed: the next read starts at the front again
        assert_eq!(b.spare().len(), INITIAL_CAPACITY);
    }

    #[test]
    fn compacts_before_growing_and_grows_to_the_cap() {
        let mut b = RecvBuf::new();
        let n = b.spare().len();
        b.filled(n);
        b.consume(10);
        // room is made by moving the pending bytes to the front, not by growing
        assert_eq!(b.spare().len(), 10);
        assert_eq!(b.pending().len(), INITIAL_CAPACITY - 10);
        b.filled(10);
        // full with nothing consumed: grows
        assert_eq!(b.spare().len(), INITIAL_CAPACITY);
        loop {
            let n = b.spare().len();
            if n == 0 {
                break;
            }
            b.filled(n);
        }
        assert_eq!(b.pending().len(), MAX_CAPACITY);
    }

    #[test]
    fn a_raised_limit_lets_the_buffer_hold_a_whole_large_frame() {
        let mut b = RecvBuf::new();
        b.set_max(300 * 1024);
        loop {
            let n = b.spare().len();
            if n == 0 {
                break;
            }
            b.filled(n);
        }
        assert_eq!(b.pending().len(), 300 * 1024);
        // Never below the default.
        let mut c = RecvBuf::new();
        c.set_max(10);
        loop {
            let n = c.spare().len();
            if n == 0 {
                break;
            }
            c.filled(n);
        }
        assert_eq!(c.pending().len(), MAX_CAPACITY);
    }
}
