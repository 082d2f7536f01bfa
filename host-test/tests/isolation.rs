//! What one call leaves in its pool slot must not reach the next call. A marker reaches the
//! guest only as JSON `\u00XX` escapes; the guest decodes it into its own memory and answers
//! with an error that does not repeat it, so the only plain copy in this process is inside
//! the guest's linear memory. After the call, and after a second call in the same slot, every
//! private anonymous mapping of this process is searched for it through /proc/self/mem.
//! Linux only; this file is its own test process, so no other test's memory is searched.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;

use host_test::runtime::{Runtime, RuntimeConfig};

/// The marker is held XOR-ed with this, so the search itself keeps no plain copy.
const MASK: u8 = 0x5a;

/// 64 capital letters from a seed, masked.
fn masked_marker(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'A' + (x % 26) as u8) ^ MASK
        })
        .collect()
}

fn json_escaped(masked: &[u8]) -> String {
    masked
        .iter()
        .map(|b| format!("\\u{:04x}", b ^ MASK))
        .collect()
}

/// How many times the unmasked marker occurs in this process's private anonymous memory,
/// including pages a pool slot no longer makes accessible (they keep their contents, and
/// /proc/self/mem reads them anyway). Mappings over 1 GiB are address-space reservations of
/// other pools, never touched here, and are skipped.
fn occurrences(masked: &[u8]) -> usize {
    let maps = BufReader::new(std::fs::File::open("/proc/self/maps").expect("reading maps"));
    let mem = std::fs::File::open("/proc/self/mem").expect("opening /proc/self/mem");
    let n = masked.len();
    let mut hits = 0;
    let mut buf = vec![0u8; 1 << 20];
    for line in maps.lines() {
        let line = line.expect("a maps line");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (range, perms, path) = (fields[0], fields[1], fields.get(5).copied().unwrap_or(""));
        let anonymous = path.is_empty() || path == "[heap]" || path.starts_with("[stack");
        if !perms.ends_with('p') || !anonymous {
            continue;
        }
        let (start, end) = range.split_once('-').expect("a range");
        let start = u64::from_str_radix(start, 16).expect("an address");
        let end = u64::from_str_radix(end, 16).expect("an address");
        if end - start > 1 << 30 {
            continue;
        }
        let mut at = start;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let got = match mem.read_at(&mut buf[..want], at) {
                Ok(0) | Err(_) => break,
                Ok(got) => got,
            };
            if got >= n {
                hits += buf[..got]
                    .windows(n)
                    .filter(|w| w.iter().zip(masked).all(|(c, m)| c ^ MASK == *m))
                    .count();
            }
            // Overlap the reads so a marker across two of them is still found.
            at += if got > n {
                (got - n + 1) as u64
            } else {
                got as u64
            };
        }
        // The buffer must not hold a copy for the next search to find.
        buf.iter_mut()
            .for_each(|b| unsafe { std::ptr::write_volatile(b, 0) });
    }
    hits
}

fn one_slot(keep_resident: usize) -> Runtime {
    let mut config = RuntimeConfig::new("", "https://api.runflow.io");
    config.keep_resident = keep_resident;
    config.max_concurrent_calls = 1;
    config.memory_limit = 8 * 1024 * 1024;
    Runtime::embedded(config).expect("loading the component")
}

#[tokio::test(flavor = "current_thread")]
async fn nothing_a_call_wrote_survives_into_the_next_call_in_its_slot() {
    // The search finds a plain copy made on purpose, so a zero below means something.
    let probe = masked_marker(7);
    let mut plain: Vec<u8> = probe.iter().map(|b| b ^ MASK).collect();
    assert!(
        occurrences(&probe) >= 1,
        "the search does not see this process's heap"
    );
    plain
        .iter_mut()
        .for_each(|b| unsafe { std::ptr::write_volatile(b, 0) });
    drop(plain);

    let kept = one_slot(1024 * 1024);
    if !kept.keeps_pages_resident() {
        eprintln!(
            "note: this machine has no PAGEMAP_SCAN or has swap, so pages are returned in \
             both settings"
        );
    }
    let returned = one_slot(0);
    for (setting, runtime) in [("pages kept", &kept), ("pages returned", &returned)] {
        for (case, trap) in [(1, false), (2, true)] {
            let marker = masked_marker(1000 + case + if trap { 0 } else { 100 });
            // Padding spreads the guest's heap over many pages. With `trap`, the padding
            // after the marker is large enough that the guest reaches its memory cap while
            // parsing, after it decoded the marker.
            let body = format!(
                r#"{{"pad": "{}", "secret": "{}", "more": "{}"}}"#,
                "p".repeat(200_000),
                json_escaped(&marker),
                "q".repeat(if trap { 5_000_000 } else { 200_000 })
            );
            let answer = format!("{:?}", runtime.parse_event(body.as_bytes()).await);
            assert_eq!(
                answer.contains("Trapped"),
                trap,
                "{setting}: {}",
                &answer[..answer.len().min(300)]
            );
            assert!(
                !answer.contains("\\u"),
                "the answer must not repeat the body"
            );
            let after_call = occurrences(&marker);
            let _ = runtime
                .parse_event(br#"{"run_id": "r", "status": "succeeded"}"#)
                .await;
            let after_next = occurrences(&marker);

            assert_eq!(after_call, 0, "{setting}, trap {trap}: left after the call");
            assert_eq!(
                after_next, 0,
                "{setting}, trap {trap}: left after the next call"
            );
        }
    }
}
