//! IDX resource bounds (issue 12 items 3 and 4): a header whose dimension product overflows
//! or is absurd is refused before anything is allocated, and a 1.5 MB gzip bomb (a deflate
//! stream inflating to 1.5 GB behind a header that promises 47 MB) is cut off at the
//! promised size with a named error. One test in its own binary, so the process's peak
//! resident memory (VmHWM) measures this reader alone.
use gqcim::data::idx::{read_idx, write_idx, MAX_IDX_DATA_BYTES};
use std::path::Path;

/// Deflate bits, least significant first (RFC 1951, 3.1.1).
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, len: u32) {
        self.acc |= value << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, which deflate writes most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A gzip file whose data is `head` then `zeros` zero bytes (`zeros - 1` rounded down to
/// whole 258-byte copies), about `zeros / 1032` bytes long: a stored block with `head`, then one dynamic-Huffman
/// block where a literal 0 is code `10`, "length 258" code `0`, "distance 1" code `0`,
/// end-of-block `11`, so each 258 zeros cost 2 bits (deflate's maximum ratio). The CRC is
/// left 0: a reader bounded by the header stops long before the trailer.
fn gzip_bomb(head: &[u8], zeros: u64) -> Vec<u8> {
    let mut b = Bits { out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], acc: 0, n: 0 };
    b.put(0, 1); // BFINAL 0
    b.put(0, 2); // stored
    b.put(0, 5); // pad to the byte (3 header bits + 5)
    let len = head.len() as u64;
    b.put(len | ((!len & 0xffff) << 16), 32);
    head.iter().for_each(|&x| b.put(u64::from(x), 8));
    b.put(1, 1); // BFINAL 1
    b.put(2, 2); // dynamic Huffman
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(1, 5); // HDIST: 2 distance codes
    b.put(14, 4); // HCLEN: 18 code-length codes
                  // Code-length code lengths in RFC order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
                  // 18 (runs of zeros) has length 1, lengths 1 and 2 have length 2.
    for l in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(l, 3);
    }
    // Canonical code-length codes: 18 -> 0, 1 -> 10, 2 -> 11.
    let zeros_run = |b: &mut Bits, n: u64| {
        b.code(0, 1);
        b.put(n - 11, 7);
    };
    b.code(0b11, 2); // literal 0: length 2
    zeros_run(&mut b, 138);
    zeros_run(&mut b, 117); // literals 1..=255 unused
    b.code(0b11, 2); // 256 (end of block): length 2
    zeros_run(&mut b, 28); // 257..=284 unused
    b.code(0b10, 2); // 285 (length 258): length 1
    b.code(0b10, 2); // distance codes 0 and 1: length 1 each
    b.code(0b10, 2);
    // Literal/length codes: 285 -> 0, 0 -> 10, 256 -> 11; distances: 0 -> 0, 1 -> 1.
    b.code(0b10, 2); // one literal zero, then copies of it
    for _ in 0..zeros.saturating_sub(1) / 258 {
        b.code(0, 1);
        b.code(0, 1);
    }
    b.code(0b11, 2);
    let mut out = b.finish();
    out.extend_from_slice(&[0; 8]); // CRC32 and ISIZE (never reached)
    out
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| h.extend_from_slice(&d.to_be_bytes()));
    h
}

/// Peak resident set of this process so far, in MiB.
fn peak_rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

fn err(path: &Path, ndim: usize) -> String {
    read_idx(path, ndim).unwrap_err().to_string()
}

#[test]
fn overflowing_headers_and_a_gzip_bomb_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let before = peak_rss_mib();

    // 2^31 * 2^31 * 4 = 2^64 wraps to 0 in unchecked usize arithmetic, which made an
    // empty file look like a valid 2^31-image set.
    let p = dir.path().join("wraps-to-zero");
    std::fs::write(&p, idx_header(&[1 << 31, 1 << 31, 4])).unwrap();
    let msg = err(&p, 3);
    assert!(msg.contains("wraps-to-zero") && msg.contains("[2147483648, 2147483648, 4]"), "{msg}");
    assert!(msg.contains("overflows or exceeds"), "{msg}");
    let p = dir.path().join("max-dims");
    write_idx(&p, &[u32::MAX as usize; 3], &[]).unwrap();
    assert!(err(&p, 3).contains("corrupt header"));

    // A 1.5 MB gzip bomb inflating to 1.55 GB behind a Fashion-MNIST-sized header.
    let head = idx_header(&[60_000, 28, 28]);
    let bomb = gzip_bomb(&head, 1_500_000 * 4 * 258);
    assert!((1_400_000..1_600_000).contains(&bomb.len()), "{}", bomb.len());
    let p = dir.path().join("bomb-images.gz");
    std::fs::write(&p, &bomb).unwrap();
    let msg = err(&p, 3);
    assert!(msg.contains("bomb-images.gz") && msg.contains("too long"), "{msg}");
    assert!(msg.contains("needs 47040000 data bytes, the gzip stream holds more"), "{msg}");

    // The same bomb stream behind a header claiming 2^32 - 1 images: refused by the cap
    // before inflating anything.
    let p = dir.path().join("bomb-huge-count.gz");
    let huge = gzip_bomb(&idx_header(&[u32::MAX, 28, 28]), 1 << 20);
    std::fs::write(&p, huge).unwrap();
    let msg = err(&p, 3);
    assert!(msg.contains(&format!("promises more than {MAX_IDX_DATA_BYTES}")), "{msg}");

    // A header within the cap but beyond deflate's 1032:1 ratio for a 1 kB file.
    let p = dir.path().join("small-file-big-header.gz");
    let small = gzip_bomb(&idx_header(&[1 << 20, 28, 28]), 2000);
    std::fs::write(&p, &small).unwrap();
    let msg = err(&p, 3);
    assert!(msg.contains("more than a") && msg.contains("gzip stream can inflate to"), "{msg}");

    // The bomb is real deflate: with a header matching its size and the trailer filled in,
    // it reads back as exactly that many zeros.
    let p = dir.path().join("honest.gz");
    let zeros = 1 + 258 * 1000;
    let head = idx_header(&[zeros as u32]);
    let mut honest = gzip_bomb(&head, zeros);
    let mut data = head.clone();
    data.resize(head.len() + zeros as usize, 0);
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    let n = honest.len();
    honest[n - 8..n - 4].copy_from_slice(&crc.sum().to_le_bytes());
    honest[n - 4..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    std::fs::write(&p, &honest).unwrap();
    let a = read_idx(&p, 1).unwrap();
    assert_eq!(a.dims, vec![zeros as usize]);
    assert!(a.data.len() == zeros as usize && a.data.iter().all(|&x| x == 0));
    // With the CRC left 0, reading to the end of the stream notices.
    honest[n - 8..n - 4].copy_from_slice(&[0; 4]);
    std::fs::write(&p, &honest).unwrap();
    assert!(err(&p, 1).contains("corrupt or truncated gzip stream"));

    // Bounded memory: the 47 MB the header promised plus slack, not the 1.5 GB inflated.
    let grown = peak_rss_mib().saturating_sub(before);
    eprintln!("peak resident memory grew by {grown} MiB while reading the bomb");
    assert!(grown < 160, "peak resident memory grew by {grown} MiB");
}
