//! Hand back the file-backed pages this process no longer needs.
//!
//! Every page of a mapped file that was touched once counts in VmRSS as long as it stays
//! mapped — and the kernel maps up to 64 KiB around each fault. After a burst of work
//! (startup, a console session) we unmap the clean file pages of our read-only mappings
//! with MADV_DONTNEED; they stay in the page cache, and the few the idle loop needs fault
//! back in. Pages a relocation wrote to (RELRO) are private copies: /proc/self/pagemap
//! tells them apart (no "file page" bit) and they are left alone, since dropping them
//! would bring back the unrelocated file contents.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const PAGE: usize = 4096;
const PRESENT: u64 = 1 << 63;
const FILE_PAGE: u64 = 1 << 61;

pub fn shed() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Ok(mut pagemap) = File::open("/proc/self/pagemap") else {
        return;
    };
    for line in maps.lines() {
        if let Some((start, end)) = candidate(line) {
            shed_range(&mut pagemap, start, end);
        }
    }
}

/// A private, non-writable mapping of a file: `start-end r?xp off dev inode path`.
fn candidate(line: &str) -> Option<(usize, usize)> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let perms = f.next()?.as_bytes();
    let (_off, _dev, inode) = (f.next()?, f.next()?, f.next()?);
    if inode == "0" || perms.len() != 4 || perms[1] != b'-' || perms[3] != b'p' {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    let a = usize::from_str_radix(a, 16).ok()?;
    let b = usize::from_str_radix(b, 16).ok()?;
    (a < b && a % PAGE == 0).then_some((a, b))
}

fn shed_range(pagemap: &mut File, start: usize, end: usize) {
    let pages = (end - start) / PAGE;
    let mut entries = vec![0u8; pages * 8];
    if pagemap
        .seek(SeekFrom::Start((start / PAGE * 8) as u64))
        .and_then(|_| pagemap.read_exact(&mut entries))
        .is_err()
    {
        return;
    }
    let sheddable = |i: usize| {
        let e = u64::from_ne_bytes(entries[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        e & PRESENT != 0 && e & FILE_PAGE != 0
    };
    let mut i = 0;
    while i < pages {
        if !sheddable(i) {
            i += 1;
            continue;
        }
        let run = i;
        while i < pages && sheddable(i) {
            i += 1;
        }
        crate::sys::dontneed(start + run * PAGE, (i - run) * PAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_private_read_only_file_mappings() {
        let ok = "7f0321976000-7f0321a52000 r-xp 00047000 fe:00 10035453 /usr/bin/x";
        assert_eq!(candidate(ok), Some((0x7f0321976000, 0x7f0321a52000)));
        assert!(candidate("7f03-7f04 r--p 0 fe:00 12 /lib/libc.so.6").is_none()); // unaligned
        for bad in [
            "7f0321a59000-7f0321a5d000 rw-p 00128000 fe:00 10035453 /usr/bin/x",
            "555563c53000-555563c75000 rw-p 00000000 00:00 0 [heap]",
            "7f0321a52000-7f0321a59000 r--s 00122000 fe:00 10035453 /dev/shm/x",
            "7f032192c000-7f032192e000 r-xp 00000000 00:00 0 [vdso]",
            "garbage",
        ] {
            assert!(candidate(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn shedding_keeps_the_process_working() {
        // Relocated data (RELRO) must survive: calling through it afterwards would crash.
        shed();
        let v: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        assert_eq!(v.join("").len(), 190);
    }
}
