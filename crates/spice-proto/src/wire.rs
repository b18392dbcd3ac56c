//! Little-endian readers and writers for message bodies.
//!
//! SPICE bodies are a fixed part followed by data reached through u32 offsets
//! counted from the body start (0 means null). [`Reader`] follows such offsets
//! with bounds checks and charges every byte it hands out against a budget tied
//! to the body length, so aliased pointers cannot make a small body expand into
//! a huge decoded value. [`BodyBuilder`] writes the fixed part first and lays
//! pointed-to data out afterwards, patching the offsets once they are known.

use std::cell::Cell;

use crate::error::{ProtoError, Result};

/// Cursor over one message body.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
    budget: &'a Cell<usize>,
}

/// Budget for a body: every legitimate message reads each byte at most once,
/// the slack covers small re-reads.
pub fn budget_for(body: &[u8]) -> Cell<usize> {
    Cell::new(body.len().saturating_mul(2).saturating_add(64))
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8], budget: &'a Cell<usize>) -> Self {
        Reader {
            body,
            pos: 0,
            budget,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn charge(&self, n: usize) -> Result<()> {
        let left = self.budget.get();
        if n > left {
            return Err(ProtoError::Budget);
        }
        self.budget.set(left - n);
        Ok(())
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(ProtoError::Short {
                what,
                offset: self.pos,
                need: n,
                have: self.remaining(),
            });
        }
        self.charge(n)?;
        let s = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn i16(&mut self, what: &'static str) -> Result<i16> {
        Ok(self.u16(what)? as i16)
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32> {
        Ok(self.u32(what)? as i32)
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64> {
        Ok(self.u64(what)? as i64)
    }

    /// `n` raw bytes copied out.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>> {
        Ok(self.take(n, what)?.to_vec())
    }

    /// Everything up to the end of the body.
    pub fn rest(&mut self, what: &'static str) -> Result<Vec<u8>> {
        self.bytes(self.remaining(), what)
    }

    /// Checks that `count` elements of `elem_size` wire bytes fit before any
    /// allocation sized by `count` happens.
    pub fn check_count(&self, count: u64, elem_size: usize, what: &'static str) -> Result<usize> {
        let need = count.checked_mul(elem_size as u64);
        match need {
            Some(n) if n <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(ProtoError::BadCount {
                what,
                count,
                remaining: self.remaining(),
            }),
        }
    }

    /// Reads `count` elements with `f`, after checking they can fit.
    pub fn array<T>(
        &mut self,
        count: u64,
        elem_size: usize,
        what: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let n = self.check_count(count, elem_size, what)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    /// A reader positioned at body offset `off`.
    pub fn at(&self, off: u32, what: &'static str) -> Result<Reader<'a>> {
        if off as usize > self.body.len() {
            return Err(ProtoError::BadOffset {
                what,
                offset: off,
                len: self.body.len(),
            });
        }
        Ok(Reader {
            body: self.body,
            pos: off as usize,
            budget: self.budget,
        })
    }

    /// Reads a u32 pointer; `None` when null.
    pub fn ptr(&mut self, what: &'static str) -> Result<Option<Reader<'a>>> {
        let off = self.u32(what)?;
        if off == 0 {
            return Ok(None);
        }
        self.at(off, what).map(Some)
    }

    /// Reads a u32 pointer that must not be null.
    pub fn ptr_nonnull(&mut self, what: &'static str) -> Result<Reader<'a>> {
        self.ptr(what)?.ok_or(ProtoError::NullPointer { what })
    }
}

/// Decodes a whole body with `f`.
pub fn decode_body<T>(body: &[u8], f: impl FnOnce(&mut Reader<'_>) -> Result<T>) -> Result<T> {
    let budget = budget_for(body);
    let mut r = Reader::new(body, &budget);
    f(&mut r)
}

type Deferred<'a> = Box<dyn FnOnce(&mut BodyBuilder<'a>) + 'a>;

/// Writes a body whose pointed-to parts follow the fixed part.
///
/// Pointer slots are written as 0 and queued; [`BodyBuilder::finish`] then
/// writes each queued part in order (breadth first), patching its slot with
/// the part's offset from the body start.
pub struct BodyBuilder<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
    queue: std::collections::VecDeque<(usize, Deferred<'a>)>,
}

impl<'a> BodyBuilder<'a> {
    /// Starts a body at the current end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let base = out.len();
        BodyBuilder {
            out,
            base,
            queue: Default::default(),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i16(&mut self, v: i16) {
        self.u16(v as u16)
    }
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.u32(v as u32)
    }
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64)
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Writes a pointer slot whose target is written later by `f`.
    pub fn ptr(&mut self, f: impl FnOnce(&mut BodyBuilder<'a>) + 'a) {
        let slot = self.out.len();
        self.u32(0);
        self.queue.push_back((slot, Box::new(f)));
    }

    /// Writes a pointer slot, or a null pointer for `None`.
    pub fn opt_ptr<T: 'a>(&mut self, v: Option<T>, f: impl FnOnce(&mut BodyBuilder<'a>, T) + 'a) {
        match v {
            Some(v) => self.ptr(move |b| f(b, v)),
            None => self.u32(0),
        }
    }

    /// Lays out every queued part.
    pub fn finish(mut self) {
        while let Some((slot, f)) = self.queue.pop_front() {
            let off = (self.out.len() - self.base) as u32;
            self.out[slot..slot + 4].copy_from_slice(&off.to_le_bytes());
            f(&mut self);
        }
    }
}
