//! Giving memory that only startup needed back to the operating system, once, after startup.
//!
//! Two kinds of it stay with an idle process otherwise: heap that startup allocated and freed
//! (glibc keeps freed pages for reuse), and the pages of the agent's own executable that only
//! startup ran (configuration, SDK and TLS setup). The kernel maps code in 64 KiB blocks around
//! each page first run, so most of the executable ends up resident although the idle agent runs
//! a small part of it. Advising the kernel to page the executable out drops those pages; the
//! code that keeps running is mapped back in on its next use, from the page cache or the disk.
//! Nothing here changes what the agent does; on kernels or builds where the calls do not
//! exist, or without the right to page the file out, it does nothing.

/// Returns freed heap and startup-only code pages to the OS.
pub fn release_startup_memory() {
    trim_heap();
    page_out_executable();
}

fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Advises `MADV_PAGEOUT` on the executable's read-only mappings (code and constants; the
/// writable data is left alone). The kernel only honours it for a file the process owns or may
/// write, and skips pages other processes map too.
fn page_out_executable() {
    #[cfg(target_os = "linux")]
    {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return;
        };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for (start, end) in read_only_mappings(&maps, &exe.to_string_lossy()) {
            // SAFETY: the range is one of this process's own mappings, read-only and backed
            // by the executable file; paging it out only makes later accesses fault it back in.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
            }
        }
    }
}

/// The `(start, end)` of each mapping of `path` in `/proc/self/maps` text that is not writable.
fn read_only_mappings(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let mapped = fields.nth(3)?;
            if mapped != path || perms.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_read_only_mappings_of_the_executable() {
        let maps = "\
5642c67ba000-5642c6a7b000 r--p 00000000 fd:01 123 /usr/bin/cloudtail
5642c6a7b000-5642c7051000 r-xp 002c1000 fd:01 123 /usr/bin/cloudtail
5642c7051000-5642c70d0000 rw-p 00897000 fd:01 123 /usr/bin/cloudtail
7fa6741e0000-7fa674206000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd21e9c000-7ffd21ebd000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            read_only_mappings(maps, "/usr/bin/cloudtail"),
            vec![
                (0x5642c67ba000, 0x5642c6a7b000),
                (0x5642c6a7b000, 0x5642c7051000)
            ]
        );
    }
}
