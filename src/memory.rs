//! The allocator's settings, and giving memory that only startup needed back to the
//! operating system, once, after startup.
//!
//! Two kinds of it stay with an idle process otherwise: heap that startup allocated and freed
//! (glibc keeps freed pages for reuse), and the pages of the agent's own executable that only
//! startup ran (configuration, SDK and TLS setup). The kernel maps code in 64 KiB blocks around
//! each page first run, so most of the executable ends up resident although the idle agent runs
//! a small part of it. Advising the kernel to page the executable out drops those pages; the
//! code that keeps running is mapped back in on its next use, from the page cache or the disk.
//! Nothing here changes what the agent does; on kernels or builds where the calls do not
//! exist, or without the right to page the file out, it does nothing.

/// Call first thing in `main`, before any thread starts.
///
/// glibc gives each thread that allocates its own arena (up to 8 per core), and each keeps
/// freed memory for reuse: with batches of ~1 MB passing between worker threads that is tens
/// of MB of RSS the agent does not use. Two arenas keep the footprint near what is live.
/// The mmap threshold is pinned too: glibc otherwise raises it each time a large block is
/// freed, after which ~1 MB request bodies come from the arenas and fragment them (measured:
/// +3 MB peak RSS with fifty streams retrying).
/// Even so, lines freed in the middle of an arena stay resident (glibc only gives back the
/// top of a heap): draining a full budget left 27 MB of free but resident pages. A thread
/// returns them every [`TRIM_EVERY`], so RSS follows the budget rather than its history.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator tunables; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
        let trim = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only releases free pages; it is thread-safe.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(error) = trim {
            tracing::debug!(%error, "Could not start the malloc-trim thread.");
        }
    }
}

/// How often free pages inside the allocator's arenas are given back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Allocations from this size up get their own mapping, returned to the system when freed.
/// The large blocks that come and go at full speed are kept and reused by their owners
/// instead (request bodies by the logs sink, read buffers by the file source), so few fresh
/// mappings are faulted in. A higher threshold would serve the rest (batches, ~0.5 MiB) from
/// the heap, ≈ 0.94× the log pipeline's CPU, but blocks freed in the middle of an arena
/// fragment it: +3.9 MiB peak RSS with fifty files draining after an outage (1 MiB
/// threshold; 2 MiB did the same), and the memory ceiling comes first.
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

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
